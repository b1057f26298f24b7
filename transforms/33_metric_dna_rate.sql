-- Units of dna_rate: one per health referral row of each period's return with at least one
-- care contact in that period (a referral open across two years counts in each, with that
-- year's contacts); numerator its contacts the child did not attend (DNA), denominator its
-- contacts attended plus not attended. Contacts carry no dates in the return, so the measure
-- has academic-year cells only. Area: the child's in that period (dim_child_period), else the
-- referral's own; service: the referral's.

INSERT INTO int_metric_units BY NAME
SELECT
    'dna_rate' AS metric_id, r.period, coalesce(d.la_code, r.la_code) AS la_code, r.child_id,
    r.contacts_dna AS numerator, r.contacts_attended + r.contacts_dna AS denominator, r.service
FROM fct_health_referrals AS r
LEFT JOIN dim_child_period AS d USING (child_id, period)
WHERE r.contacts_attended + r.contacts_dna > 0;
