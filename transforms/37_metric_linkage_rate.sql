-- Units of linkage_rate: for each child known to an agency in the period (fct_service_contact)
-- and each other agency, one unit in the child's dim_child_period area, with cohort dimension
-- agency_pair '<agency>-><other agency>'; numerator 1 when that period's extracts of the other
-- agency hold a record of the same child, i.e. the linkage joined the child's records of the
-- two agencies. The share of health's children found in education is the analogue of the
-- ECHILD linkage rate of hospital records to the National Pupil Database.

INSERT INTO int_metric_units BY NAME
SELECT
    'linkage_rate' AS metric_id, f.period, d.la_code, f.child_id,
    CASE WHEN o.child_id IS NULL THEN 0 ELSE 1 END AS numerator, 1 AS denominator,
    f.agency || '->' || a.other_agency AS agency_pair
FROM fct_service_contact AS f
JOIN dim_child_period AS d USING (child_id, period)
JOIN (SELECT DISTINCT agency AS other_agency FROM ref_extract) AS a
    ON a.other_agency <> f.agency
LEFT JOIN fct_service_contact AS o
    ON o.child_id = f.child_id AND o.period = f.period AND o.agency = a.other_agency;
