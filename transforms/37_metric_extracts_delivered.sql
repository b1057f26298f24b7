-- Units of extracts_delivered_share: one per extract the pipeline expects (ref_extract: every
-- extract contract, loaded by metrics.py) for each area and academic year with at least one
-- current delivery of any extract (deliveries); numerator 1 when the extract itself has a
-- current, accepted delivery for that area and year. An area that delivered nothing at all in
-- a year is unknown to the warehouse and has no units. Not about a child (child_id NULL);
-- cohort dimension agency: the agency the extract is expected from.

INSERT INTO int_metric_units BY NAME
WITH areas AS (
    SELECT DISTINCT period, la_code FROM deliveries
)
SELECT
    'extracts_delivered_share' AS metric_id, a.period, a.la_code,
    CASE WHEN d.extract IS NULL THEN 0 ELSE 1 END AS numerator, 1 AS denominator, e.agency
FROM areas AS a
CROSS JOIN ref_extract AS e
LEFT JOIN deliveries AS d
    ON d.period = a.period AND d.la_code = a.la_code AND d.extract = e.extract;
