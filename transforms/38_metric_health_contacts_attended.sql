-- Units of health_contacts_attended (activity): one per health referral row of each period's
-- return; numerator the care contacts the child attended in that period (contacts carry no
-- dates, so academic-year cells only); service: the referral's. Area: the child's in that
-- period (dim_child_period), else the referral's own, as for dna_rate
-- (33_metric_dna_rate.sql), so that in every cell contacts attended plus not attended (dna_rate's
-- denominator) is this count plus dna_rate's numerator, as disclosure control assumes
-- (int_count_sums, 49_disclosure_counts.sql).

INSERT INTO int_metric_units BY NAME
SELECT
    'health_contacts_attended' AS metric_id, r.period, coalesce(d.la_code, r.la_code) AS la_code,
    r.child_id, r.contacts_attended AS numerator, r.service
FROM fct_health_referrals AS r
LEFT JOIN dim_child_period AS d USING (child_id, period);
