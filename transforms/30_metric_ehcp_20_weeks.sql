-- Metric ehcp_issued_within_20_weeks: of the new EHC plans issued in the period (plan start
-- date within the academic year), those issued no more than 140 days (20 weeks) after the
-- request was received. A request still open at year end is reported again in the next SEN2
-- delivery, so each request (child, area, received date) is taken from its latest delivery,
-- and a plan counts in the period it was issued whichever delivery reported it.
-- Cells: every area and period with a SEN2 delivery; cohort sen_status 'all' only.

CREATE TEMP TABLE int_metric_ehcp_issued_within_20_weeks AS
WITH latest_request AS (
    SELECT *
    FROM fct_ehc_requests
    QUALIFY row_number() OVER (
        PARTITION BY child_id, la_code, received_date ORDER BY period DESC
    ) = 1
),
plans AS (
    SELECT p.period, r.la_code, r.plan_start_date - r.received_date <= 140 AS within_20_weeks
    FROM latest_request AS r
    JOIN ref_period AS p ON r.plan_start_date BETWEEN p.period_start AND p.period_end
),
cells AS (
    SELECT DISTINCT period, la_code, 'all' AS cohort_value
    FROM deliveries
    WHERE extract = 'education_sen2'
)
SELECT
    'ehcp_issued_within_20_weeks' AS metric_id, c.period, c.la_code, 'sen_status' AS cohort,
    c.cohort_value,
    -- count(*) FILTER, not count_if: DuckDB 2.0's count_if is NULL when every input is NULL
    -- (a cell with no one in it after the LEFT JOIN), where the count must be 0.
    count(*) FILTER (WHERE p.within_20_weeks) AS numerator,
    count(p.la_code) AS denominator,
    100.0 * numerator / nullif(denominator, 0) AS value
FROM cells AS c
LEFT JOIN plans AS p ON p.period = c.period AND p.la_code = c.la_code
GROUP BY ALL;
