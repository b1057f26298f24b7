-- Suspensions per 100 census pupils, and the ratio of the SEN groups' rates to the no-SEN rate.
-- Pupils are the children on the period's school census (dim_child_period, sen_provision not
-- 'X'), in their census area and by their census SEN provision. Suspensions are exclusions of
-- category SUSP (lunchtime LNCH and permanent PERM are not suspensions) whose start date falls
-- in the period, each taken once (from its latest delivery should a later return repeat it);
-- suspensions of children not on that period's census are left out. The linker never puts two
-- records of one agency in one child, so counting by child equals counting by census record.
-- int_suspension_cells also holds 'SEN' (K and E together), which only the ratio uses; it is
-- kept until 50_published_metrics.sql has applied disclosure control to the ratio's parts.

CREATE TEMP TABLE int_suspension_cells AS
WITH pupils AS (
    SELECT child_id, period, la_code, sen_provision
    FROM dim_child_period
    WHERE sen_provision <> 'X'
),
latest_suspension AS (
    SELECT *
    FROM fct_exclusions
    WHERE category = 'SUSP'
    QUALIFY row_number() OVER (
        PARTITION BY child_id, la_code, start_date, category ORDER BY period DESC
    ) = 1
),
suspensions AS (
    SELECT x.child_id, p.period, count(*) AS n
    FROM latest_suspension AS x
    JOIN ref_period AS p ON x.start_date BETWEEN p.period_start AND p.period_end
    GROUP BY ALL
),
cells AS (
    SELECT DISTINCT d.period, d.la_code, s.cohort_value
    FROM deliveries AS d
    CROSS JOIN (VALUES ('N'), ('K'), ('E'), ('SEN'), ('all')) AS s(cohort_value)
    WHERE d.extract = 'education_census'
)
SELECT
    c.period, c.la_code, c.cohort_value,
    coalesce(sum(s.n), 0) AS suspensions,
    count(p.child_id) AS pupils,
    100.0 * suspensions / nullif(pupils, 0) AS rate_per_100
FROM cells AS c
LEFT JOIN pupils AS p
    ON p.period = c.period AND p.la_code = c.la_code
    AND (c.cohort_value IN (p.sen_provision, 'all')
         OR (c.cohort_value = 'SEN' AND p.sen_provision IN ('K', 'E')))
LEFT JOIN suspensions AS s ON s.child_id = p.child_id AND s.period = p.period
GROUP BY ALL;

-- Metric suspension_rate: sen_status N, K, E and all.
CREATE TEMP TABLE int_metric_suspension_rate AS
SELECT
    'suspension_rate' AS metric_id, period, la_code, 'sen_status' AS cohort, cohort_value,
    suspensions AS numerator, pupils AS denominator, rate_per_100 AS value
FROM int_suspension_cells
WHERE cohort_value IN ('N', 'K', 'E', 'all');

-- Metric suspension_ratio_to_no_sen: K, E and SEN rates over the N rate (numerator and
-- denominator are the two rates). NULL when either rate is undefined or the N rate is zero.
CREATE TEMP TABLE int_metric_suspension_ratio_to_no_sen AS
SELECT
    'suspension_ratio_to_no_sen' AS metric_id, g.period, g.la_code, 'sen_status' AS cohort,
    g.cohort_value,
    g.rate_per_100 AS numerator,
    n.rate_per_100 AS denominator,
    numerator / nullif(denominator, 0) AS value
FROM int_suspension_cells AS g
JOIN int_suspension_cells AS n
    ON n.period = g.period AND n.la_code = g.la_code AND n.cohort_value = 'N'
WHERE g.cohort_value IN ('K', 'E', 'SEN');
