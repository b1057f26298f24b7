-- Units of ehcp_weeks_request_to_plan_median: one per new EHC plan (as in
-- 30_metric_ehcp_20_weeks.sql), measuring the weeks from the request being received to the
-- plan being issued.

INSERT INTO int_metric_units BY NAME
SELECT
    'ehcp_weeks_request_to_plan_median' AS metric_id, academic_year(plan_start_date) AS period,
    plan_start_date AS event_date, la_code, child_id,
    (plan_start_date - received_date) / 7.0 AS measure, primary_need
FROM int_latest_ehc_request
WHERE plan_start_date IS NOT NULL;
