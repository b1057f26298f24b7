-- Child dimension, in two tables:
--   dim_child_period: one row per child and period in which any agency knows the child. It holds
--     what can change between periods: the area (la_code), the SEN provision on the school
--     census ('N', 'K', 'E', or 'X' when the child is not on that period's census) and the age
--     at 31 August. The area is education's if the child has an education record in the period,
--     else health's, else social care's (stg_person.source_rank). Metrics use this table.
--   dim_child: one row per child with its stable attributes (birth month, sex, ethnicity) and
--     its area, as recorded in the latest period the child appears in, by the same precedence.

CREATE TABLE dim_child_period AS
SELECT
    child_id, period, la_code, coalesce(sen_provision, 'X') AS sen_provision, age_at_31_aug
FROM stg_person
WHERE rank_in_period = 1
ORDER BY period, la_code, child_id;

CREATE TABLE dim_child AS
SELECT child_id, birth_ym, sex, ethnicity, ethnicity_group, la_code
FROM stg_person
WHERE rank_in_period = 1
QUALIFY row_number() OVER (PARTITION BY child_id ORDER BY period DESC) = 1
ORDER BY child_id;
