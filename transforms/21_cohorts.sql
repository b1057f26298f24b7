-- ref_cohort_value: every value of every cohort dimension the metrics break down by, in the
-- order reports list them. Two kinds of dimension:
--   attributes of the child in the period: the column names of dim_child_period
--     (sen_provision is published as the dimension sen_status): sen_status, primary_need,
--     age_band, sex, ethnicity_group, fsm, care_status;
--   attributes of the thing counted, which each metric's units give (29_metric_units.sql):
--     service (a referral's health service), flow (a referral's direction between services),
--     identifier (an agency's person identifier), agency_pair (the agency a child is known to
--     and the one it is looked for in), agency (the agency delivering an extract).
-- Each dimension's values cover every unit (20_dim_child.sql gives a child with no known value
-- an explicit one, such as 'unknown'; a unit of a metric listing a unit dimension must carry a
-- value of it, or 40_metric_values.sql fails the build).
-- partitions: whether the dimension's values partition a whole, so that the cells of one
-- metric, period, area and dimension add up to its 'all' cell and 'all' means something:
-- true for every child attribute and for service, flow and agency (a referral has one
-- service and one flow, an extract one agency). False for identifier and agency_pair: their
-- units are a record or child once per identifier or other agency, so one child or record
-- lies behind several values (a care record under both care:nhs_number and care:upn; a child
-- known to health under health->education and health->care, and its link counted from both
-- sides), and a sum over the values counts it more than once. Such a dimension has no 'all'
-- cell (40_metric_values.sql) and no sum in disclosure control (joinedup/disclosure.py): its
-- cells stand alone, each count suppressed when small.
-- Code lists come from schemas/codes.json (src_code_lists, loaded by metrics.py).

CREATE TABLE ref_cohort_value AS
WITH listed(cohort, cohort_value, label, sort_order) AS (
    SELECT 'sen_status', code, meaning, CASE code WHEN 'N' THEN 1 WHEN 'K' THEN 2 ELSE 3 END
    FROM src_code_lists WHERE code_list = 'sen_provision'
    UNION ALL SELECT 'sen_status', 'X', 'Not on the school census', 4
    UNION ALL
    SELECT 'primary_need', code, meaning, row_number() OVER (ORDER BY code)
    FROM src_code_lists WHERE code_list = 'sen_type'
    UNION ALL SELECT 'primary_need', 'none', 'No special educational need', 100
    UNION ALL SELECT 'primary_need', 'unknown', 'Not recorded', 101
    UNION ALL
    SELECT 'age_band', band, band, rank
    FROM (VALUES ('under 5', 1), ('5-10', 2), ('11-15', 3), ('16-19', 4), ('20 and over', 5),
                 ('unknown', 6)) AS b(band, rank)
    UNION ALL
    SELECT 'sex', code, meaning, row_number() OVER (ORDER BY code = 'U', code)
    FROM src_code_lists WHERE code_list = 'sex'
    UNION ALL
    SELECT 'ethnicity_group', ethnicity_group, ethnicity_group,
           row_number() OVER (ORDER BY ethnicity_group = 'Unknown', ethnicity_group)
    FROM (SELECT DISTINCT meaning AS ethnicity_group FROM src_code_lists
          WHERE code_list = 'ethnicity_group')
    UNION ALL
    SELECT 'fsm', value, value, rank
    FROM (VALUES ('eligible', 1), ('not eligible', 2), ('unknown', 3)) AS f(value, rank)
    UNION ALL
    SELECT 'care_status', value, label, rank
    FROM (VALUES ('lac', 'Looked after', 1),
                 ('cpp', 'On a child protection plan (not looked after)', 2),
                 ('cin', 'Child in need (no protection plan, not looked after)', 3),
                 ('none', 'Not a child in need', 4)) AS c(value, label, rank)
    UNION ALL
    SELECT 'service', code, meaning, row_number() OVER (ORDER BY code)
    FROM src_code_lists WHERE code_list = 'health_service'
    UNION ALL
    SELECT 'flow', value, label, rank
    FROM (VALUES ('education->health', 'Education to health', 1),
                 ('care->health', 'Social care to health', 2),
                 ('education->care', 'Education to social care', 3),
                 ('health->care', 'Health to social care', 4),
                 ('health->education', 'Health to education (EHC needs assessment)', 5),
                 ('care->education', 'Social care to education (EHC needs assessment)', 6))
        AS f(value, label, rank)
    UNION ALL
    SELECT 'identifier', value, label, rank
    FROM (VALUES ('education:upn', 'Education: UPN', 1),
                 ('health:nhs_number', 'Health: NHS number', 2),
                 ('care:nhs_number', 'Social care: NHS number', 3),
                 ('care:upn', 'Social care: UPN', 4)) AS i(value, label, rank)
    UNION ALL
    SELECT 'agency_pair', value, label, rank
    FROM (VALUES ('health->education', 'Children known to health, found in education', 1),
                 ('care->education', 'Children known to social care, found in education', 2),
                 ('care->health', 'Children known to social care, found in health', 3),
                 ('health->care', 'Children known to health, found in social care', 4),
                 ('education->health', 'Children known to education, found in health', 5),
                 ('education->care', 'Children known to education, found in social care', 6))
        AS a(value, label, rank)
    UNION ALL
    SELECT 'agency', value, value, rank
    FROM (VALUES ('education', 1), ('health', 2), ('care', 3)) AS g(value, rank)
)
SELECT
    cohort, cohort_value, label, CAST(sort_order AS INTEGER) AS sort_order,
    cohort NOT IN ('identifier', 'agency_pair') AS partitions
FROM listed
ORDER BY cohort, sort_order;

-- Every catalogue cohort dimension must be one of the above.
SELECT error('metric_catalogue names unknown cohort dimension(s): '
             || string_agg(DISTINCT dimension, ', ' ORDER BY dimension))
FROM (SELECT unnest(cohort_dimensions) AS dimension FROM metric_catalogue)
WHERE dimension NOT IN (SELECT cohort FROM ref_cohort_value)
HAVING count(*) > 0;

DROP TABLE src_code_lists;
