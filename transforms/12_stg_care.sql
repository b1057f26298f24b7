-- Staging of the social care extracts: person_token replaced by child_id (see
-- 10_stg_education.sql).

CREATE TEMP TABLE stg_cin AS
SELECT
    s.child_id, c.period, c.delivery_id, c.la_code, c.cin_referral_date, c.referral_source,
    c.primary_need_code, c.cin_closure_date, c.cpp_start_date, c.cpp_end_date, c.disabilities,
    c.birth_ym, c.sex, c.ethnicity
FROM src_care_cin AS c
LEFT JOIN src_spine AS s ON s.agency = 'care' AND s.person_token = c.person_token;

CREATE TEMP TABLE stg_lac AS
SELECT
    s.child_id, l.period, l.delivery_id, l.la_code, l.decom, l.rne, l.legal_status,
    l.placement, l.dec, l.rec, l.birth_ym, l.sex, l.ethnicity
FROM src_care_lac AS l
LEFT JOIN src_spine AS s ON s.agency = 'care' AND s.person_token = l.person_token;
