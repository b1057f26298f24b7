-- Units of health_contacts_attended (activity): one per health referral row of each period's
-- return, in the area of the health record; numerator the care contacts the child attended in
-- that period (contacts carry no dates, so academic-year cells only); service: the referral's.

INSERT INTO int_metric_units BY NAME
SELECT
    'health_contacts_attended' AS metric_id, period, la_code, child_id,
    contacts_attended AS numerator, service
FROM fct_health_referrals;
