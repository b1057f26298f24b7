-- Units of cin_referrals_received (activity): one per child-in-need episode whose referral
-- date falls in the period (academic year, and financial year, of the date), taken once
-- (int_latest_cin_episode), in the area of the social care record; numerator 1.

INSERT INTO int_metric_units BY NAME
SELECT
    'cin_referrals_received' AS metric_id, academic_year(cin_referral_date) AS period,
    cin_referral_date AS event_date, la_code, child_id, 1 AS numerator
FROM int_latest_cin_episode;
