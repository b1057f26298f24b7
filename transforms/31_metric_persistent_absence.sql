-- Units of persistent_absence: one per census record with sessions possible > 0, in its own
-- area and with its own SEN provision; numerator 1 when authorised + unauthorised absence is at
-- least 10% of sessions possible (tested in integers: 10 * absent >= possible).

INSERT INTO int_metric_units BY NAME
SELECT
    'persistent_absence' AS metric_id, period, la_code, child_id,
    CASE WHEN 10 * (sessions_authorised + sessions_unauthorised) >= sessions_possible
         THEN 1 ELSE 0 END AS numerator,
    1 AS denominator, sen_provision AS sen_status
FROM fct_attendance
WHERE sessions_possible > 0;
