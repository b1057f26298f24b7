-- Staging of the education extracts. Each agency person record (person_token) is replaced by
-- the linked pseudonymous child_id from the spine; every other identity column (tokens, Bloom
-- encodings, identifier statuses, postcode district, school URN) is left behind. birth_ym, sex
-- and ethnicity are kept only to build dim_child (stg_person). Staging tables are TEMP: they
-- live in memory for the build and never reach the warehouse file. A record with no spine row
-- keeps a NULL child_id and fails the build in 19_check_spine_coverage.sql.

CREATE TEMP TABLE stg_census AS
SELECT
    s.child_id, c.period, c.delivery_id, c.la_code, c.ncyear, c.sen_provision, c.primary_need,
    c.secondary_need, c.fsm_eligible, c.sessions_possible, c.sessions_authorised,
    c.sessions_unauthorised, c.birth_ym, c.sex, c.ethnicity
FROM src_education_census AS c
LEFT JOIN src_spine AS s ON s.agency = 'education' AND s.person_token = c.person_token;

CREATE TEMP TABLE stg_exclusions AS
SELECT
    s.child_id, x.period, x.delivery_id, x.la_code, x.start_date, x.category, x.reason,
    x.sessions, x.sen_provision, x.reinstatement_date, x.birth_ym, x.sex, x.ethnicity
FROM src_education_exclusions AS x
LEFT JOIN src_spine AS s ON s.agency = 'education' AND s.person_token = x.person_token;

CREATE TEMP TABLE stg_sen2 AS
SELECT
    s.child_id, r.period, r.delivery_id, r.la_code, r.received_date, r.request_source,
    r.request_outcome, r.request_outcome_date, r.assessment_outcome, r.assessment_outcome_date,
    r.week20_exception, r.plan_start_date, r.primary_need, r.birth_ym, r.sex, r.ethnicity
FROM src_education_sen2 AS r
LEFT JOIN src_spine AS s ON s.agency = 'education' AND s.person_token = r.person_token;
