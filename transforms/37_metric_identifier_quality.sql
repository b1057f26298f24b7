-- int_person_identifier: one row per agency person record (person_token) delivered in a
-- period and area, identifier it should carry and that identifier's status (valid, invalid,
-- missing at source, as pseudonymisation recorded it): education records their UPN, health
-- records their NHS number, social care records both. 60_data_quality.sql summarises it as
-- dq_identifier_completeness; 90_drop_sources.sql drops it (it holds tokens).
--
-- Units of identifier_recorded_share and identifier_valid_share: one per row of it, in the
-- period and area of the delivery, with cohort dimension identifier '<agency>:<identifier>'
-- and the record's child (src_spine); numerator 1 when the identifier is recorded (valid or
-- invalid), respectively valid.

CREATE TEMP TABLE int_person_identifier AS
SELECT DISTINCT *
FROM (
    SELECT 'education' AS agency, period, la_code, person_token, 'upn' AS identifier,
           upn_status AS status FROM src_education_census
    UNION ALL SELECT 'education', period, la_code, person_token, 'upn', upn_status
              FROM src_education_exclusions
    UNION ALL SELECT 'education', period, la_code, person_token, 'upn', upn_status
              FROM src_education_sen2
    UNION ALL SELECT 'health', period, la_code, person_token, 'nhs_number', nhs_status
              FROM src_health_referrals
    UNION ALL SELECT 'care', period, la_code, person_token, 'nhs_number', nhs_status
              FROM src_care_cin
    UNION ALL SELECT 'care', period, la_code, person_token, 'nhs_number', nhs_status
              FROM src_care_lac
    UNION ALL SELECT 'care', period, la_code, person_token, 'upn', upn_status FROM src_care_cin
    UNION ALL SELECT 'care', period, la_code, person_token, 'upn', upn_status FROM src_care_lac
);

INSERT INTO int_metric_units BY NAME
SELECT
    m.metric_id, i.period, i.la_code, s.child_id,
    coalesce(CASE m.metric_id
                 WHEN 'identifier_recorded_share' THEN i.status IN ('valid', 'invalid')
                 ELSE i.status = 'valid'
             END, false)::INTEGER AS numerator,
    1 AS denominator, i.agency || ':' || i.identifier AS identifier
FROM int_person_identifier AS i
LEFT JOIN src_spine AS s ON s.agency = i.agency AND s.person_token = i.person_token
CROSS JOIN (VALUES ('identifier_recorded_share'), ('identifier_valid_share')) AS m(metric_id);
