-- Disclosure control, part 1: the rules, and every count the metric cells would publish.
-- (Part 2, secondary suppression, is joinedup/disclosure.py, run after this file; part 3,
-- 50_published_metrics.sql, writes the published figures.)
--
-- The rules (domain notes, section 6), named by metric_catalogue.disclosure_rule:
--   'dfe' (education cells): counts of 1-4 suppressed as 'c', others shown exactly.
--   'nhs' (cells drawing on health data): counts of 1-7 suppressed as '*', others rounded to
--     the nearest 5.
--   'none' (cells counting no people, e.g. extracts delivered): shown as they are. Their
--     counts are not in int_disclosure_counts: nothing to protect, and nothing to hide.
-- A rule is its band (the counts it suppresses), its symbol and its rounding base; the macros
-- below are its only definition (70_linkage_qa.sql uses them too).
--
-- int_disclosure_counts: one row per count a metric cell publishes (role numerator or
-- denominator; which roles hold counts depends on the statistic, int_count_roles), with:
--   definition: the catalogue's text for that role. Counts with the same definition, period,
--     area and cohort value are one count (the known_to_services metrics share their
--     denominator; suspension_rate and permanent_exclusion_rate share census pupils;
--     ehcp_issued_within_20_weeks and ehcp_weeks_request_to_plan_median share new EHC plans),
--     and 'all' is one count whatever the cohort dimension. One text must be one count
--     (disclosure.py fails the build otherwise), and one count should have one text: two texts
--     for one count would let it be shown under one and hidden under the other.
--   count_definition, count_cohort, count_value: the count's identity, the row's own
--     definition, dimension and value unless int_count_aliases names it as another count (one
--     count under two texts: disclosure.py treats both as one, hidden or shown together).
--   partitions: whether the values of the row's own dimension add up to 'all'
--     (ref_cohort_value.partitions); disclosure.py writes a sum only for those.
--   primary_suppressed: the count lies in its rule's band.
--   shown_low, shown_high: the true counts a reader can infer from the shown figure (exact for
--     dfe; +-2 for nhs, and at least 8 when not 0, since 1-7 are never shown).
--   protection: how wide the feasible range of a suppressed count must stay. nhs: the band's
--     width (6), so that no one can narrow a hidden count below what the band itself hides,
--     rounding intervals included. dfe: 1, no hidden count may be worked out exactly (DfE
--     practice; its shown counts are exact, so a range of 1-3 left by a total of 5 over three
--     hidden counts of 1-4 is accepted rather than hiding the total).

CREATE OR REPLACE TEMP MACRO fmt_number(x, decimals) AS
    printf('%.' || decimals || 'f', round(x, decimals));

-- 'none' has an empty band (1-0), no symbol, no rounding and nothing to protect.
CREATE OR REPLACE TEMP MACRO band_low(rule) AS 1;
CREATE OR REPLACE TEMP MACRO band_high(rule) AS
    CASE rule WHEN 'dfe' THEN 4 WHEN 'nhs' THEN 7 WHEN 'none' THEN 0 END;
CREATE OR REPLACE TEMP MACRO suppression_symbol(rule) AS
    CASE rule WHEN 'dfe' THEN 'c' WHEN 'nhs' THEN '*' END;
CREATE OR REPLACE TEMP MACRO protection_width(rule) AS
    CASE rule WHEN 'dfe' THEN 1 WHEN 'nhs' THEN band_high(rule) - band_low(rule)
              WHEN 'none' THEN 0 END;
CREATE OR REPLACE TEMP MACRO rounding_base(rule) AS
    CASE rule WHEN 'dfe' THEN 1 WHEN 'nhs' THEN 5 WHEN 'none' THEN 1 END;

SELECT error('metric(s) with an unknown disclosure rule: '
             || string_agg(id || ' (' || coalesce(disclosure_rule, 'null') || ')', ', '))
FROM metric_catalogue
WHERE coalesce(disclosure_rule NOT IN ('dfe', 'nhs', 'none'), true)
HAVING count(*) > 0;

CREATE OR REPLACE TEMP MACRO small_count(rule, n) AS n BETWEEN band_low(rule) AND band_high(rule);
CREATE OR REPLACE TEMP MACRO rounded_count(rule, n) AS
    round(n / rounding_base(rule)) * rounding_base(rule);
-- A count as shown: the rule's symbol when small (or suppressed), else rounded to its base.
CREATE OR REPLACE TEMP MACRO shown_count(rule, n, suppressed) AS
    CASE WHEN n IS NULL THEN NULL
         WHEN suppressed OR small_count(rule, n) THEN suppression_symbol(rule)
         ELSE CAST(CAST(rounded_count(rule, n) AS BIGINT) AS VARCHAR) END;

CREATE OR REPLACE TEMP MACRO dfe_small(n) AS small_count('dfe', n);
CREATE OR REPLACE TEMP MACRO dfe_count(n) AS shown_count('dfe', n, false);
CREATE OR REPLACE TEMP MACRO nhs_small(n) AS small_count('nhs', n);
CREATE OR REPLACE TEMP MACRO nhs_round(n) AS rounded_count('nhs', n);
CREATE OR REPLACE TEMP MACRO nhs_count(n) AS shown_count('nhs', n, false);

-- Which of a cell's figures are counts, by statistic. A statistic missing here fails the build.
CREATE TEMP TABLE int_count_roles AS
SELECT * FROM (VALUES
    ('proportion', 'numerator'), ('proportion', 'denominator'),
    ('rate', 'numerator'), ('rate', 'denominator'),
    ('count', 'numerator'),
    ('median', 'denominator'),
    ('mean', 'denominator')
) AS t(statistic, role)
UNION ALL SELECT 'ratio', NULL;

SELECT error('metric(s) with a statistic disclosure control does not know: '
             || string_agg(DISTINCT id || ' (' || statistic || ')', ', '))
FROM metric_catalogue
WHERE statistic NOT IN (SELECT statistic FROM int_count_roles)
HAVING count(*) > 0;

-- A ratio publishes the rates of its `ratio.of` metric exactly (50_published_metrics.sql):
-- that metric's counts must be exact when shown, i.e. follow the dfe rule.
SELECT error('ratio metric(s) of a metric whose counts are rounded (not the dfe rule): '
             || string_agg(r.id || ' (of ' || b.id || ')', ', '))
FROM metric_catalogue AS r
JOIN metric_catalogue AS b ON b.id = r.ratio.of
WHERE r.statistic = 'ratio' AND b.disclosure_rule <> 'dfe'
HAVING count(*) > 0;

-- One count published under two texts (dimension and value as published; '' and 'all' for the
-- total): each row names a count and the count it is. A reader who knows the definitions knows
-- these too, so they must be hidden or shown together.
--   Looked-after census pupils: looked_after_share's numerator (all) and the census pupils of
--     care status lac (suspension_rate's denominator; care status lac is looked after).
--   Census pupils with an EHC plan: ehcp_without_health_involvement's denominator for SEN
--     status E (census E, every one of whom has a plan) and the census pupils of status E.
CREATE TEMP TABLE int_count_aliases AS
SELECT * FROM (VALUES
    ('Census pupils with a looked-after episode open in the period', '', 'all',
     'Pupils on the school census in the period', 'care_status', 'lac'),
    ('Children with an EHC plan in the period (census E, or a SEN2 plan issued on or before '
     || 'the period end)', 'sen_status', 'E',
     'Pupils on the school census in the period', 'sen_status', 'E')
) AS t(definition, cohort, cohort_value, same_definition, same_cohort, same_value);

-- Counts that add up to another (text of the total, text of a part), in every cell the three
-- share (period, area, dimension and value): a reader who knows the definitions can subtract.
--   Care contacts offered = not attended (dna_rate's numerator) + attended
--     (health_contacts_attended, counted in the child's area like dna_rate).
CREATE TEMP TABLE int_count_sums AS
SELECT * FROM (VALUES
    ('Care contacts attended plus not attended in the period',
     'Care contacts not attended (DNA) in the period'),
    ('Care contacts attended plus not attended in the period',
     'Health care contacts attended in the period')
) AS t(total_definition, part_definition);

SELECT error('int_count_aliases or int_count_sums name a text no catalogue entry has: '
             || string_agg(DISTINCT text, ', '))
FROM (SELECT definition AS text FROM int_count_aliases
      UNION ALL SELECT same_definition FROM int_count_aliases
      UNION ALL SELECT total_definition FROM int_count_sums
      UNION ALL SELECT part_definition FROM int_count_sums)
WHERE text NOT IN (SELECT numerator FROM metric_catalogue
                   UNION ALL SELECT denominator FROM metric_catalogue)
HAVING count(*) > 0;

CREATE TEMP TABLE int_disclosure_counts AS
WITH counts AS (
    SELECT
        v.metric_id, v.period, v.la_code, v.cohort, v.cohort_value, r.role,
        CASE r.role WHEN 'numerator' THEN m.numerator ELSE m.denominator END AS definition,
        m.disclosure_rule,
        CAST(CASE r.role WHEN 'numerator' THEN v.numerator ELSE v.denominator END AS BIGINT)
            AS count
    FROM metric_values AS v
    JOIN metric_catalogue AS m ON m.id = v.metric_id
    JOIN int_count_roles AS r ON r.statistic = m.statistic AND r.role IS NOT NULL
    WHERE m.disclosure_rule <> 'none'
),
identified AS (
    SELECT
        c.*,
        coalesce(a.same_definition, c.definition) AS count_definition,
        coalesce(a.same_cohort, CASE WHEN c.cohort_value = 'all' THEN '' ELSE c.cohort END)
            AS count_cohort,
        coalesce(a.same_value, c.cohort_value) AS count_value,
        coalesce(v.partitions, true) AS partitions
    FROM counts AS c
    LEFT JOIN int_count_aliases AS a
        ON a.definition = c.definition AND a.cohort_value = c.cohort_value
        AND a.cohort = CASE WHEN c.cohort_value = 'all' THEN '' ELSE c.cohort END
    LEFT JOIN (SELECT DISTINCT cohort, partitions FROM ref_cohort_value) AS v
        ON v.cohort = c.cohort
)
SELECT
    * EXCLUDE (count_definition, count_cohort, count_value, partitions),
    small_count(disclosure_rule, count) AS primary_suppressed,
    CAST(CASE WHEN rounded_count(disclosure_rule, count) = 0 THEN 0
         ELSE greatest(rounded_count(disclosure_rule, count)
                       - rounding_base(disclosure_rule) // 2,
                       CASE WHEN rounding_base(disclosure_rule) > 1
                            THEN band_high(disclosure_rule) + 1 ELSE 0 END)
    END AS BIGINT) AS shown_low,
    CAST(CASE WHEN rounded_count(disclosure_rule, count) = 0 THEN 0
         ELSE rounded_count(disclosure_rule, count) + rounding_base(disclosure_rule) // 2
    END AS BIGINT) AS shown_high,
    protection_width(disclosure_rule) AS protection,
    count_definition, count_cohort, count_value, partitions
FROM identified
WHERE count IS NOT NULL
ORDER BY metric_id, period, la_code, cohort, cohort_value, role;
