-- Units of suspension_rate and permanent_exclusion_rate: one per pupil on the period's school
-- census (dim_child_period, sen_provision not 'X'), in the child's census area; numerator the
-- pupil's suspensions (category SUSP; lunchtime LNCH is neither) or permanent exclusions
-- (PERM) whose start date falls in the period. Exclusions of children not on that period's
-- census are left out. The linker never puts two records of one agency in one child, so
-- counting by child equals counting by census record. The ratios to pupils with no SEN
-- (suspension_ratio_to_no_sen, permanent_exclusion_ratio_to_no_sen) are made from these
-- rates' cells by 40_metric_values.sql, as their catalogue entries say.

INSERT INTO int_metric_units BY NAME
WITH events AS (
    SELECT child_id, academic_year(start_date) AS period, category, count(*) AS n
    FROM int_latest_exclusion
    WHERE category IN ('SUSP', 'PERM')
    GROUP BY ALL
)
SELECT
    m.metric_id, p.period, p.la_code, p.child_id, coalesce(e.n, 0) AS numerator,
    1 AS denominator
FROM dim_child_period AS p
CROSS JOIN (VALUES ('suspension_rate', 'SUSP'), ('permanent_exclusion_rate', 'PERM'))
    AS m(metric_id, category)
LEFT JOIN events AS e
    ON e.child_id = p.child_id AND e.period = p.period AND e.category = m.category
WHERE p.sen_provision <> 'X';
