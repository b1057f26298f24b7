-- Every agency record of a child in a period, with the attributes dim_child is built from.
-- source_rank orders the sources a child's attributes are taken from: education first (the
-- school census before exclusions and SEN2), then health, then social care; within the census
-- the enrolment with the most sessions possible wins. age_at_31_aug is the age on the 31 August
-- before the academic year starts (ref_period.age_reference_date), exact from the birth month
-- because 31 August is the last day of its month. ethnicity_group comes from
-- ref_ethnicity_group (loaded from schemas/codes.json); it is NULL when ethnicity is missing.

CREATE TEMP TABLE stg_person AS
WITH records AS (
    SELECT child_id, period, la_code, 'education' AS agency, 1 AS source_rank,
           sessions_possible, sen_provision, primary_need, fsm_eligible, birth_ym, sex, ethnicity
    FROM stg_census
    UNION ALL
    SELECT child_id, period, la_code, 'education', 2, NULL, NULL, NULL, NULL, birth_ym, sex,
           ethnicity
    FROM stg_exclusions
    UNION ALL
    SELECT child_id, period, la_code, 'education', 3, NULL, NULL, NULL, NULL, birth_ym, sex,
           ethnicity
    FROM stg_sen2
    UNION ALL
    SELECT child_id, period, la_code, 'health', 4, NULL, NULL, NULL, NULL, birth_ym, sex, ethnicity
    FROM stg_health_referrals
    UNION ALL
    SELECT child_id, period, la_code, 'care', 5, NULL, NULL, NULL, NULL, birth_ym, sex, ethnicity
    FROM stg_cin
    UNION ALL
    SELECT child_id, period, la_code, 'care', 6, NULL, NULL, NULL, NULL, birth_ym, sex, ethnicity
    FROM stg_lac
)
SELECT
    r.child_id, r.period, r.la_code, r.agency, r.source_rank, r.sen_provision, r.primary_need,
    r.fsm_eligible, r.birth_ym, r.sex, r.ethnicity, g.ethnicity_group,
    year(p.age_reference_date) - CAST(left(r.birth_ym, 4) AS INTEGER)
        - CASE WHEN CAST(right(r.birth_ym, 2) AS INTEGER) > month(p.age_reference_date)
               THEN 1 ELSE 0 END AS age_at_31_aug,
    row_number() OVER (
        PARTITION BY r.child_id, r.period
        ORDER BY r.source_rank, r.sessions_possible DESC NULLS LAST, r.la_code, r.birth_ym,
                 r.sex, r.ethnicity
    ) AS rank_in_period
FROM records AS r
JOIN ref_period AS p USING (period)
LEFT JOIN ref_ethnicity_group AS g USING (ethnicity);
