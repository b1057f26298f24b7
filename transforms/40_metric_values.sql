-- metric_values: every metric cell with its unrounded numerator, denominator and value. This is
-- the RESTRICTED table (small counts in clear): analysts with access to child-level facts may
-- read it; anything published (the area reports) reads published_metrics only.
-- The unit comes from metric_catalogue; a metric missing from the catalogue fails the build.

CREATE TEMP TABLE int_metric_cells AS
SELECT * FROM int_metric_ehcp_issued_within_20_weeks
UNION ALL BY NAME SELECT * FROM int_metric_persistent_absence
UNION ALL BY NAME SELECT * FROM int_metric_suspension_rate
UNION ALL BY NAME SELECT * FROM int_metric_suspension_ratio_to_no_sen
UNION ALL BY NAME SELECT * FROM int_metric_referral_to_first_contact_weeks_median
UNION ALL BY NAME SELECT * FROM int_metric_known_to_services;

SELECT error('metric(s) missing from transforms/catalogue.json: '
             || string_agg(DISTINCT metric_id, ', ' ORDER BY metric_id))
FROM int_metric_cells
WHERE metric_id NOT IN (SELECT id FROM metric_catalogue)
HAVING count(*) > 0;

CREATE TABLE metric_values AS
SELECT
    v.metric_id, v.period, v.la_code, v.cohort, v.cohort_value,
    CAST(v.numerator AS DOUBLE) AS numerator,
    CAST(v.denominator AS DOUBLE) AS denominator,
    CAST(v.value AS DOUBLE) AS value,
    m.unit
FROM int_metric_cells AS v
JOIN metric_catalogue AS m ON m.id = v.metric_id
ORDER BY v.metric_id, v.period, v.la_code, v.cohort, v.cohort_value;
