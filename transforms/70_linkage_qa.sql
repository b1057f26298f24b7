-- Linkage QA: how well the linker joined each agency's records to every other agency's (and to
-- their own duplicates), per agency pair, area, period and group, for the data engineers who
-- run the linkage.
--
-- Inputs (TEMP, loaded by metrics.py, holding tokens; dropped at the end of this file or by
-- 90_drop_sources.sql):
--   src_record_linkage: the linker's record_linkage.parquet, one row per record and other
--     agency (the record's own agency for duplicates): candidate pairs, match_mass (the sum of
--     its candidate pairs' match probabilities, capped at 1 here), whether it is linked (its
--     child holds a record of the other agency; for duplicates another record of its own) and
--     the weight and probability of its strongest direct link there (NULL when it is linked
--     only through a third record). Empty for a link dir written before it existed: the QA
--     tables then have no rows.
--   src_truth_pairs: truth_pairs.parquet (joinedup.link.evaluate.truth_pairs), every pair of
--     records that are truly one child; synthetic data only. Empty on real data: the true
--     figures are then NULL.
--   src_agency_pairs: each agency pair in the linker's orientation, and each agency with itself.
--
-- A record counts in every period in which one of its agency's extracts holds it, in the area
-- of its child in that period (dim_child_period, the area the metrics use). Its groups come from
-- its child: ethnicity_group and sex from dim_child, age band from dim_child_period's age at
-- 31 August, banded as the metrics band it (age_band of 20_dim_child.sql: the DfE's EHC plan
-- statistics' bands under 5, 5-10, 11-15, 16-19, 20 and over).
--
-- Tables:
--   linkage_qa (RESTRICTED, raw counts, like metric_values and linkage_quality): per agency
--     pair, side (agency: whose records are counted; other_agency: where their links are
--     looked for), area, period and group (group_type 'all', 'ethnicity_group', 'sex',
--     'age_band'):
--       records, candidate_pairs (the records' candidate pairs summed over the records: the
--       agency pair's candidate pairs for group 'all' of a pair of two agencies; within one
--       agency each pair is counted for both its records), linked_records, linkage_rate,
--       directly_linked_records (those with a direct link, not only one through a third
--       record) and the mean and median match weight of their links,
--       expected_matched_records (sum of min(1, match_mass)), the model's own
--       precision_estimate (mean link probability of the direct links) and recall_estimate
--       (sum of those link probabilities / expected_matched_records; a record linked only
--       through a third record adds nothing, so this errs low), linked_pairs (pairs of a
--       record with a record of the other agency in its child), and against the truth, as
--       joinedup.link.evaluate measures: true_pairs (pairs of a record with a record of the
--       other agency that is truly the same child), true_positive_pairs (true pairs in one
--       child), true_precision = true_positive_pairs / linked_pairs and true_recall =
--       true_positive_pairs / true_pairs. Within one agency each pair is counted from both its
--       records, which leaves the shares unchanged.
--       Shares are fractions (0 to 1); NULL where undefined or, for true figures, where no
--       truth was supplied.
--   published_linkage_qa: linkage_qa under the NHS rule of 50_published_metrics.sql, for the
--     area reports: counts 1-7 as '*', others rounded to the nearest 5; the linkage rate from
--     the rounded counts; match weights only where at least 8 records are linked directly.
--     Precision and recall (estimated or true) are kept unrounded, as in
--     published_linkage_quality, since rounding counts to 5 would swamp differences of 0.1
--     points (the estimates are means of probabilities, not counts); a share whose
--     numerator or denominator count is 1-7 is '*'. 'z' where undefined, NULL where not
--     measured. Shares are percentages with 2 decimals, as text.
--   linkage_weight_distribution (RESTRICTED): per agency pair, area and period, the links by
--     match-weight bin of 2 bits ([weight_from, weight_to)), split by how they were decided
--     (the model, or a data engineer's clerical review). A link counts in every period in which
--     either of its records is held, in its child's area.
-- Every link must carry its match weight, probability, agreement pattern and decided_by, and
-- join two records of the spine, or the build fails.

SELECT error(count(*) || ' link(s) lack a match weight, probability, agreement pattern or '
             || 'decided_by (model or clerical), or join a record outside the child spine')
FROM link_pairs
WHERE match_weight IS NULL OR match_probability IS NULL OR agreement IS NULL
    OR decided_by IS NULL OR decided_by NOT IN ('model', 'clerical')
    OR child_id_l IS NULL OR child_id_r IS NULL
HAVING count(*) > 0;

SELECT error('record_linkage holds ' || count(*) || ' record(s) outside the child spine')
FROM src_record_linkage AS r
ANTI JOIN src_spine AS s ON s.agency = r.agency AND s.person_token = r.person_token
HAVING count(*) > 0;

-- The periods each agency record is held in.
CREATE TEMP TABLE int_record_periods AS
SELECT 'education' AS agency, person_token, period FROM src_education_census
UNION SELECT 'education', person_token, period FROM src_education_exclusions
UNION SELECT 'education', person_token, period FROM src_education_sen2
UNION SELECT 'health', person_token, period FROM src_health_referrals
UNION SELECT 'care', person_token, period FROM src_care_cin
UNION SELECT 'care', person_token, period FROM src_care_lac;

-- Pairs of records the spine puts in one child, from both records: the record, the other
-- record's agency and token.
CREATE TEMP TABLE int_child_pairs AS
SELECT a.agency, a.person_token, b.agency AS other_agency, b.person_token AS other_token
FROM src_spine AS a
JOIN src_spine AS b
    ON b.child_id = a.child_id
    AND NOT (b.agency = a.agency AND b.person_token = a.person_token);

-- True pairs from both of their records, between records the linker saw (in the spine).
CREATE TEMP TABLE int_true_ends AS
WITH seen AS (
    SELECT t.*
    FROM src_truth_pairs AS t
    SEMI JOIN src_spine AS l ON l.agency = t.agency_l AND l.person_token = t.person_token_l
    SEMI JOIN src_spine AS r ON r.agency = t.agency_r AND r.person_token = t.person_token_r
)
SELECT agency_l AS agency, person_token_l AS person_token, agency_r AS other_agency,
       person_token_r AS other_token
FROM seen
UNION
SELECT agency_r, person_token_r, agency_l, person_token_l FROM seen;

-- One row per record, other agency and period: the linker's figures, and its pairs in the
-- spine checked against the truth.
CREATE TEMP TABLE int_linkage_qa_records AS
WITH pair_truth AS (
    SELECT
        agency, person_token, other_agency,
        count(c.other_agency) AS linked_pairs,
        count(t.other_agency) AS true_pairs,
        count(*) FILTER (WHERE c.other_agency IS NOT NULL AND t.other_agency IS NOT NULL)
            AS true_positive_pairs
    FROM int_child_pairs AS c
    FULL JOIN int_true_ends AS t USING (agency, person_token, other_agency, other_token)
    GROUP BY ALL
)
SELECT
    p.name AS agency_pair, r.agency, r.other_agency, r.person_token,
    rp.period, d.la_code, c.ethnicity_group, c.sex, d.age_at_31_aug,
    coalesce(r.candidates, 0) AS candidates,
    least(1.0, coalesce(r.match_mass, 0)) AS match_mass,
    coalesce(r.linked, false) AS linked, r.link_weight, r.link_probability,
    coalesce(pt.linked_pairs, 0) AS record_linked_pairs,
    coalesce(pt.true_pairs, 0) AS record_true_pairs,
    coalesce(pt.true_positive_pairs, 0) AS record_true_positive_pairs
FROM src_record_linkage AS r
JOIN (
    SELECT agency_l AS agency, agency_r AS other_agency, agency_l || '-' || agency_r AS name
    FROM src_agency_pairs
    UNION
    SELECT agency_r, agency_l, agency_l || '-' || agency_r FROM src_agency_pairs
) AS p ON p.agency = r.agency AND p.other_agency = r.other_agency
JOIN src_spine AS s ON s.agency = r.agency AND s.person_token = r.person_token
JOIN int_record_periods AS rp ON rp.agency = r.agency AND rp.person_token = r.person_token
JOIN dim_child_period AS d ON d.child_id = s.child_id AND d.period = rp.period
JOIN dim_child AS c ON c.child_id = s.child_id
LEFT JOIN pair_truth AS pt
    ON pt.agency = r.agency AND pt.person_token = r.person_token
    AND pt.other_agency = r.other_agency;

CREATE TABLE linkage_qa AS
WITH grouped AS (
    SELECT
        r.*,
        unnest([
            {'group_type': 'all', 'group_value': 'all'},
            {'group_type': 'ethnicity_group',
             'group_value': coalesce(r.ethnicity_group, 'Unknown')},
            {'group_type': 'sex', 'group_value': coalesce(r.sex, 'U')},
            {'group_type': 'age_band', 'group_value': age_band(r.age_at_31_aug)}
        ]) AS g
    FROM int_linkage_qa_records AS r
),
truth AS (
    SELECT count(*) > 0 AS supplied FROM src_truth_pairs
)
SELECT
    agency_pair, agency, other_agency, la_code, period,
    g.group_type AS group_type, g.group_value AS group_value,
    count(*) AS records,
    sum(candidates) AS candidate_pairs,
    count(*) FILTER (WHERE linked) AS linked_records,
    linked_records / records AS linkage_rate,
    count(link_weight) FILTER (WHERE linked) AS directly_linked_records,
    avg(link_weight) FILTER (WHERE linked) AS mean_match_weight,
    median(link_weight) FILTER (WHERE linked) AS median_match_weight,
    sum(match_mass) AS expected_matched_records,
    avg(link_probability) FILTER (WHERE linked) AS precision_estimate,
    coalesce(sum(link_probability) FILTER (WHERE linked), 0)
        / nullif(expected_matched_records, 0) AS recall_estimate,
    sum(record_linked_pairs) AS linked_pairs,
    CASE WHEN any_value(truth.supplied) THEN sum(record_true_pairs) END AS true_pairs,
    CASE WHEN any_value(truth.supplied) THEN sum(record_true_positive_pairs) END
        AS true_positive_pairs,
    true_positive_pairs / nullif(linked_pairs, 0) AS true_precision,
    true_positive_pairs / nullif(true_pairs, 0) AS true_recall
FROM grouped
CROSS JOIN truth
GROUP BY agency_pair, agency, other_agency, la_code, period, g.group_type, g.group_value
ORDER BY period, la_code, agency_pair, agency, group_type, group_value;


CREATE OR REPLACE TEMP MACRO qa_percent(x) AS fmt_number(100 * x, 2);
-- A share whose counts are n (numerator) and d (denominator): '*' when either is 1-7.
CREATE OR REPLACE TEMP MACRO qa_share(x, n, d) AS
    CASE WHEN x IS NULL AND d IS NULL THEN NULL
         WHEN x IS NULL OR d = 0 THEN 'z'
         WHEN nhs_small(n) OR nhs_small(d) THEN '*'
         ELSE qa_percent(x) END;
CREATE OR REPLACE TEMP MACRO qa_weight(w, n) AS
    CASE WHEN w IS NULL THEN 'z' WHEN n < 8 THEN '*' ELSE fmt_number(w, 2) END;

CREATE TABLE published_linkage_qa AS
SELECT
    agency_pair, agency, other_agency, la_code, period, group_type, group_value,
    nhs_count(records) AS published_records,
    nhs_count(candidate_pairs) AS published_candidate_pairs,
    nhs_count(linked_records) AS published_linked_records,
    CASE WHEN records = 0 THEN 'z'
         WHEN nhs_small(linked_records) OR nhs_small(records) THEN '*'
         ELSE qa_percent(nhs_round(linked_records) / nhs_round(records))
    END AS published_linkage_rate,
    nhs_count(directly_linked_records) AS published_directly_linked_records,
    qa_weight(mean_match_weight, directly_linked_records) AS published_mean_match_weight,
    qa_weight(median_match_weight, directly_linked_records) AS published_median_match_weight,
    qa_share(precision_estimate, directly_linked_records, directly_linked_records)
        AS published_precision_estimate,
    qa_share(recall_estimate, linked_records, records) AS published_recall_estimate,
    qa_share(true_precision, true_positive_pairs, linked_pairs) AS published_true_precision,
    qa_share(true_recall, true_positive_pairs, true_pairs) AS published_true_recall
FROM linkage_qa
ORDER BY period, la_code, agency_pair, agency, group_type, group_value;


CREATE TABLE linkage_weight_distribution AS
WITH links AS (
    SELECT
        row_number() OVER () AS link_id, l.agency_l || '-' || l.agency_r AS agency_pair,
        l.agency_l, l.person_token_l, l.agency_r, l.person_token_r, l.match_weight,
        l.decided_by, s.child_id
    FROM src_links AS l
    JOIN src_spine AS s ON s.agency = l.agency_l AND s.person_token = l.person_token_l
),
link_periods AS (
    SELECT k.link_id, rp.period
    FROM links AS k
    JOIN int_record_periods AS rp
        ON rp.agency = k.agency_l AND rp.person_token = k.person_token_l
    UNION
    SELECT k.link_id, rp.period
    FROM links AS k
    JOIN int_record_periods AS rp
        ON rp.agency = k.agency_r AND rp.person_token = k.person_token_r
)
SELECT
    k.agency_pair, d.la_code, lp.period,
    2 * floor(k.match_weight / 2) AS weight_from,
    2 * floor(k.match_weight / 2) + 2 AS weight_to,
    count(*) AS links,
    count(*) FILTER (WHERE k.decided_by = 'model') AS model_links,
    count(*) FILTER (WHERE k.decided_by = 'clerical') AS clerical_links
FROM links AS k
JOIN link_periods AS lp USING (link_id)
JOIN dim_child_period AS d ON d.child_id = k.child_id AND d.period = lp.period
GROUP BY ALL
ORDER BY period, la_code, agency_pair, weight_from;


DROP TABLE int_linkage_qa_records;
DROP TABLE int_true_ends;
DROP TABLE int_child_pairs;
DROP TABLE int_record_periods;
DROP TABLE src_record_linkage;
DROP TABLE src_truth_pairs;
DROP TABLE src_agency_pairs;
