-- Units of lac_episodes_started (activity): one per looked-after episode (SSDA903) starting in
-- the period (academic year, and financial year, of DECOM), taken once
-- (int_latest_lac_episode), in the area of the social care record; numerator 1.

INSERT INTO int_metric_units BY NAME
SELECT
    'lac_episodes_started' AS metric_id, academic_year(decom) AS period, decom AS event_date,
    la_code, child_id, 1 AS numerator
FROM int_latest_lac_episode;
