-- Units of referral_flows (activity): one per referral from one service to another, in the
-- academic year (and financial year) it was received, in the area of the service receiving it;
-- the flow (cohort dimension flow) comes from the referral's recorded source:
--   education->health  a health referral from a school or education service (source SCH)
--   care->health       a health referral from social care (SC)
--   education->care    a child-in-need referral from a school (2A)
--   health->care       a child-in-need referral from a GP or health visitor (3A, 3B)
--   health->education  a request for an EHC needs assessment from a health service (HLT)
--   care->education    a request for an EHC needs assessment from social care (SC)
-- Referrals from any other source are not flows between the three services and are left out.
-- Each referral is taken once (the int_latest_* tables of 29_metric_units.sql).

INSERT INTO int_metric_units BY NAME
WITH referrals AS (
    SELECT child_id, la_code, referral_received_date AS received,
           CASE referral_source WHEN 'SCH' THEN 'education->health'
                                WHEN 'SC' THEN 'care->health' END AS flow
    FROM int_latest_health_referral
    UNION ALL
    SELECT child_id, la_code, cin_referral_date,
           CASE WHEN referral_source = '2A' THEN 'education->care'
                WHEN referral_source IN ('3A', '3B') THEN 'health->care' END
    FROM int_latest_cin_episode
    UNION ALL
    SELECT child_id, la_code, received_date,
           CASE request_source WHEN 'HLT' THEN 'health->education'
                               WHEN 'SC' THEN 'care->education' END
    FROM int_latest_ehc_request
)
SELECT
    'referral_flows' AS metric_id, academic_year(received) AS period, received AS event_date,
    la_code, child_id, 1 AS numerator, flow
FROM referrals
WHERE flow IS NOT NULL;
