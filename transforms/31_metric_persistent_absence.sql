-- Metric persistent_absence: of census pupils with sessions possible > 0, those whose
-- authorised + unauthorised absence is at least 10% of sessions possible (tested in integers:
-- 10 * absent >= possible). One census record is one pupil; its own SEN provision and area.
-- Cells: every area and period with a census delivery, by sen_status N, K, E and all.

CREATE TEMP TABLE int_metric_persistent_absence AS
WITH pupils AS (
    SELECT
        period, la_code, sen_provision,
        10 * (sessions_authorised + sessions_unauthorised) >= sessions_possible
            AS persistently_absent
    FROM fct_attendance
    WHERE sessions_possible > 0
),
cells AS (
    SELECT DISTINCT d.period, d.la_code, s.cohort_value
    FROM deliveries AS d
    CROSS JOIN (VALUES ('N'), ('K'), ('E'), ('all')) AS s(cohort_value)
    WHERE d.extract = 'education_census'
)
SELECT
    'persistent_absence' AS metric_id, c.period, c.la_code, 'sen_status' AS cohort,
    c.cohort_value,
    -- count(*) FILTER, not count_if: DuckDB 2.0's count_if is NULL when every input is NULL
    -- (a cell with no one in it after the LEFT JOIN), where the count must be 0.
    count(*) FILTER (WHERE p.persistently_absent) AS numerator,
    count(p.la_code) AS denominator,
    100.0 * numerator / nullif(denominator, 0) AS value
FROM cells AS c
LEFT JOIN pupils AS p
    ON p.period = c.period AND p.la_code = c.la_code
    AND c.cohort_value IN (p.sen_provision, 'all')
GROUP BY ALL;
