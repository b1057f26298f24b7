-- Units of known_to_services_1, _2, _3: one per child known to any service in the period (in
-- its dim_child_period area), for each of the three metrics; numerator 1 when that period's
-- extracts of exactly 1, 2 or 3 agencies hold a record of the child.

INSERT INTO int_metric_units BY NAME
WITH children AS (
    SELECT d.child_id, d.period, d.la_code, count(*) AS agencies
    FROM dim_child_period AS d
    JOIN fct_service_contact AS f USING (child_id, period)
    GROUP BY ALL
)
SELECT
    'known_to_services_' || k.agencies AS metric_id, c.period, c.la_code, c.child_id,
    CASE WHEN c.agencies = k.agencies THEN 1 ELSE 0 END AS numerator, 1 AS denominator
FROM children AS c
CROSS JOIN (VALUES (1), (2), (3)) AS k(agencies);
