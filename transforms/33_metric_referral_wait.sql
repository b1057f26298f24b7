-- Units of referral_to_first_contact_weeks_median: one per health referral with a first
-- attended contact, in the period its received date falls in, measuring the weeks from
-- referral received to the first contact the child attended. Area: the child's, from
-- dim_child_period in that period (education's, else health's, else care's), so the cells
-- line up with known_to_services; the referral's own area when the child has no row there.
-- Service: the referral's (cohort dimension service).

INSERT INTO int_metric_units BY NAME
SELECT
    'referral_to_first_contact_weeks_median' AS metric_id,
    academic_year(r.referral_received_date) AS period,
    r.referral_received_date AS event_date,
    coalesce(d.la_code, r.la_code) AS la_code, r.child_id,
    (r.first_attended_contact_date - r.referral_received_date) / 7.0 AS measure, r.service
FROM int_latest_health_referral AS r
LEFT JOIN dim_child_period AS d
    ON d.child_id = r.child_id AND d.period = academic_year(r.referral_received_date)
WHERE r.first_attended_contact_date IS NOT NULL;
