-- Units of ehc_requests_received (activity): one per request for an EHC needs assessment
-- received in the period (academic year of its received date), taken once
-- (int_latest_ehc_request), in the area of the request; numerator 1.

INSERT INTO int_metric_units BY NAME
SELECT
    'ehc_requests_received' AS metric_id, academic_year(received_date) AS period,
    received_date AS event_date, la_code, child_id, 1 AS numerator
FROM int_latest_ehc_request;
