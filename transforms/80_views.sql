-- Views for common questions (described in transforms/dictionary.json like the tables).
--   v_metric_trend: a metric's published cells across periods, with the period's kind
--     (academic_year or financial_year: compare like with like) and dates (order by
--     period_start) and the national benchmark of the metric and cohort value.
--   v_children_known_to_several_services (RESTRICTED, child-level): children known to two or
--     more agencies in a period, with their cohort and which agencies know them.
--   v_published_metrics_by_sen_status: published_metrics pivoted by SEN status, one row per
--     metric, period and area with each SEN group's published value side by side.

CREATE VIEW v_metric_trend AS
SELECT
    p.metric_id, m.title, p.la_code, p.cohort, p.cohort_value, p.period, r.kind AS period_kind,
    r.period_start,
    r.period_end, p.published_value, p.published_numerator, p.published_denominator,
    p.suppressed, p.unit, m.higher_is_better, b.value AS benchmark_value,
    b.source AS benchmark_source, b.year AS benchmark_year
FROM published_metrics AS p
JOIN metric_catalogue AS m ON m.id = p.metric_id
JOIN ref_period AS r ON r.period = p.period
LEFT JOIN metric_benchmarks AS b
    ON b.metric_id = p.metric_id AND b.cohort = p.cohort AND b.cohort_value = p.cohort_value
ORDER BY p.metric_id, p.la_code, p.cohort, p.cohort_value, r.period_start;

CREATE VIEW v_children_known_to_several_services AS
WITH known AS (
    SELECT
        child_id, period, count(*) AS services,
        string_agg(agency, ', ' ORDER BY agency) AS agencies,
        bool_or(agency = 'education') AS known_to_education,
        bool_or(agency = 'health') AS known_to_health,
        bool_or(agency = 'care') AS known_to_care
    FROM fct_service_contact
    GROUP BY child_id, period
    HAVING count(*) >= 2
)
SELECT
    k.child_id, k.period, d.la_code, d.sen_provision, d.age_at_31_aug, c.sex,
    c.ethnicity_group, k.services, k.agencies, k.known_to_education, k.known_to_health,
    k.known_to_care
FROM known AS k
JOIN dim_child_period AS d USING (child_id, period)
JOIN dim_child AS c USING (child_id)
ORDER BY k.period, d.la_code, k.child_id;

CREATE VIEW v_published_metrics_by_sen_status AS
SELECT
    p.metric_id, m.title, p.period, p.la_code, p.unit,
    any_value(p.published_value) FILTER (WHERE p.cohort_value = 'all') AS all_children,
    any_value(p.published_value) FILTER (WHERE p.cohort_value = 'N') AS no_sen,
    any_value(p.published_value) FILTER (WHERE p.cohort_value = 'K') AS sen_support,
    any_value(p.published_value) FILTER (WHERE p.cohort_value = 'E') AS ehc_plan,
    any_value(p.published_value) FILTER (WHERE p.cohort_value = 'SEN') AS any_sen,
    any_value(p.published_value) FILTER (WHERE p.cohort_value = 'X') AS not_on_census,
    bool_or(p.suppressed) AS any_suppressed
FROM published_metrics AS p
JOIN metric_catalogue AS m ON m.id = p.metric_id
WHERE p.cohort = 'sen_status'
GROUP BY p.metric_id, m.title, p.period, p.la_code, p.unit
ORDER BY p.metric_id, p.period, p.la_code;
