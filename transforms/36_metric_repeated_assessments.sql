-- Units of repeated_assessments: one per child with at least one assessment-type contact in
-- the period: a health referral received (each health service counts as its own assessor:
-- SLT, OT, PHYSIO, PAEDS, CAMHS), a request for an EHC needs assessment received (education)
-- or a child-in-need referral (social care). Numerator 1 when the child has two such contacts
-- by different assessors no more than 84 days (12 weeks) apart, the later of the two in the
-- period (the earlier may fall before it); each repeat so counts in one period only. Each
-- contact is taken once (the int_latest_* tables of 29_metric_units.sql). Area: the child's in
-- that period (dim_child_period), else the area of its earliest contact there.

INSERT INTO int_metric_units BY NAME
WITH contacts AS (
    SELECT child_id, la_code, referral_received_date AS contact_date, service AS assessor
    FROM int_latest_health_referral
    UNION ALL
    SELECT child_id, la_code, received_date, 'education' FROM int_latest_ehc_request
    UNION ALL
    SELECT child_id, la_code, cin_referral_date, 'care' FROM int_latest_cin_episode
),
dated AS (
    SELECT *, academic_year(contact_date) AS period FROM contacts
),
children AS (
    SELECT child_id, period, arg_min(la_code, contact_date) AS contact_area
    FROM dated
    GROUP BY ALL
),
repeated AS (
    SELECT DISTINCT later.child_id, later.period
    FROM dated AS later
    JOIN dated AS earlier
        ON earlier.child_id = later.child_id AND earlier.assessor <> later.assessor
        AND earlier.contact_date <= later.contact_date
        AND later.contact_date - earlier.contact_date <= 84
)
SELECT
    'repeated_assessments' AS metric_id, c.period, coalesce(d.la_code, c.contact_area) AS la_code,
    c.child_id, CASE WHEN r.child_id IS NULL THEN 0 ELSE 1 END AS numerator, 1 AS denominator
FROM children AS c
LEFT JOIN repeated AS r USING (child_id, period)
LEFT JOIN dim_child_period AS d USING (child_id, period);
