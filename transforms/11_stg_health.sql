-- Staging of the health extract: person_token replaced by child_id (see 10_stg_education.sql).

CREATE TEMP TABLE stg_health_referrals AS
SELECT
    s.child_id, h.period, h.delivery_id, h.la_code, h.dataset, h.service,
    h.referral_received_date, h.referral_source, h.first_attended_contact_date,
    h.discharge_date, h.contacts_attended, h.contacts_dna, h.birth_ym, h.sex, h.ethnicity
FROM src_health_referrals AS h
LEFT JOIN src_spine AS s ON s.agency = 'health' AND s.person_token = h.person_token;
