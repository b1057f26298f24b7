-- Units of in_need_share, protection_plan_share and looked_after_share: one per pupil on the
-- period's school census (dim_child_period, sen_provision not 'X'), in the child's census
-- area, for each metric; numerator 1 when the child had, in the period's own social care
-- returns, a child-in-need episode, a child protection plan or a looked-after episode open on
-- at least one day of the period (int_child_services, 16_child_services.sql).

INSERT INTO int_metric_units BY NAME
SELECT
    m.metric_id, p.period, p.la_code, p.child_id,
    CASE m.metric_id
        WHEN 'in_need_share' THEN coalesce(s.in_need, false)
        WHEN 'protection_plan_share' THEN coalesce(s.protection_plan, false)
        WHEN 'looked_after_share' THEN coalesce(s.looked_after, false)
    END::INTEGER AS numerator,
    1 AS denominator
FROM dim_child_period AS p
LEFT JOIN int_child_services AS s USING (child_id, period)
CROSS JOIN (VALUES ('in_need_share'), ('protection_plan_share'), ('looked_after_share'))
    AS m(metric_id)
WHERE p.sen_provision <> 'X';
