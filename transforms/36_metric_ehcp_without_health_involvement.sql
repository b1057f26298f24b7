-- Units of ehcp_without_health_involvement: one per child with an EHC plan in the period, in
-- its dim_child_period area: on that period's school census with SEN provision E, or with a
-- SEN2 plan whose start date is on or before the period end (SEN2 records no ceased plans, so
-- a plan once issued is taken to stand). Numerator 1 when no referral to a community health
-- service or CAMHS was open for the child in the period (int_child_services).

INSERT INTO int_metric_units BY NAME
WITH planned AS (
    SELECT d.child_id, d.period
    FROM dim_child_period AS d
    WHERE d.sen_provision = 'E'
    UNION
    SELECT d.child_id, d.period
    FROM dim_child_period AS d
    JOIN ref_period AS p USING (period)
    JOIN int_latest_ehc_request AS r
        ON r.child_id = d.child_id AND r.plan_start_date <= p.period_end
)
SELECT
    'ehcp_without_health_involvement' AS metric_id, d.period, d.la_code, d.child_id,
    CASE WHEN coalesce(s.health_referral_open, false) THEN 0 ELSE 1 END AS numerator,
    1 AS denominator
FROM planned
JOIN dim_child_period AS d USING (child_id, period)
LEFT JOIN int_child_services AS s USING (child_id, period);
