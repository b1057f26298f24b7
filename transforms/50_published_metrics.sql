-- published_metrics: metric_values after disclosure control, the only metric table reports and
-- other publications may read. Every figure is text so that suppression symbols can stand in
-- for numbers. The rule of each metric comes from metric_catalogue.disclosure_rule:
--   'dfe' (education cells): counts of 1-4 shown as 'c', and any rate resting on such a count
--     as 'c' too; zero shown as '0'; 'z' (not applicable) where the rate is undefined
--     (denominator 0).
--   'nhs' (cells drawing on health data): counts of 1-7 shown as '*', other counts rounded to
--     the nearest 5; percentages and rates computed from the rounded counts; medians shown
--     only where n >= 8; 'z' where the figure is undefined (no one in the cohort).
--   'none' (cells counting no people, e.g. extracts delivered): shown as they are.
-- A count (statistic 'count', activity) is its numerator, shown under its rule.
-- Not yet done (a later issue): secondary suppression. A suppressed cell can still be
-- recovered by subtraction from its siblings and the 'all' total (e.g. N = all - K - E) or
-- across overlapping geographies; published tables must not be released outside the
-- partnership until complementary suppression is applied.

CREATE OR REPLACE TEMP MACRO fmt_number(x, decimals) AS
    printf('%.' || decimals || 'f', round(x, decimals));

CREATE OR REPLACE TEMP MACRO dfe_small(n) AS n BETWEEN 1 AND 4;
CREATE OR REPLACE TEMP MACRO dfe_count(n) AS
    CASE WHEN n IS NULL THEN NULL
         WHEN dfe_small(n) THEN 'c'
         ELSE CAST(CAST(n AS BIGINT) AS VARCHAR) END;
CREATE OR REPLACE TEMP MACRO dfe_rate(num, den, v, decimals) AS
    CASE WHEN v IS NULL THEN 'z'
         WHEN dfe_small(num) OR dfe_small(den) THEN 'c'
         ELSE fmt_number(v, decimals) END;

CREATE OR REPLACE TEMP MACRO nhs_small(n) AS n BETWEEN 1 AND 7;
CREATE OR REPLACE TEMP MACRO nhs_round(n) AS round(n / 5) * 5;
CREATE OR REPLACE TEMP MACRO nhs_count(n) AS
    CASE WHEN n IS NULL THEN NULL
         WHEN nhs_small(n) THEN '*'
         ELSE CAST(CAST(nhs_round(n) AS BIGINT) AS VARCHAR) END;

CREATE TABLE published_metrics AS
WITH cells AS (
    SELECT v.*, m.statistic, m.disclosure_rule, m.decimals, m.per
    FROM metric_values AS v
    JOIN metric_catalogue AS m ON m.id = v.metric_id
),
-- Proportions and rates whose numerator and denominator are counts of education records
-- (for overall absence, counts of sessions).
dfe_proportions AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        dfe_count(numerator) AS published_numerator,
        dfe_count(denominator) AS published_denominator,
        dfe_rate(numerator, denominator, value, decimals) AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE disclosure_rule = 'dfe' AND statistic IN ('proportion', 'rate')
),
-- Medians of education records: the number measured is a count; 1-4 suppress the median.
dfe_medians AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        CAST(NULL AS VARCHAR) AS published_numerator,
        dfe_count(denominator) AS published_denominator,
        dfe_rate(NULL, denominator, value, decimals) AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE disclosure_rule = 'dfe' AND statistic = 'median'
),
-- Percentages and rates of counts drawing on health data: computed from the rounded counts.
nhs_proportions AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        nhs_count(numerator) AS published_numerator,
        nhs_count(denominator) AS published_denominator,
        CASE WHEN denominator = 0 THEN 'z'
             WHEN nhs_small(numerator) OR nhs_small(denominator) THEN '*'
             ELSE fmt_number(
                 CASE statistic WHEN 'rate' THEN per ELSE 100.0 END
                     * nhs_round(numerator) / nhs_round(denominator), decimals)
        END AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE disclosure_rule = 'nhs' AND statistic IN ('proportion', 'rate')
),
-- Counts (activity): the count under its rule.
counts AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        CASE disclosure_rule WHEN 'dfe' THEN dfe_count(numerator)
                             WHEN 'nhs' THEN nhs_count(numerator)
                             ELSE CAST(CAST(numerator AS BIGINT) AS VARCHAR) END
            AS published_numerator,
        CAST(NULL AS VARCHAR) AS published_denominator,
        CASE disclosure_rule WHEN 'dfe' THEN dfe_count(numerator)
                             WHEN 'nhs' THEN nhs_count(numerator)
                             ELSE CAST(CAST(numerator AS BIGINT) AS VARCHAR) END
            AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE statistic = 'count'
),
-- Figures that count no people: shown as they are.
undisclosive AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        CAST(CAST(numerator AS BIGINT) AS VARCHAR) AS published_numerator,
        CAST(CAST(denominator AS BIGINT) AS VARCHAR) AS published_denominator,
        CASE WHEN value IS NULL THEN 'z' ELSE fmt_number(value, decimals) END AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE disclosure_rule = 'none' AND statistic IN ('proportion', 'rate')
),
-- Medians of health data: the number measured is a count; the median needs n >= 8.
nhs_medians AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value,
        CAST(NULL AS VARCHAR) AS published_numerator,
        nhs_count(denominator) AS published_denominator,
        CASE WHEN denominator = 0 THEN 'z'
             WHEN denominator < 8 THEN '*'
             ELSE fmt_number(value, decimals)
        END AS published_value,
        unit, disclosure_rule
    FROM cells
    WHERE disclosure_rule = 'nhs' AND statistic = 'median'
),
-- Ratios (e.g. suspension_ratio_to_no_sen): numerator and denominator are the group's and the
-- reference group's rates (int_ratio_parts, 40_metric_values.sql), each published under the
-- dfe rule from its own counts with the decimals of the rate's metric; the ratio is suppressed
-- when either rate is.
ratio_parts AS (
    SELECT
        c.*,
        dfe_rate(p.group_numerator, p.group_denominator, p.group_rate, b.decimals)
            AS published_numerator,
        dfe_rate(p.reference_numerator, p.reference_denominator, p.reference_rate, b.decimals)
            AS published_denominator
    FROM cells AS c
    JOIN int_ratio_parts AS p USING (metric_id, period, la_code, cohort, cohort_value)
    JOIN metric_catalogue AS b ON b.id = p.base_metric_id
    WHERE c.statistic = 'ratio' AND c.disclosure_rule = 'dfe'
),
dfe_ratios AS (
    SELECT
        metric_id, period, la_code, cohort, cohort_value, published_numerator,
        published_denominator,
        CASE WHEN value IS NULL THEN 'z'
             WHEN published_numerator = 'c' OR published_denominator = 'c' THEN 'c'
             ELSE fmt_number(value, decimals)
        END AS published_value,
        unit, disclosure_rule
    FROM ratio_parts
),
published AS (
    SELECT * FROM dfe_proportions
    UNION ALL SELECT * FROM nhs_proportions
    UNION ALL SELECT * FROM nhs_medians
    UNION ALL SELECT * FROM dfe_medians
    UNION ALL SELECT * FROM dfe_ratios
    UNION ALL SELECT * FROM counts
    UNION ALL SELECT * FROM undisclosive
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
             || ' of ' || count(*) || ' metric cells: a metric has a statistic and '
             || 'disclosure_rule combination 50_published_metrics.sql does not handle')
FROM metric_values
HAVING count(*) <> (SELECT count(*) FROM published_metrics);
