-- ref_cohort_value: every value of every cohort dimension the metrics break down by, in the
-- order reports list them. The dimension names are the column names of dim_child_period
-- (sen_provision is published as the dimension sen_status). Each dimension's values cover
-- every child (20_dim_child.sql gives a child with no known value an explicit one, such as
-- 'unknown'), so the cells of one metric, period, area and dimension partition its 'all' cell.
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
)
SELECT cohort, cohort_value, label, CAST(sort_order AS INTEGER) AS sort_order
FROM listed
ORDER BY cohort, sort_order;

-- Every catalogue cohort dimension must be one of the above.
SELECT error('metric_catalogue names unknown cohort dimension(s): '
             || string_agg(DISTINCT dimension, ', ' ORDER BY dimension))
FROM (SELECT unnest(cohort_dimensions) AS dimension FROM metric_catalogue)
WHERE dimension NOT IN (SELECT cohort FROM ref_cohort_value)
HAVING count(*) > 0;

DROP TABLE src_code_lists;
