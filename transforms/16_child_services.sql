-- int_child_services: per child and academic year, which health and social care services were
-- involved with the child in that year, from that year's own returns (each return lists the
-- referrals and episodes open in its period, so adding a period never changes another's).
-- "Open in the period" means open on at least one day of it: started on or before the period
-- end and not ended before the period start (no end date: still open).
--   health_referral_open  a referral to a community health service or CAMHS open in the period
--                         (referral received, not discharged before the period).
--   in_need               a child-in-need episode open in the period (CIN census: referral
--                         date to closure date).
--   protection_plan       a child protection plan open in the period (CIN census: plan start
--                         to plan end date).
--   looked_after          a looked-after episode open in the period (SSDA903: DECOM to DEC).
-- dim_child_period.care_status (20_dim_child.sql) and the care and integration metrics
-- (35_metric_*.sql) read it; 90_drop_sources.sql drops it.

CREATE OR REPLACE TEMP MACRO open_in(start_date, end_date, period_start, period_end) AS
    start_date <= period_end AND coalesce(end_date >= period_start, true);

CREATE TEMP TABLE int_child_services AS
WITH periods AS (
    SELECT period, period_start, period_end FROM ref_period WHERE kind = 'academic_year'
),
involvement AS (
    SELECT h.child_id, h.period, 'health' AS kind
    FROM stg_health_referrals AS h
    JOIN periods AS p USING (period)
    WHERE open_in(h.referral_received_date, h.discharge_date, p.period_start, p.period_end)
    UNION ALL
    SELECT c.child_id, c.period, 'cin'
    FROM stg_cin AS c
    JOIN periods AS p USING (period)
    WHERE open_in(c.cin_referral_date, c.cin_closure_date, p.period_start, p.period_end)
    UNION ALL
    SELECT c.child_id, c.period, 'cpp'
    FROM stg_cin AS c
    JOIN periods AS p USING (period)
    WHERE open_in(c.cpp_start_date, c.cpp_end_date, p.period_start, p.period_end)
    UNION ALL
    SELECT l.child_id, l.period, 'lac'
    FROM stg_lac AS l
    JOIN periods AS p USING (period)
    WHERE open_in(l.decom, l.dec, p.period_start, p.period_end)
)
SELECT
    child_id, period,
    bool_or(kind = 'health') AS health_referral_open,
    bool_or(kind = 'cin') AS in_need,
    bool_or(kind = 'cpp') AS protection_plan,
    bool_or(kind = 'lac') AS looked_after
FROM involvement
WHERE child_id IS NOT NULL
GROUP BY ALL;
