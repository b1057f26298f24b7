-- Units of first_contact_to_ehc_request_weeks_median: one per request for an EHC needs
-- assessment received in the period (academic year, and financial year, of its received date),
-- in the area of the request, whose child had a contact with health or social care on or
-- before the day the request was received: a health referral received or a child-in-need
-- referral (earlier EHC requests do not count). Measure: the weeks from the earliest such
-- contact in the returns the warehouse holds to the request. Requests with no earlier contact
-- have no units: the median is of the requests with one.

INSERT INTO int_metric_units BY NAME
WITH contacts AS (
    SELECT child_id, referral_received_date AS contact_date FROM int_latest_health_referral
    UNION ALL
    SELECT child_id, cin_referral_date FROM int_latest_cin_episode
),
first_contacts AS (
    SELECT r.child_id, r.la_code, r.received_date, min(c.contact_date) AS first_contact
    FROM int_latest_ehc_request AS r
    JOIN contacts AS c ON c.child_id = r.child_id AND c.contact_date <= r.received_date
    GROUP BY ALL
)
SELECT
    'first_contact_to_ehc_request_weeks_median' AS metric_id,
    academic_year(received_date) AS period, received_date AS event_date, la_code, child_id,
    (received_date - first_contact) / 7.0 AS measure
FROM first_contacts;
