-- Metrics known_to_services_1, _2, _3: of the children known to any service in the area and
-- period, those appearing in that period's extracts of exactly 1, 2 or 3 agencies. A child's
-- area and SEN status (N, K, E, X = not on the census) are those of dim_child_period.
-- Cells: every area and period with at least one child, by N, K, E, X and all.

CREATE TEMP TABLE int_metric_known_to_services AS
WITH children AS (
    SELECT d.child_id, d.period, d.la_code, d.sen_provision, count(*) AS agencies
    FROM dim_child_period AS d
    JOIN fct_service_contact AS f USING (child_id, period)
    GROUP BY ALL
),
cells AS (
    SELECT DISTINCT d.period, d.la_code, s.cohort_value, k.agencies
    FROM dim_child_period AS d
    CROSS JOIN (VALUES ('N'), ('K'), ('E'), ('X'), ('all')) AS s(cohort_value)
    CROSS JOIN (VALUES (1), (2), (3)) AS k(agencies)
)
SELECT
    'known_to_services_' || c.agencies AS metric_id, c.period, c.la_code,
    'sen_status' AS cohort, c.cohort_value,
    -- count(*) FILTER, not count_if: DuckDB 2.0's count_if is NULL when every input is NULL
    -- (a cell with no one in it after the LEFT JOIN), where the count must be 0.
    count(*) FILTER (WHERE ch.agencies = c.agencies) AS numerator,
    count(ch.child_id) AS denominator,
    100.0 * numerator / nullif(denominator, 0) AS value
FROM cells AS c
LEFT JOIN children AS ch
    ON ch.period = c.period AND ch.la_code = c.la_code
    AND c.cohort_value IN (ch.sen_provision, 'all')
GROUP BY ALL;
