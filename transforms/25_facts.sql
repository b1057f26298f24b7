-- Fact tables analysts query, one per extract at the extract's own grain and period (a
-- referral or request still open next year is reported again in that year's delivery, so it
-- appears once per delivery period). Keyed by child_id and period; delivery_id traces a row
-- back to the delivery it came from. No identity columns: join dim_child for those.

CREATE TABLE fct_attendance AS
SELECT
    child_id, period, la_code, ncyear, sen_provision, primary_need, secondary_need,
    fsm_eligible, sessions_possible, sessions_authorised, sessions_unauthorised, delivery_id
FROM stg_census
ORDER BY period, la_code, child_id;

CREATE TABLE fct_exclusions AS
SELECT
    child_id, period, la_code, start_date, category, reason, sessions, sen_provision,
    reinstatement_date, delivery_id
FROM stg_exclusions
ORDER BY period, la_code, start_date, child_id;

CREATE TABLE fct_ehc_requests AS
SELECT
    child_id, period, la_code, received_date, request_source, request_outcome,
    request_outcome_date, assessment_outcome, assessment_outcome_date, week20_exception,
    plan_start_date, primary_need, delivery_id
FROM stg_sen2
ORDER BY period, la_code, received_date, child_id;

CREATE TABLE fct_health_referrals AS
SELECT
    child_id, period, la_code, dataset, service, referral_received_date, referral_source,
    first_attended_contact_date, discharge_date, contacts_attended, contacts_dna, delivery_id
FROM stg_health_referrals
ORDER BY period, la_code, referral_received_date, child_id;

CREATE TABLE fct_cin_episodes AS
SELECT
    child_id, period, la_code, cin_referral_date, referral_source, primary_need_code,
    cin_closure_date, cpp_start_date, cpp_end_date, disabilities, delivery_id
FROM stg_cin
ORDER BY period, la_code, cin_referral_date, child_id;

CREATE TABLE fct_lac_episodes AS
SELECT
    child_id, period, la_code, decom, rne, legal_status, placement, dec, rec, delivery_id
FROM stg_lac
ORDER BY period, la_code, decom, child_id;

-- "Known to services": one row per child, period and agency whose extracts of that period
-- hold at least one record of the child.
CREATE TABLE fct_service_contact AS
SELECT DISTINCT child_id, period, agency
FROM stg_person
ORDER BY period, child_id, agency;

-- The linker's links, with each side's child_id instead of its token: match weight and
-- probability, the agreement pattern that produced them (comparison levels, no identifiers) and
-- decided_by ('model', or 'clerical' for a pair a data engineer accepted on review).
-- 70_linkage_qa.sql fails the build when a link lacks any of them.
CREATE TABLE link_pairs AS
SELECT
    l.agency_l, sl.child_id AS child_id_l, l.agency_r, sr.child_id AS child_id_r,
    l.match_weight, l.match_probability, l.agreement, l.decided_by
FROM src_links AS l
LEFT JOIN src_spine AS sl ON sl.agency = l.agency_l AND sl.person_token = l.person_token_l
LEFT JOIN src_spine AS sr ON sr.agency = l.agency_r AND sr.person_token = l.person_token_r
ORDER BY l.match_weight DESC, child_id_l, child_id_r;
