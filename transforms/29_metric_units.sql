-- The shared input of every metric: int_metric_units, one row per thing a metric counts (a
-- "unit": a census pupil, an EHC plan, a referral, a child known to services). Each metric file
-- 3x_metric_<id>.sql INSERTs its units here and nothing else; 40_metric_values.sql turns the
-- units of every metric into its cells (every period, area, cohort dimension and value listed
-- for it) by the statistic its catalogue entry names. Columns:
--   metric_id    the catalogue id the unit counts towards.
--   period       the academic year the unit belongs to (academic_year(date) of its event, or
--                the census period). Units of a year that is not one of the build's periods
--                are left out. The unit's cohort attributes are its child's in this period.
--   event_date   the date that places the unit in a financial year (referral received, plan
--                issued, ...); NULL for units with no date (a census pupil), which then count
--                in academic years only.
--   la_code      the area the unit counts in (normally its child's dim_child_period area).
--   child_id     the child whose dim_child_period row in `period` gives the unit's cohort
--                attributes; NULL for a unit that is not about one child.
--   numerator    the unit's contribution to the numerator (0 or 1 for a share, a number of
--                events or sessions for a rate); NULL for medians and means.
--   denominator  its contribution to the denominator (1 per unit, or sessions possible).
--   measure      the value a median or mean is taken of (e.g. weeks waited); else NULL.
--   sen_status, primary_need, age_band, sex, ethnicity_group, fsm, care_status
--                a cohort attribute that comes from the event itself rather than from the
--                child's period (e.g. the census record's own SEN provision); NULL takes the
--                child's value from dim_child_period, and a child without one there gets
--                'X' (sen_status), 'unknown' (primary_need, age_band, fsm), 'U' (sex),
--                'Unknown' (ethnicity_group) or 'none' (care_status), as in 20_dim_child.sql.
--   service, flow, identifier, agency_pair, agency
--                a cohort attribute of the unit alone (21_cohorts.sql): every unit of a metric
--                listing one of these dimensions must carry its value (the build fails
--                otherwise); NULL for the units of other metrics.
--
-- Besides, the events several metric files count, each taken once: a return repeats a
-- record still open at year end in the next year's delivery, so each is taken from its latest
-- delivery (and counts in the period its own dates place it in, whichever delivery said so).

CREATE OR REPLACE TEMP MACRO academic_year(d) AS
    printf('%d-%02d', year(d) - CASE WHEN month(d) < 9 THEN 1 ELSE 0 END,
           (year(d) + CASE WHEN month(d) < 9 THEN 0 ELSE 1 END) % 100);

CREATE TEMP TABLE int_metric_units (
    metric_id VARCHAR NOT NULL,
    period VARCHAR NOT NULL,
    event_date DATE,
    la_code VARCHAR NOT NULL,
    child_id VARCHAR,
    numerator DOUBLE,
    denominator DOUBLE,
    measure DOUBLE,
    sen_status VARCHAR,
    primary_need VARCHAR,
    age_band VARCHAR,
    sex VARCHAR,
    ethnicity_group VARCHAR,
    fsm VARCHAR,
    care_status VARCHAR,
    service VARCHAR,
    flow VARCHAR,
    identifier VARCHAR,
    agency_pair VARCHAR,
    agency VARCHAR
);

-- SEN2 requests, one per (child, area, received date).
CREATE TEMP TABLE int_latest_ehc_request AS
SELECT *
FROM fct_ehc_requests
QUALIFY row_number() OVER (
    PARTITION BY child_id, la_code, received_date ORDER BY period DESC
) = 1;

-- Exclusions, one per (child, area, start date, category).
CREATE TEMP TABLE int_latest_exclusion AS
SELECT *
FROM fct_exclusions
QUALIFY row_number() OVER (
    PARTITION BY child_id, la_code, start_date, category ORDER BY period DESC
) = 1;

-- Health referrals, one per (child, area, service, received date).
CREATE TEMP TABLE int_latest_health_referral AS
SELECT *
FROM fct_health_referrals
QUALIFY row_number() OVER (
    PARTITION BY child_id, la_code, service, referral_received_date ORDER BY period DESC
) = 1;

-- Children-in-need episodes, one per (child, area, CIN referral date).
CREATE TEMP TABLE int_latest_cin_episode AS
SELECT *
FROM fct_cin_episodes
QUALIFY row_number() OVER (
    PARTITION BY child_id, la_code, cin_referral_date ORDER BY period DESC
) = 1;

-- Looked-after episodes, one per (child, area, episode start).
CREATE TEMP TABLE int_latest_lac_episode AS
SELECT *
FROM fct_lac_episodes
QUALIFY row_number() OVER (PARTITION BY child_id, la_code, decom ORDER BY period DESC) = 1;
