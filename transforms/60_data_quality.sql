-- Data quality as a published measure, per agency, period and area.
--   dq_deliveries (loaded by metrics.py): every delivery ever made, with its status
--     (accepted, held, rejected), reason and row accounting; is_current marks the ones the
--     warehouse was built from.
--   quarantine (loaded by metrics.py): every quarantined row of the current deliveries, with
--     its file, row number, rule, column and value as delivered (tokens redacted).
--   dq_summary: rows received, accepted and quarantined by the current deliveries, and how many
--     deliveries were rejected outright, per agency, period and area.
--   dq_rule_failures: failing rows per rule of each current delivery: quarantined rows (row
--     rules, and the structural and type rules of ingest) and the warn and batch rules of
--     validation.
--   dq_identifier_completeness: person records by the status of their NHS number or UPN
--     (valid, invalid, missing at source), from the accepted rows (int_person_identifier,
--     37_metric_identifier_quality.sql).

CREATE TABLE dq_summary AS
SELECT
    agency, period, la_code,
    sum(rows_received) FILTER (WHERE is_current) AS rows_received,
    sum(rows_accepted) FILTER (WHERE is_current) AS rows_accepted,
    sum(rows_quarantined) FILTER (WHERE is_current) AS rows_quarantined,
    round(100.0 * sum(rows_quarantined) FILTER (WHERE is_current)
          / nullif(sum(rows_received) FILTER (WHERE is_current), 0), 2) AS quarantined_percent,
    count(*) FILTER (WHERE status = 'rejected') AS deliveries_rejected,
    count(*) AS deliveries
FROM dq_deliveries
GROUP BY agency, period, la_code
ORDER BY agency, period, la_code;

CREATE TABLE dq_rule_failures AS
SELECT d.agency, d.period, d.la_code, d.extract, q.delivery_id, q.rule,
       CASE WHEN q.rule LIKE 'type:%' OR q.rule IN ('field_count', 'duplicate_header')
            THEN 'ingest' ELSE 'row' END AS severity,
       count(DISTINCT q.row) AS failing_rows
FROM quarantine AS q
JOIN dq_deliveries AS d USING (delivery_id)
GROUP BY ALL
UNION ALL
SELECT d.agency, d.period, d.la_code, d.extract, f.delivery_id, f.rule, f.severity, f.rows
FROM src_validation_failures AS f
JOIN dq_deliveries AS d USING (delivery_id)
WHERE d.is_current
ORDER BY agency, period, la_code, extract, rule;

CREATE TABLE dq_identifier_completeness AS
SELECT
    agency, period, la_code, identifier,
    count(DISTINCT person_token) AS person_records,
    count(DISTINCT person_token) FILTER (WHERE status = 'valid') AS valid,
    count(DISTINCT person_token) FILTER (WHERE status = 'invalid') AS invalid,
    count(DISTINCT person_token) FILTER (WHERE status = 'missing') AS missing,
    round(100.0 * count(DISTINCT person_token) FILTER (WHERE status = 'valid')
          / count(DISTINCT person_token), 1) AS valid_percent
FROM int_person_identifier
GROUP BY ALL
ORDER BY agency, period, la_code, identifier;

DROP TABLE src_validation_failures;
