-- published_metrics: metric_values after disclosure control, the only metric table reports and
-- other publications may read. Every figure is text so that suppression symbols can stand in
-- for numbers. The rule of each metric comes from metric_catalogue.disclosure_rule; the rules
-- are defined in 49_disclosure_counts.sql:
--   'dfe' (education cells): counts of 1-4 shown as 'c'; zero shown as '0'; 'z' (not
--     applicable) where the figure is undefined (denominator 0).
--   'nhs' (cells drawing on health data): counts of 1-7 shown as '*', other counts rounded to
--     the nearest 5; rates and percentages computed from the rounded counts; 'z' where the
--     figure is undefined (no one in the cohort).
--   'none' (cells counting no people, e.g. extracts delivered): every figure shown as it is
--     (its band is empty and its rounding base 1); 'z' where the figure is undefined.
-- Primary suppression hides the counts in the band. Secondary (complementary) suppression,
-- joinedup/disclosure.py, then hides further counts so that no hidden count can be worked out,
-- nor narrowed below its band's width (dfe 3, nhs 6), from the rest: by subtraction from the
-- 'all' total and the sibling values of a cohort dimension, from other metrics sharing the
-- count (one catalogue definition is one count, e.g. the known_to_services denominator; or
-- one count under two texts, int_count_aliases) or adding up to it (known to 1, 2 and 3
-- services add up to their denominator; the texts int_count_sums declares), and through the
-- nhs rounding intervals. Dimensions whose values do not partition (identifier, agency_pair:
-- no 'all' cell) give no sum; their cells are suppressed when small. int_suppressed_counts says, per count, whether it is hidden.
-- A figure resting on a hidden count is hidden with it:
--   proportion, rate: the value is shown only when both counts are.
--   count: the value is the count.
--   median, mean: the value needs n above the band (dfe n >= 5, nhs n >= 8); it is shown even
--     when n itself is hidden as a complement (the value does not reveal n).
--   ratio (e.g. suspension_ratio_to_no_sen, catalogue `ratio`): its parts are the rates of the
--     metric `of` for the group (its `groups` members summed, e.g. SEN = K and E) and for the
--     `reference` value (N); a part is hidden when a count of a rate it rests on is hidden (a
--     group's: any member's), so the ratio table reveals nothing the rate's cells hide; the
--     ratio is hidden when either part is. The rate metric must follow the dfe rule (exact
--     counts; 49_disclosure_counts.sql checks).
-- Not covered: overlapping geographies (LA and ICB boundaries); linkage QA and data quality
-- tables publish counts of records, not the children the metrics count (see README).

CREATE TABLE published_metrics AS
WITH flags AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        coalesce(bool_or(suppressed) FILTER (WHERE role = 'numerator'), false)
            AS numerator_hidden,
        coalesce(bool_or(suppressed) FILTER (WHERE role = 'denominator'), false)
            AS denominator_hidden
    FROM int_suppressed_counts
    GROUP BY ALL
),
cells AS (
    SELECT
        v.*, m.statistic, m.disclosure_rule, m.decimals,
        coalesce(f.numerator_hidden, false) AS numerator_hidden,
        coalesce(f.denominator_hidden, false) AS denominator_hidden,
        suppression_symbol(m.disclosure_rule) AS symbol
    FROM metric_values AS v
    JOIN metric_catalogue AS m ON m.id = v.metric_id
    LEFT JOIN flags AS f USING (metric_id, period, la_code, cohort, cohort_value)
),
-- Proportions and rates: the value scaled from the shown (for nhs: rounded) counts, which for
-- dfe (rounding base 1) is the value itself.
proportions AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        shown_count(disclosure_rule, numerator, numerator_hidden) AS published_numerator,
        shown_count(disclosure_rule, denominator, denominator_hidden) AS published_denominator,
        CASE WHEN value IS NULL THEN 'z'
             WHEN numerator_hidden OR denominator_hidden THEN symbol
             WHEN numerator = 0 THEN fmt_number(CAST(0 AS DOUBLE), decimals)
             ELSE fmt_number(
                value * (rounded_count(disclosure_rule, numerator) / numerator)
                      / (rounded_count(disclosure_rule, denominator) / denominator),
                decimals)
        END AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE statistic IN ('proportion', 'rate')
),
counts AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        shown_count(disclosure_rule, numerator, numerator_hidden) AS published_numerator,
        CAST(NULL AS VARCHAR) AS published_denominator,
        shown_count(disclosure_rule, numerator, numerator_hidden) AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE statistic = 'count'
),
-- Medians and means: n is the denominator; the numerator (a sum, or nothing) is not shown.
averages AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        CAST(NULL AS VARCHAR) AS published_numerator,
        shown_count(disclosure_rule, denominator, denominator_hidden) AS published_denominator,
        CASE WHEN denominator = 0 OR value IS NULL THEN 'z'
             WHEN denominator <= band_high(disclosure_rule) THEN symbol
             ELSE fmt_number(value, decimals)
        END AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE statistic IN ('median', 'mean')
),
-- Ratios: each cell's parts are the rates of a cohort group and of the reference value of the
-- metric the catalogue's `ratio` names (`of`), from int_ratio_parts (40_metric_values.sql).
-- The base cells a group's rate rests on: its members' (`ratio.groups`).
ratio_groups AS (
    SELECT id AS metric_id, ratio.of AS base_metric_id, cohort_dimensions[1] AS cohort,
           unnest(ratio.groups) AS grp
    FROM metric_catalogue
    WHERE statistic = 'ratio'
),
ratio_members AS (
    SELECT metric_id, base_metric_id, cohort, grp.value AS cohort_value,
           unnest(grp.members) AS member
    FROM ratio_groups
),
-- A group's rate is hidden when a count of any member's rate is.
group_hidden AS (
    SELECT
        r.metric_id, b.period, b.la_code, r.cohort, r.cohort_value,
        bool_or(b.numerator_hidden OR b.denominator_hidden) AS hidden
    FROM ratio_members AS r
    JOIN cells AS b
        ON b.metric_id = r.base_metric_id AND b.cohort = r.cohort AND b.cohort_value = r.member
    GROUP BY ALL
),
-- Each part published with the decimals of the rate's metric; 'z' where the rate is undefined,
-- the symbol where a count it rests on is hidden (or, for a group, its summed counts are in the
-- band); the ratio is the symbol when either part is.
ratio_parts AS (
    SELECT
        c.*,
        CASE WHEN p.group_rate IS NULL THEN 'z'
             WHEN coalesce(g.hidden, true)
                 OR small_count(b.disclosure_rule, p.group_numerator)
                 OR small_count(b.disclosure_rule, p.group_denominator) THEN c.symbol
             ELSE fmt_number(p.group_rate, b.decimals)
        END AS published_numerator,
        CASE WHEN p.reference_rate IS NULL THEN 'z'
             WHEN coalesce(n.numerator_hidden OR n.denominator_hidden, true) THEN c.symbol
             ELSE fmt_number(p.reference_rate, b.decimals)
        END AS published_denominator
    FROM cells AS c
    JOIN int_ratio_parts AS p USING (metric_id, period, la_code, cohort, cohort_value)
    JOIN metric_catalogue AS r ON r.id = c.metric_id
    JOIN metric_catalogue AS b ON b.id = p.base_metric_id
    LEFT JOIN group_hidden AS g USING (metric_id, period, la_code, cohort, cohort_value)
    LEFT JOIN cells AS n
        ON n.metric_id = p.base_metric_id AND n.period = p.period AND n.la_code = p.la_code
        AND n.cohort = p.cohort AND n.cohort_value = r.ratio.reference
    WHERE c.statistic = 'ratio'
),
ratios AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value, published_numerator,
        published_denominator,
        CASE WHEN value IS NULL THEN 'z'
             WHEN published_numerator = symbol OR published_denominator = symbol THEN symbol
             ELSE fmt_number(value, decimals)
        END AS published_value,
        unit, disclosure_rule
    FROM ratio_parts
),
published AS (
    SELECT * FROM proportions
    UNION ALL SELECT * FROM counts
    UNION ALL SELECT * FROM averages
    UNION ALL SELECT * FROM ratios
)
SELECT
    *,
    published_value IN ('c', '*')
        OR coalesce(published_numerator IN ('c', '*'), false)
        OR coalesce(published_denominator IN ('c', '*'), false) AS suppressed
FROM published
ORDER BY metric_id, period, la_code, cohort, cohort_value;

-- published_linkage_quality: linkage_quality for publication. Its counts are counts of
-- children's records known to two agencies, so they get the stricter NHS rule: 1-7 as '*',
-- others rounded to the nearest 5. Precision and recall (shares, measured only where a truth
-- is known) are kept as they are.
CREATE TABLE published_linkage_quality AS
SELECT
    agency_pair, la_code, period,
    nhs_count(records_l) AS published_records_l,
    nhs_count(records_r) AS published_records_r,
    nhs_count(links) AS published_links,
    precision, recall
FROM linkage_quality
ORDER BY la_code, agency_pair, period;

-- Every metric cell must be published by exactly one of the branches above.
SELECT error('disclosure control covers ' || (SELECT count(*) FROM published_metrics)
             || ' of ' || count(*) || ' metric cells: a metric has a statistic '
             || '50_published_metrics.sql does not handle')
FROM metric_values
HAVING count(*) <> (SELECT count(*) FROM published_metrics);
