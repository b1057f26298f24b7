-- Metric referral_to_first_contact_weeks_median: for health referrals received in the period
-- that have a first attended contact, the median of (first attended contact - received) days
-- / 7. A referral still open at year end is reported again in the next delivery (often with
-- the first contact filled in), so each referral (child, area, service, received date) is
-- taken from its latest delivery. Area and SEN status: the child's, from dim_child_period in
-- the period the referral was received (area: education's, else health's, else care's; SEN:
-- census provision, X = not on that census), so the cells line up with known_to_services.
-- numerator is NULL (a median has none); denominator is the number of referrals measured.
-- Cells: every area and period with a health referrals delivery or a measured referral, by
-- N, K, E, X and all.

CREATE TEMP TABLE int_metric_referral_to_first_contact_weeks_median AS
WITH latest_referral AS (
    SELECT *
    FROM fct_health_referrals
    QUALIFY row_number() OVER (
        PARTITION BY child_id, la_code, service, referral_received_date ORDER BY period DESC
    ) = 1
),
measured AS (
    SELECT
        p.period, coalesce(d.la_code, r.la_code) AS la_code,
        coalesce(d.sen_provision, 'X') AS sen_provision,
        (r.first_attended_contact_date - r.referral_received_date) / 7.0 AS wait_weeks
    FROM latest_referral AS r
    JOIN ref_period AS p
        ON r.referral_received_date BETWEEN p.period_start AND p.period_end
    LEFT JOIN dim_child_period AS d ON d.child_id = r.child_id AND d.period = p.period
    WHERE r.first_attended_contact_date IS NOT NULL
),
areas AS (
    SELECT period, la_code FROM deliveries WHERE extract = 'health_referrals'
    UNION
    SELECT period, la_code FROM measured
),
cells AS (
    SELECT a.period, a.la_code, s.cohort_value
    FROM areas AS a
    CROSS JOIN (VALUES ('N'), ('K'), ('E'), ('X'), ('all')) AS s(cohort_value)
)
SELECT
    'referral_to_first_contact_weeks_median' AS metric_id, c.period, c.la_code,
    'sen_status' AS cohort, c.cohort_value,
    CAST(NULL AS DOUBLE) AS numerator,
    count(m.wait_weeks) AS denominator,
    median(m.wait_weeks) AS value
FROM cells AS c
LEFT JOIN measured AS m
    ON m.period = c.period AND m.la_code = c.la_code
    AND c.cohort_value IN (m.sen_provision, 'all')
GROUP BY ALL;
