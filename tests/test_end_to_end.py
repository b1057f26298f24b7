"""End to end through Airflow: synthetic areas, pseudonymised at source, run by the five DAGs,
then the published warehouse checked against the ground truth."""

from __future__ import annotations

import os
import re

import duckdb
import pandas as pd
import pytest

from joinedup.contracts import contract
from joinedup.demo import migrate_airflow_db, prepare_landing, run_dags
from joinedup.settings import Settings, load_key
from tests import groundtruth as gt

PERIOD = "2024-25"
SCALE = 0.15
MIN_PRECISION = 0.98
MIN_RECALL = 0.95
FACT_TABLES = (
    "fct_attendance",
    "fct_exclusions",
    "fct_ehc_requests",
    "fct_health_referrals",
    "fct_cin_episodes",
    "fct_lac_episodes",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One full pipeline run on a small population (module-scoped: it takes about a minute)."""
    saved = {k: os.environ.get(k) for k in ("JOINEDUP_DATA_DIR", "JOINEDUP_KEY")}
    os.environ["JOINEDUP_DATA_DIR"] = str(tmp_path_factory.mktemp("e2e"))
    os.environ["JOINEDUP_KEY"] = "end-to-end-test-key-" + "k" * 32
    settings = Settings.from_env()
    key = load_key()
    prepare_landing(settings, PERIOD, seed=7, scale=SCALE, key=key)
    migrate_airflow_db()
    run_dags(PERIOD)
    yield settings, key, gt.load_truth(settings, PERIOD, key)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def query(settings: Settings, sql: str) -> pd.DataFrame:
    """Read the published warehouse the way analysts do: read-only, connection closed after."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.sql(sql).df()


@pytest.fixture(scope="module")
def metrics(run) -> pd.DataFrame:
    return query(run[0], "SELECT * FROM metric_values")


@pytest.fixture(scope="module")
def misassigned(run) -> pd.DataFrame:
    settings, _, truth = run
    spine = pd.read_parquet(settings.work_dir / PERIOD / "link" / "spine.parquet")
    return gt.misassigned_records(spine, truth)


SEN_STATUS = ("sen_status",)


def published(metrics: pd.DataFrame, metric_id: str, cohort: str = "sen_status") -> pd.DataFrame:
    rows = metrics[
        (metrics.metric_id == metric_id) & (metrics.period == PERIOD) & (metrics.cohort == cohort)
    ]
    return rows.set_index(["la_code", "cohort_value"])


def assert_cells_equal(actual: pd.DataFrame, expected: pd.DataFrame, per: float = 100.0) -> None:
    """Every expected cell's numerator, denominator and value (per * numerator / denominator)
    equal the warehouse's; when the expected cells break 'all' down, every other cell of the
    warehouse is empty."""
    expected = expected.set_index(["la_code", "cohort_value"])
    assert set(expected.index) <= set(actual.index)
    for cell, row in expected.iterrows():
        assert actual.loc[cell, "numerator"] == pytest.approx(row.numerator), cell
        assert actual.loc[cell, "denominator"] == pytest.approx(row.denominator), cell
        value = gt.rate(row.numerator, row.denominator, per)
        assert actual.loc[cell, "value"] == pytest.approx(value), cell
    if (expected.index.get_level_values(1) != "all").any():
        others = actual.loc[actual.index.difference(expected.index)]
        assert (others.numerator == 0).all() and (others.denominator == 0).all()


def test_warehouse_holds_the_star_schema_metrics_and_manifest(run):
    tables = set(query(run[0], "SHOW TABLES").name)
    for table in (
        "dim_child",
        *FACT_TABLES,
        "metric_values",
        "published_metrics",
        "metric_catalogue",
        "manifest",
        "linkage_quality",
    ):
        assert table in tables, table


def test_every_metric_is_published_for_all_three_areas(metrics, run):
    _, _, truth = run
    areas = set(truth.records.la_code)
    assert len(areas) == 3
    for metric_id in (
        "ehcp_issued_within_20_weeks",
        "persistent_absence",
        "suspension_rate",
        "referral_to_first_contact_weeks_median",
        "known_to_services_1",
        "known_to_services_2",
        "known_to_services_3",
    ):
        assert set(published(metrics, metric_id).index.get_level_values(0)) == areas, metric_id


def test_linkage_precision_and_recall_for_every_agency_pair(run):
    settings, key, _ = run
    from joinedup.demo import evaluate_linkage

    scores = evaluate_linkage(settings, PERIOD, key).set_index("agency_pair")
    cross = {"education-health", "education-care", "health-care"}
    assert set(scores.index) == cross | {"education-education", "health-health", "care-care"}
    for pair, row in scores.iterrows():
        assert row.precision >= MIN_PRECISION, (pair, row.precision)
        if pair in cross:  # duplicates within an agency are a handful at this scale
            assert row.recall >= MIN_RECALL, (pair, row.recall)


@pytest.mark.parametrize(
    ("metric_id", "compute"),
    [
        ("ehcp_issued_within_20_weeks", gt.ehcp_within_20_weeks),
        (
            "ehcp_issued_within_20_weeks_excluding_exceptions",
            gt.ehcp_within_20_weeks_excluding_exceptions,
        ),
        ("ehcp_requests_agreed_to_assess", gt.requests_agreed_to_assess),
        ("persistent_absence", lambda truth: gt.persistent_absence(truth, SEN_STATUS)),
        ("suspension_rate", lambda truth: gt.exclusion_rate(truth, "SUSP", SEN_STATUS)),
    ],
)
def test_education_metrics_equal_the_ground_truth(metric_id, compute, metrics, run):
    """Education-only metrics need no cross-agency linkage, so they must match exactly."""
    _, _, truth = run
    expected = compute(truth)
    actual = published(metrics, metric_id)
    assert_cells_equal(actual, expected)
    assert len(expected) >= 3 and expected.denominator.sum() > 0


@pytest.mark.parametrize(
    ("metric_id", "compute"),
    [
        ("persistent_absence", gt.persistent_absence),
        ("overall_absence", gt.overall_absence),
        ("suspension_rate", lambda truth: gt.exclusion_rate(truth, "SUSP")),
        ("permanent_exclusion_rate", lambda truth: gt.exclusion_rate(truth, "PERM")),
    ],
)
def test_education_metrics_by_every_cohort_equal_the_ground_truth(metric_id, compute, metrics, run):
    """Census-based measures by SEN status, primary need, age band, sex, ethnicity group and
    FSM, each attribute taken from the pupil's census record, equal the truth exactly."""
    _, _, truth = run
    expected = compute(truth)
    for cohort, frame in expected.groupby("cohort"):
        assert_cells_equal(published(metrics, metric_id, cohort), frame)
    assert set(expected.cohort) == set(gt.EDUCATION_DIMENSIONS)


@pytest.mark.parametrize(
    ("metric_id", "category"),
    [("suspension_ratio_to_no_sen", "SUSP"), ("permanent_exclusion_ratio_to_no_sen", "PERM")],
)
def test_exclusion_ratios_to_no_sen_equal_the_ground_truth(metric_id, category, metrics, run):
    """K, E and K+E rates over the no-SEN rate, per area."""
    _, _, truth = run
    expected = gt.ratio_to_no_sen(gt.exclusion_rate(truth, category))
    actual = published(metrics, metric_id)
    assert set(actual.index) == set(zip(expected.la_code, expected.cohort_value, strict=True))
    for row in expected.itertuples():
        cell = actual.loc[(row.la_code, row.cohort_value)]
        for column, value in (
            ("numerator", row.group_rate),
            ("denominator", row.reference_rate),
            ("value", row.value),
        ):
            if value is None:
                assert pd.isna(cell[column]), (row, column)
            else:
                assert cell[column] == pytest.approx(value), (row, column)


def test_weeks_from_request_to_plan_median_equals_the_ground_truth(metrics, run):
    """Median weeks from request to plan, per area, overall and by the plan's primary need."""
    _, _, truth = run
    plans = gt.latest_plans(truth)
    overall = published(metrics, "ehcp_weeks_request_to_plan_median")
    by_need = published(metrics, "ehcp_weeks_request_to_plan_median", "primary_need")
    for la_code, group in plans.groupby("la_code"):
        assert overall.loc[(la_code, "all"), "value"] == pytest.approx(group.weeks.median())
        assert overall.loc[(la_code, "all"), "denominator"] == len(group)
        for need, of_need in group.groupby(group.primary_need.fillna("unknown")):
            assert by_need.loc[(la_code, need), "value"] == pytest.approx(of_need.weeks.median())
    assert len(plans) > 0


def test_children_known_to_k_services_equal_the_ground_truth(metrics, run, misassigned):
    """Counts can differ from the truth only by the children the linkage put in a wrong cluster."""
    _, _, truth = run
    expected = gt.known_to_services(truth)
    wrong_children = misassigned.true_id.nunique()
    for _, row in expected.iterrows():
        actual = published(metrics, row.metric_id).loc[(row.la_code, row.cohort_value)]
        assert abs(actual.numerator - row.numerator) <= wrong_children, row.to_dict()
        if wrong_children == 0:
            assert actual.denominator == row.denominator


def test_referral_wait_medians_equal_the_ground_truth(metrics, run, misassigned):
    """Each median equals the truth's, or lies within the order statistics that the referrals of
    wrongly linked children could shift it to."""
    _, _, truth = run
    waits = gt.referral_waits(truth)
    moved = waits.true_id.isin(misassigned.true_id)
    actual = published(metrics, "referral_to_first_contact_weeks_median")
    cohorts = [(*key, group) for key, group in waits.groupby(["la_code", "sen_status"])]
    cohorts += [(area, "all", group) for area, group in waits.groupby("la_code")]
    for la_code, sen_status, group in cohorts:
        changed = int(moved[group.index].sum())
        low, high = gt.median_bounds(group.weeks, changed)
        value = actual.loc[(la_code, sen_status), "value"]
        if changed == 0:
            assert value == pytest.approx(group.weeks.median()), (la_code, sen_status)
        else:
            assert low - 1e-9 <= value <= high + 1e-9, (la_code, sen_status, value, low, high)


def test_no_direct_identifier_in_the_landing_zone_or_the_warehouse(run):
    settings, _, truth = run
    identifiers = gt.direct_identifiers(truth)
    landed = [p for p in settings.landing_dir.rglob("*") if p.suffix in (".parquet", ".csv")]
    for path in sorted(landed):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        dates = [c.name for c in contract(path.stem).payload if c.type == "date"]
        assert gt.find_leaks(frame, identifiers, dates) == [], path
    for table in query(settings, "SHOW TABLES").name:
        frame = query(settings, f'SELECT * FROM "{table}"')
        assert gt.find_leaks(frame, identifiers) == [], table


def test_the_leak_scan_finds_identifiers_it_is_shown(run):
    """The scan above can fail: it finds a name, an NHS number inside text and a UK-format date
    of birth planted in a frame."""
    _, _, truth = run
    health = truth.extract("health_referrals").dropna(subset=["nhs_number"]).iloc[0]
    planted = pd.DataFrame(
        {
            "note": [f"seen {health.nhs_number} today", "x"],
            "who": [health.surname.upper(), "y"],
            "when": ["z", "/".join(reversed(health.dob.split("-")))],
        }
    )
    found = {column for column, _ in gt.find_leaks(planted, gt.direct_identifiers(truth))}
    assert found == {"note", "who", "when"}


def test_reports_are_written_for_each_area(run):
    settings, _, truth = run
    written = sorted((settings.reports_dir / PERIOD).glob("*.html"))
    assert {p.stem for p in written} == set(truth.records.la_code)


def test_rerunning_the_period_is_idempotent(run, metrics):
    """Ingesting the same files again adds no delivery; relinking and republishing the period
    gives the same child ids and the same figures."""
    settings, _, _ = run
    stored_before = sorted(p.name for p in settings.store_dir.rglob("*.json"))
    spine_before = pd.read_parquet(settings.work_dir / PERIOD / "link" / "spine.parquet")
    run_dags(PERIOD)
    assert sorted(p.name for p in settings.store_dir.rglob("*.json")) == stored_before
    spine_after = pd.read_parquet(settings.work_dir / PERIOD / "link" / "spine.parquet")
    pd.testing.assert_frame_equal(
        spine_before.sort_values(["agency", "person_token"]).reset_index(drop=True),
        spine_after.sort_values(["agency", "person_token"]).reset_index(drop=True),
    )
    again = query(settings, "SELECT * FROM metric_values")
    keys = ["metric_id", "period", "la_code", "cohort", "cohort_value"]
    pd.testing.assert_frame_equal(
        metrics.sort_values(keys).reset_index(drop=True),
        again.sort_values(keys).reset_index(drop=True),
    )


def test_every_delivered_row_is_published_or_quarantined(run):
    """Row accounting end to end: for each current delivery, rows received = rows in the
    warehouse's fact tables + rows in its quarantine table."""
    settings, _, _ = run
    facts = " UNION ALL ".join(f"SELECT delivery_id FROM {t}" for t in FACT_TABLES)
    accounting = query(
        settings,
        f"""
        SELECT d.delivery_id, d.file, d.rows_received, d.rows_accepted, d.rows_quarantined,
               coalesce(f.n, 0) AS published, coalesce(q.n, 0) AS quarantined
        FROM dq_deliveries AS d
        LEFT JOIN (SELECT delivery_id, count(*) AS n FROM ({facts}) GROUP BY ALL) AS f
            USING (delivery_id)
        LEFT JOIN (SELECT delivery_id, count(DISTINCT row) AS n FROM quarantine GROUP BY ALL)
            AS q USING (delivery_id)
        WHERE d.is_current
        """,
    )
    landed = [p for p in settings.landing_dir.rglob("*") if p.suffix in (".parquet", ".csv")]
    assert len(accounting) == len(landed)
    for row in accounting.itertuples():
        assert row.published + row.quarantined == row.rows_received, row
        assert (row.published, row.quarantined) == (row.rows_accepted, row.rows_quarantined)
    assert accounting.quarantined.sum() > 0


def test_every_injected_bad_row_is_quarantined_and_no_good_row_is(run):
    settings, _, _ = run
    bad = pd.read_parquet(settings.truth_dir / PERIOD / "bad_rows.parquet")
    bad = bad[bad.landed_row.notna()]
    quarantined = query(settings, "SELECT DISTINCT la_code, extract, row FROM quarantine")
    expected = {(r.la_code, r.extract, int(r.landed_row)) for r in bad.itertuples()}
    found = set(quarantined.itertuples(index=False, name=None))
    assert expected, "the synthetic areas must hold bad rows"
    assert found == expected


def test_data_quality_tables_are_published_per_agency_period_and_area(run):
    settings, _, truth = run
    summary = query(settings, "SELECT * FROM dq_summary")
    assert set(summary.agency) == {"education", "health", "care"}
    assert set(summary.la_code) == set(truth.records.la_code)
    assert (summary.rows_received == summary.rows_accepted + summary.rows_quarantined).all()
    failures = query(
        settings,
        "SELECT delivery_id, rule, failing_rows FROM dq_rule_failures "
        "WHERE severity IN ('row', 'ingest')",
    )
    quarantined = query(
        settings,
        "SELECT delivery_id, rule, count(DISTINCT row) AS failing_rows "
        "FROM quarantine GROUP BY ALL",
    )
    keys = ["delivery_id", "rule"]
    assert len(failures) > 0
    pd.testing.assert_frame_equal(
        failures.sort_values(keys).reset_index(drop=True),
        quarantined.sort_values(keys).reset_index(drop=True),
        check_dtype=False,
    )
    completeness = query(settings, "SELECT * FROM dq_identifier_completeness")
    health = completeness[(completeness.agency == "health")]
    assert (health.identifier == "nhs_number").all()
    assert (health.valid + health.invalid + health.missing == health.person_records).all()
    assert health.valid_percent.between(90, 100).all()


def test_data_docs_are_written_and_linked_from_every_report(run):
    settings, _, truth = run
    for agency in ("education", "health", "care"):
        index = next((settings.work_dir / "data_docs" / agency).rglob("index.html"))
        assert "<html" in index.read_text(encoding="utf-8").lower()
    for la_code in set(truth.records.la_code):
        report = settings.reports_dir / PERIOD / f"{la_code}.html"
        links = re.findall(r'href="([^"]*index\.html)"', report.read_text(encoding="utf-8"))
        assert len(links) == 3
        assert all((report.parent / link).resolve().exists() for link in links)


def test_attacker_recovers_no_suppressed_count_of_the_pipeline_build(run):
    """The attacker of tests/test_disclosure.py, on the warehouse the pipeline published."""
    from tests.test_disclosure import attack, recovered

    with duckdb.connect(str(run[0].warehouse_path), read_only=True) as con:
        found = attack(con)
    assert recovered(found) == []
