-- Units of overall_absence: one per census record with sessions possible > 0, in its own area
-- and with its own SEN provision; numerator its sessions of authorised and unauthorised
-- absence, denominator its sessions possible (the rate is sessions missed over sessions
-- possible, as the DfE's overall absence rate).

INSERT INTO int_metric_units BY NAME
SELECT
    'overall_absence' AS metric_id, period, la_code, child_id,
    sessions_authorised + sessions_unauthorised AS numerator,
    sessions_possible AS denominator, sen_provision AS sen_status
FROM fct_attendance
WHERE sessions_possible > 0;
