-- published_metrics: metric_values after disclosure control, the only metric table reports and
-- other publications may read. Every figure is text so that suppression symbols can stand in
-- for numbers. The rule of each metric comes from metric_catalogue.disclosure_rule; the rules
-- are defined in 49_disclosure_counts.sql:
--   'dfe' (education cells): counts of 1-4 shown as 'c'; zero shown as '0'; 'z' (not
--     applicable) where the figure is undefined (denominator 0).
--   'nhs' (cells drawing on health data): counts of 1-7 shown as '*', other counts rounded to
--     the nearest 5; rates and percentages computed from the rounded counts; 'z' where the
--     figure is undefined (no one in the cohort).
-- Primary suppression hides the counts in the band. Secondary (complementary) suppression,
-- joinedup/disclosure.py, then hides further counts so that no hidden count can be worked out,
-- nor narrowed below its band's width (dfe 3, nhs 6), from the rest: by subtraction from the
-- 'all' total and the sibling values of a cohort dimension, from other metrics sharing the
-- count (one catalogue definition is one count, e.g. the known_to_services denominator) or
-- adding up to it (known to 1, 2 and 3 services add up to their denominator), and through the
-- nhs rounding intervals. int_suppressed_counts says, per count, whether it is hidden.
-- A figure resting on a hidden count is hidden with it:
--   proportion, rate: the value is shown only when both counts are.
--   count: the value is the count.
--   median, mean: the value needs n above the band (dfe n >= 5, nhs n >= 8); it is shown even
--     when n itself is hidden as a complement (the value does not reveal n).
--   ratio (suspension_ratio_to_no_sen): its parts are the suspension rates of the group (K, E,
--     or SEN = K and E together) and of N; a part is 'c' when a suspension_rate count it rests
--     on is hidden (SEN: K's or E's), so the ratio table reveals nothing the suspension_rate
--     cells hide; the ratio is 'c' when either part is.
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
-- Whether each suspension rate is hidden; SEN's when K's or E's is.
rate_hidden AS (
    SELECT period, la_code, cohort_value, numerator_hidden OR denominator_hidden AS hidden
    FROM cells
    WHERE metric_id = 'suspension_rate' AND cohort = 'sen_status'
    UNION ALL
    SELECT period, la_code, 'SEN', bool_or(numerator_hidden OR denominator_hidden)
    FROM cells
    WHERE metric_id = 'suspension_rate' AND cohort = 'sen_status' AND cohort_value IN ('K', 'E')
    GROUP BY ALL
),
ratio_parts AS (
    SELECT
        c.*,
        CASE WHEN g.rate_per_100 IS NULL THEN 'z'
             WHEN coalesce(gh.hidden, true) OR dfe_small(g.suspensions) OR dfe_small(g.pupils)
                 THEN c.symbol
             ELSE fmt_number(g.rate_per_100, r.decimals)
        END AS published_numerator,
        CASE WHEN n.rate_per_100 IS NULL THEN 'z'
             WHEN coalesce(nh.hidden, true) THEN c.symbol
             ELSE fmt_number(n.rate_per_100, r.decimals)
        END AS published_denominator
    FROM cells AS c
    JOIN int_suspension_cells AS g
        ON g.period = c.period AND g.la_code = c.la_code AND g.cohort_value = c.cohort_value
    JOIN int_suspension_cells AS n
        ON n.period = c.period AND n.la_code = c.la_code AND n.cohort_value = 'N'
    LEFT JOIN rate_hidden AS gh
        ON gh.period = c.period AND gh.la_code = c.la_code AND gh.cohort_value = c.cohort_value
    LEFT JOIN rate_hidden AS nh
        ON nh.period = c.period AND nh.la_code = c.la_code AND nh.cohort_value = 'N'
    JOIN metric_catalogue AS r ON r.id = 'suspension_rate'
    WHERE c.metric_id = 'suspension_ratio_to_no_sen'
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
