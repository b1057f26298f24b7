-- metric_values: every metric cell with its unrounded numerator, denominator and value, made
-- from the units of int_metric_units (29_metric_units.sql) and the catalogue. This is the
-- RESTRICTED table (small counts in clear): analysts with access to child-level facts may read
-- it; anything published (the area reports) reads published_metrics only.
--
-- Periods: a metric has cells in the academic years, and in the financial years (1 April to
-- 31 March), that its catalogue period_kinds list. A unit counts in its academic year
-- (`period`) and in the financial year its event_date falls in.
-- Cells ("frames"): a metric has cells for an area in an academic year when one of its
-- source_extracts was delivered for that area and year, or one of its units counts there; in a
-- financial year only when its source extracts were delivered for that area in both academic
-- years the financial year overlaps (the whole year is covered): otherwise the financial year
-- has no cells at all, never partial ones, and its units there are left out.
-- In each frame: one cell per cohort dimension the catalogue lists and per value of it
-- (ref_cohort_value) plus 'all', present even when empty. A unit has exactly one value of
-- each dimension (a child attribute from dim_child_period or the unit, a unit attribute such
-- as service from the unit alone), and the build fails when a unit lacks a value of a
-- dimension its metric lists; so the values of a dimension partition 'all'. A dimension whose
-- values count one child or record under several values (ref_cohort_value.partitions false:
-- identifier, agency_pair) has no 'all' cell: a sum over its values would be meaningless.
-- Statistics (catalogue `statistic`), over the units of a cell:
--   proportion  numerator = sum(numerator), denominator = sum(denominator),
--               value = 100 * numerator / denominator (percent; NULL when denominator is 0)
--   rate        as proportion, value = per * numerator / denominator (catalogue `per`)
--   median      numerator NULL, denominator = units measured, value = median(measure)
--   mean        numerator NULL, denominator = units measured, value = mean(measure)
--   count       numerator = sum(numerator), denominator NULL, value = numerator
--   ratio       a rate of one cohort group over the same rate of a reference value of the
--               dimension, from the cells of another metric (catalogue `ratio`: `of` the
--               metric, `reference` value, `groups` value -> member values summed):
--               numerator = the group's rate, denominator = the reference's rate, value =
--               their quotient (NULL when either rate is undefined or the reference's is 0).
--               Its cells are the groups of the first cohort dimension only and do not
--               partition anything. int_ratio_parts keeps the counts behind both rates for
--               disclosure control (50_published_metrics.sql).
-- The unit comes from metric_catalogue. A unit of a metric missing from the catalogue, an
-- unknown statistic, a unit with a cohort value outside ref_cohort_value, or one without a
-- value of a listed dimension fails the build.

SELECT error('metric(s) missing from transforms/catalogue/*.json: '
             || string_agg(DISTINCT metric_id, ', ' ORDER BY metric_id))
FROM int_metric_units
WHERE metric_id NOT IN (SELECT id FROM metric_catalogue WHERE statistic <> 'ratio')
HAVING count(*) > 0;

SELECT error('unknown statistic(s) in the catalogue: '
             || string_agg(DISTINCT statistic, ', ' ORDER BY statistic))
FROM metric_catalogue
WHERE statistic NOT IN ('proportion', 'rate', 'median', 'mean', 'count', 'ratio')
HAVING count(*) > 0;

SELECT error('ratio metric(s) not of a proportion or rate metric: '
             || string_agg(r.id, ', ' ORDER BY r.id))
FROM metric_catalogue AS r
LEFT JOIN metric_catalogue AS b ON b.id = r.ratio.of
WHERE r.statistic = 'ratio' AND coalesce(b.statistic NOT IN ('proportion', 'rate'), true)
HAVING count(*) > 0;

-- Each metric's cohort dimensions, in catalogue order.
CREATE TEMP TABLE int_metric_dimensions AS
SELECT id AS metric_id, unnest(cohort_dimensions) AS cohort
FROM metric_catalogue;

CREATE TEMP TABLE int_metric_frames AS
WITH source_deliveries AS (
    SELECT m.id AS metric_id, m.period_kinds, d.period, d.la_code
    FROM metric_catalogue AS m
    JOIN deliveries AS d ON list_contains(m.source_extracts, d.extract)
    WHERE m.statistic <> 'ratio'
),
academic AS (
    SELECT metric_id, period, la_code
    FROM source_deliveries
    WHERE list_contains(period_kinds, 'academic_year')
    UNION
    SELECT u.metric_id, u.period, u.la_code
    FROM int_metric_units AS u
    JOIN metric_catalogue AS m ON m.id = u.metric_id
    JOIN ref_period AS p ON p.period = u.period AND p.kind = 'academic_year'
    WHERE list_contains(m.period_kinds, 'academic_year')
),
financial AS (
    SELECT s.metric_id, f.period, s.la_code
    FROM source_deliveries AS s
    JOIN ref_period AS a ON a.period = s.period AND a.kind = 'academic_year'
    JOIN ref_period AS f
        ON f.kind = 'financial_year'
        AND a.period_start <= f.period_end AND a.period_end >= f.period_start
    WHERE list_contains(s.period_kinds, 'financial_year')
    GROUP BY ALL
    HAVING count(DISTINCT s.period) = 2
)
SELECT * FROM academic
UNION ALL
SELECT * FROM financial;

-- Units grouped before they are unpivoted: one row per metric, cell period, area and
-- combination of values of the dimensions the metric lists (NULL for the dimensions it does
-- not list), with the group's unit count, sums and measures. A unit counts in its academic
-- year and in the financial year its event_date falls in, in a frame only (the frame is part
-- of the grouping key, so a group is kept or left out whole). A median cannot be summed, so
-- each group keeps its measures as a list (only median and mean metrics have measures);
-- numerators and denominators are counts, so the sum of the groups' sums is the sum over
-- their units. Grouping first makes the unpivot below work on a few rows per combination of
-- values rather than on every unit once per dimension.
CREATE TEMP TABLE int_unit_groups AS
WITH listed AS (
    SELECT
        id AS metric_id,
        list_contains(cohort_dimensions, 'sen_status') AS sen_status,
        list_contains(cohort_dimensions, 'primary_need') AS primary_need,
        list_contains(cohort_dimensions, 'age_band') AS age_band,
        list_contains(cohort_dimensions, 'sex') AS sex,
        list_contains(cohort_dimensions, 'ethnicity_group') AS ethnicity_group,
        list_contains(cohort_dimensions, 'fsm') AS fsm,
        list_contains(cohort_dimensions, 'care_status') AS care_status,
        list_contains(cohort_dimensions, 'service') AS service,
        list_contains(cohort_dimensions, 'flow') AS flow,
        list_contains(cohort_dimensions, 'identifier') AS identifier,
        list_contains(cohort_dimensions, 'agency_pair') AS agency_pair,
        list_contains(cohort_dimensions, 'agency') AS agency
    FROM metric_catalogue
),
attributed AS (
    SELECT
        u.metric_id, u.la_code, u.numerator, u.denominator, u.measure,
        CASE WHEN f.period IS NULL THEN [u.period] ELSE [u.period, f.period] END
            AS cell_periods,
        CASE WHEN l.sen_status THEN coalesce(u.sen_status, d.sen_provision, 'X') END
            AS sen_status,
        CASE WHEN l.primary_need THEN coalesce(u.primary_need, d.primary_need, 'unknown') END
            AS primary_need,
        CASE WHEN l.age_band THEN coalesce(u.age_band, d.age_band, 'unknown') END AS age_band,
        CASE WHEN l.sex THEN coalesce(u.sex, d.sex, 'U') END AS sex,
        CASE WHEN l.ethnicity_group
             THEN coalesce(u.ethnicity_group, d.ethnicity_group, 'Unknown') END
            AS ethnicity_group,
        CASE WHEN l.fsm THEN coalesce(u.fsm, d.fsm, 'unknown') END AS fsm,
        CASE WHEN l.care_status THEN coalesce(u.care_status, d.care_status, 'none') END
            AS care_status,
        CASE WHEN l.service THEN u.service END AS service,
        CASE WHEN l.flow THEN u.flow END AS flow,
        CASE WHEN l.identifier THEN u.identifier END AS identifier,
        CASE WHEN l.agency_pair THEN u.agency_pair END AS agency_pair,
        CASE WHEN l.agency THEN u.agency END AS agency
    FROM int_metric_units AS u
    JOIN listed AS l USING (metric_id)
    LEFT JOIN dim_child_period AS d ON d.child_id = u.child_id AND d.period = u.period
    LEFT JOIN ref_period AS f
        ON f.kind = 'financial_year' AND u.event_date BETWEEN f.period_start AND f.period_end
),
placed AS (
    SELECT a.* EXCLUDE (cell_periods), unnest(a.cell_periods) AS period
    FROM attributed AS a
),
grouped AS (
    SELECT
        p.* EXCLUDE (numerator, denominator, measure),
        count(*) AS units,
        sum(p.numerator) AS numerator,
        sum(p.denominator) AS denominator,
        list(p.measure) FILTER (WHERE p.measure IS NOT NULL) AS measures
    FROM placed AS p
    GROUP BY ALL
)
SELECT g.*
FROM grouped AS g
SEMI JOIN int_metric_frames AS r
    ON r.metric_id = g.metric_id AND r.period = g.period AND r.la_code = g.la_code;

-- Aggregates per metric, period, area and value of each cohort dimension the metric lists
-- (the groups unpivoted to one row per listed dimension; a unit without a value of a unit
-- dimension is left out here and caught below); cohort NULL is the total ('all').
CREATE TEMP TABLE int_unit_aggregates AS
WITH by_cohort AS (
    UNPIVOT int_unit_groups
    ON sen_status, primary_need, age_band, sex, ethnicity_group, fsm, care_status, service,
       flow, identifier, agency_pair, agency
    INTO NAME cohort VALUE cohort_value
),
measured_groups AS (
    SELECT metric_id, period, la_code, cohort, cohort_value, units, numerator, denominator,
           measures
    FROM by_cohort
    UNION ALL
    SELECT metric_id, period, la_code, NULL AS cohort, 'all' AS cohort_value, units, numerator,
           denominator, measures
    FROM int_unit_groups
)
SELECT
    metric_id, period, la_code, cohort, cohort_value,
    CAST(sum(units) AS BIGINT) AS units,
    sum(numerator) AS numerator,
    sum(denominator) AS denominator,
    CAST(coalesce(sum(len(measures)), 0) AS BIGINT) AS measured,
    list_median(flatten(list(measures))) AS median_measure,
    list_avg(flatten(list(measures))) AS mean_measure
FROM measured_groups
GROUP BY ALL;

-- The partition rule: every unit has exactly one value of each dimension its metric lists.
SELECT error('unit(s) without a value of a cohort dimension their metric lists: '
             || string_agg(DISTINCT metric_id || ' (' || cohort || ')', ', '))
FROM (
    SELECT d.metric_id, d.cohort, t.units AS total, coalesce(sum(a.units), 0) AS valued
    FROM int_unit_aggregates AS t
    JOIN int_metric_dimensions AS d USING (metric_id)
    LEFT JOIN int_unit_aggregates AS a
        ON a.metric_id = t.metric_id AND a.period = t.period AND a.la_code = t.la_code
        AND a.cohort = d.cohort
    WHERE t.cohort IS NULL
    GROUP BY d.metric_id, d.cohort, t.period, t.la_code, t.units
)
WHERE valued <> total
HAVING count(*) > 0;

-- Every cell of every framed metric, empty or not.
CREATE TEMP TABLE int_metric_skeleton AS
SELECT f.metric_id, f.period, f.la_code, v.cohort, v.cohort_value
FROM int_metric_frames AS f
JOIN int_metric_dimensions AS d USING (metric_id)
JOIN (SELECT cohort, cohort_value FROM ref_cohort_value
      UNION ALL SELECT DISTINCT cohort, 'all' FROM ref_cohort_value WHERE partitions)
    AS v USING (cohort);

SELECT error('cohort value(s) outside ref_cohort_value: '
             || string_agg(DISTINCT a.cohort || '=' || a.cohort_value, ', '))
FROM int_unit_aggregates AS a
JOIN int_metric_dimensions AS d USING (metric_id, cohort)
ANTI JOIN int_metric_skeleton AS s USING (metric_id, period, la_code, cohort, cohort_value)
HAVING count(*) > 0;

CREATE TEMP TABLE int_metric_cells AS
WITH aggregates AS (
    SELECT a.* EXCLUDE (cohort), coalesce(a.cohort, d.cohort) AS cohort
    FROM int_unit_aggregates AS a
    JOIN int_metric_dimensions AS d
        ON d.metric_id = a.metric_id AND d.cohort = coalesce(a.cohort, d.cohort)
)
SELECT
    s.metric_id, s.period, s.la_code, s.cohort, s.cohort_value,
    CASE WHEN m.statistic IN ('median', 'mean') THEN NULL
         ELSE coalesce(a.numerator, 0) END AS numerator,
    CASE WHEN m.statistic = 'count' THEN NULL
         WHEN m.statistic IN ('median', 'mean') THEN coalesce(a.measured, 0)
         ELSE coalesce(a.denominator, 0) END AS denominator,
    CASE m.statistic
        WHEN 'proportion' THEN 100.0 * a.numerator / nullif(a.denominator, 0)
        WHEN 'rate' THEN m.per * a.numerator / nullif(a.denominator, 0)
        WHEN 'median' THEN a.median_measure
        WHEN 'mean' THEN a.mean_measure
        WHEN 'count' THEN coalesce(a.numerator, 0)
    END AS value
FROM int_metric_skeleton AS s
JOIN metric_catalogue AS m ON m.id = s.metric_id
LEFT JOIN aggregates AS a USING (metric_id, period, la_code, cohort, cohort_value);

-- Ratios: each group's rate over the reference value's rate, from the cells of `ratio.of`.
CREATE TEMP TABLE int_ratio_parts AS
WITH ratios AS (
    SELECT id AS metric_id, ratio.of AS base_metric_id, ratio.reference AS reference,
           cohort_dimensions[1] AS cohort, unnest(ratio.groups) AS grp
    FROM metric_catalogue
    WHERE statistic = 'ratio'
),
members AS (
    SELECT metric_id, base_metric_id, reference, cohort, grp.value AS cohort_value,
           unnest(grp.members) AS member
    FROM ratios
),
groups AS (
    SELECT g.metric_id, g.base_metric_id, g.reference, b.period, b.la_code, g.cohort,
           g.cohort_value, sum(b.numerator) AS group_numerator,
           sum(b.denominator) AS group_denominator
    FROM members AS g
    JOIN int_metric_cells AS b
        ON b.metric_id = g.base_metric_id AND b.cohort = g.cohort
        AND b.cohort_value = g.member
    GROUP BY ALL
)
SELECT
    g.metric_id, g.base_metric_id, g.period, g.la_code, g.cohort, g.cohort_value,
    g.group_numerator, g.group_denominator,
    CASE m.statistic WHEN 'proportion' THEN 100.0 ELSE m.per END
        * g.group_numerator / nullif(g.group_denominator, 0) AS group_rate,
    r.numerator AS reference_numerator, r.denominator AS reference_denominator,
    r.value AS reference_rate
FROM groups AS g
JOIN metric_catalogue AS m ON m.id = g.base_metric_id
JOIN int_metric_cells AS r
    ON r.metric_id = g.base_metric_id AND r.period = g.period AND r.la_code = g.la_code
    AND r.cohort = g.cohort AND r.cohort_value = g.reference;

INSERT INTO int_metric_cells BY NAME
SELECT
    metric_id, period, la_code, cohort, cohort_value,
    group_rate AS numerator, reference_rate AS denominator,
    group_rate / nullif(reference_rate, 0) AS value
FROM int_ratio_parts;

CREATE TABLE metric_values AS
SELECT
    v.metric_id, v.period, v.la_code, v.cohort, v.cohort_value,
    CAST(v.numerator AS DOUBLE) AS numerator,
    CAST(v.denominator AS DOUBLE) AS denominator,
    CAST(v.value AS DOUBLE) AS value,
    m.unit
FROM int_metric_cells AS v
JOIN metric_catalogue AS m ON m.id = v.metric_id
ORDER BY v.metric_id, v.period, v.la_code, v.cohort, v.cohort_value;
