-- Units of health_referrals_received (activity): one per referral to a community health
-- service or CAMHS received in the period (academic year, and financial year, of its received
-- date), taken once (int_latest_health_referral), in the area of the health record; numerator
-- 1; service: the referral's.

INSERT INTO int_metric_units BY NAME
SELECT
    'health_referrals_received' AS metric_id, academic_year(referral_received_date) AS period,
    referral_received_date AS event_date, la_code, child_id, 1 AS numerator, service
FROM int_latest_health_referral;
