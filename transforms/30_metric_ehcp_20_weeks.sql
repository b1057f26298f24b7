-- Units of ehcp_issued_within_20_weeks and ehcp_issued_within_20_weeks_excluding_exceptions:
-- one per new EHC plan, in the academic year of its start date (the day it was issued), in the
-- area of its request; numerator 1 when issued no more than 140 days (20 weeks) after the
-- request was received. The second measure leaves out plans where an exception to the 20-week
-- limit applies (week20_exception). Primary need: the plan's own, from SEN2.

INSERT INTO int_metric_units BY NAME
SELECT
    m.metric_id, academic_year(r.plan_start_date) AS period, r.plan_start_date AS event_date,
    r.la_code, r.child_id,
    CASE WHEN r.plan_start_date - r.received_date <= 140 THEN 1 ELSE 0 END AS numerator,
    1 AS denominator, r.primary_need
FROM int_latest_ehc_request AS r
JOIN (VALUES ('ehcp_issued_within_20_weeks', true),
             ('ehcp_issued_within_20_weeks_excluding_exceptions', false))
    AS m(metric_id, with_exceptions)
    ON m.with_exceptions OR NOT r.week20_exception
WHERE r.plan_start_date IS NOT NULL;
