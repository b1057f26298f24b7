-- Units of ehcp_requests_agreed_to_assess: one per request for an EHC needs assessment received
-- in the period on which the local authority has decided (request_outcome A agreed or N not
-- agreed; withdrawn and pending requests are left out); numerator 1 when agreed.

INSERT INTO int_metric_units BY NAME
SELECT
    'ehcp_requests_agreed_to_assess' AS metric_id, academic_year(received_date) AS period,
    received_date AS event_date, la_code, child_id,
    CASE WHEN request_outcome = 'A' THEN 1 ELSE 0 END AS numerator, 1 AS denominator
FROM int_latest_ehc_request
WHERE request_outcome IN ('A', 'N');
