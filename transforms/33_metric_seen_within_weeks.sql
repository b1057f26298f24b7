-- Units of seen_within_4_weeks and seen_within_18_weeks: one per health referral received in
-- the period (academic year of its received date; financial year by the same date) whose
-- outcome is known: it has a first attended contact, or its 4-week (28-day) or 18-week
-- (126-day) window had closed by the date the data describe, the end of the period of the
-- return the referral was taken from (int_latest_health_referral: its latest return).
-- Referrals still inside their window and not yet seen are left out: whether they will be
-- seen in time is not known. Numerator 1 when the first attended contact was no more than 28
-- (126) days after the referral was received; a referral closed without an attended contact
-- counts as not seen. Area and service as in 33_metric_referral_wait.sql.

INSERT INTO int_metric_units BY NAME
SELECT
    m.metric_id, academic_year(r.referral_received_date) AS period,
    r.referral_received_date AS event_date, coalesce(d.la_code, r.la_code) AS la_code,
    r.child_id,
    CASE WHEN r.first_attended_contact_date - r.referral_received_date <= m.days
         THEN 1 ELSE 0 END AS numerator,
    1 AS denominator, r.service
FROM int_latest_health_referral AS r
JOIN ref_period AS described ON described.period = r.period
CROSS JOIN (VALUES ('seen_within_4_weeks', 28), ('seen_within_18_weeks', 126))
    AS m(metric_id, days)
LEFT JOIN dim_child_period AS d
    ON d.child_id = r.child_id AND d.period = academic_year(r.referral_received_date)
WHERE r.first_attended_contact_date IS NOT NULL
    OR r.referral_received_date + m.days <= described.period_end;
