-- Units of need_without_sen_identification ("falling through the net"): one per pupil on the
-- period's school census (in its census area) known in the period to health (a referral to a
-- community health service or CAMHS open in the period) or to social care (a child-in-need
-- episode open in the period), from int_child_services; numerator 1 when the census records
-- no special educational need (SEN provision N).

INSERT INTO int_metric_units BY NAME
SELECT
    'need_without_sen_identification' AS metric_id, d.period, d.la_code, d.child_id,
    CASE WHEN d.sen_provision = 'N' THEN 1 ELSE 0 END AS numerator, 1 AS denominator
FROM dim_child_period AS d
JOIN int_child_services AS s USING (child_id, period)
WHERE d.sen_provision <> 'X' AND (s.health_referral_open OR s.in_need);
