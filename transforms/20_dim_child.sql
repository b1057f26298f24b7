-- Child dimension, in two tables:
--   dim_child_period: one row per child and academic-year period in which any agency knows the
--     child. It holds what can change between periods, and the cohort attributes the metrics
--     break down by (21_cohorts.sql lists their values). All come from the child's first record
--     of the period by stg_person.source_rank (education's school census, with the most sessions
--     possible, then exclusions, SEN2, health, social care), unless said otherwise:
--       la_code: the area of that record (education's if any, else health's, else care's).
--       sen_provision: 'N', 'K', 'E' from the school census, 'X' when not on that census.
--       age_at_31_aug: age on the 31 August before the period; age_band: its band as in the
--         DfE's EHC plan statistics (under 5, 5-10, 11-15, 16-19, 20 and over), 'unknown'
--         without a birth month.
--       primary_need: the census primary need (sen_type code); else the need on the child's
--         latest SEN2 request of the period that records one; else 'none' for a census pupil
--         with no SEN (N); else 'unknown'.
--       sex: M, F or U (U also when no record gives one).
--       ethnicity_group: the group of the ethnicity code (ref_ethnicity_group); 'Unknown'
--         when absent (as for the codes REFU and NOBT).
--       fsm: 'eligible' or 'not eligible' from the census; 'unknown' when not on the census.
--       care_status: the child's involvement with children's social care in the period, from
--         int_child_services (16_child_services.sql), by precedence: 'lac' looked after, else
--         'cpp' on a child protection plan, else 'cin' a child in need, else 'none'.
--     Each attribute is taken within the period, so adding a period never changes another's.
--   dim_child: one row per child with its stable attributes (birth month, sex, ethnicity) and
--     its area, as recorded in the latest period the child appears in, by the same precedence.

CREATE OR REPLACE TEMP MACRO age_band(age) AS
    CASE WHEN age IS NULL THEN 'unknown'
         WHEN age < 5 THEN 'under 5'
         WHEN age <= 10 THEN '5-10'
         WHEN age <= 15 THEN '11-15'
         WHEN age <= 19 THEN '16-19'
         ELSE '20 and over' END;

CREATE TABLE dim_child_period AS
WITH sen2_need AS (
    SELECT child_id, period, primary_need
    FROM stg_sen2
    WHERE primary_need IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY child_id, period ORDER BY received_date DESC, primary_need
    ) = 1
)
SELECT
    p.child_id, p.period, p.la_code, coalesce(p.sen_provision, 'X') AS sen_provision,
    p.age_at_31_aug,
    coalesce(
        p.primary_need, n.primary_need, CASE WHEN p.sen_provision = 'N' THEN 'none' END, 'unknown'
    ) AS primary_need,
    age_band(p.age_at_31_aug) AS age_band,
    coalesce(p.sex, 'U') AS sex,
    coalesce(p.ethnicity_group, 'Unknown') AS ethnicity_group,
    CASE WHEN p.fsm_eligible THEN 'eligible'
         WHEN NOT p.fsm_eligible THEN 'not eligible'
         ELSE 'unknown' END AS fsm,
    CASE WHEN s.looked_after THEN 'lac'
         WHEN s.protection_plan THEN 'cpp'
         WHEN s.in_need THEN 'cin'
         ELSE 'none' END AS care_status
FROM stg_person AS p
LEFT JOIN sen2_need AS n USING (child_id, period)
LEFT JOIN int_child_services AS s USING (child_id, period)
WHERE p.rank_in_period = 1
ORDER BY p.period, p.la_code, p.child_id;

CREATE TABLE dim_child AS
SELECT child_id, birth_ym, sex, ethnicity, ethnicity_group, la_code
FROM stg_person
WHERE rank_in_period = 1
QUALIFY row_number() OVER (PARTITION BY child_id ORDER BY period DESC) = 1
ORDER BY child_id;
