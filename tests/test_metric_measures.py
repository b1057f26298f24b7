"""The health, care, integration, data-quality and activity measures, checked against an
independent pandas computation from the synthetic ground truth (tests/groundtruth_services.py).

The module builds one demo-sized warehouse from synthetic areas through the pipeline's own
steps (ingest, validate, link, build, publish; no Airflow, about a minute), then compares each
measure's cells with the truth. Counts may differ from the truth only by the children the
linkage put in a wrong cluster; with none, they must be equal.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace

import duckdb
import pandas as pd
import pytest

from joinedup import pipeline
from joinedup.demo import prepare_landing
from joinedup.ingest import Delivery
from joinedup.metrics import TransformError
from joinedup.report import render_reports
from joinedup.settings import AGENCIES, Settings, load_key
from tests import groundtruth as gt
from tests import groundtruth_services as gs
from tests.test_metrics import DELIVERIES, build_fixture_warehouse

PERIOD = "2024-25"
SEED = 7
SCALE = 0.15
NEW_MEASURES = {
    "health": ("seen_within_4_weeks", "seen_within_18_weeks", "dna_rate"),
    "care": ("in_need_share", "protection_plan_share", "looked_after_share"),
    "integration": (
        "ehcp_without_health_involvement",
        "need_without_sen_identification",
        "repeated_assessments",
        "first_contact_to_ehc_request_weeks_median",
        "referral_flows",
    ),
    "data_quality": (
        "identifier_recorded_share",
        "identifier_valid_share",
        "linkage_rate",
        "extracts_delivered_share",
    ),
    "activity": (
        "health_referrals_received",
        "health_contacts_attended",
        "ehc_requests_received",
        "cin_referrals_received",
        "lac_episodes_started",
    ),
}
ALL_NEW = tuple(m for members in NEW_MEASURES.values() for m in members)


@dataclass(frozen=True)
class Built:
    settings: Settings
    truth: gt.Truth
    metrics: pd.DataFrame
    wrong_children: int  # true children the linkage put in a wrong cluster


def run_pipeline(settings: Settings) -> None:
    """Synthetic areas through ingest, validation (no Data Docs), linkage, build and publish."""
    prepare_landing(settings, PERIOD, seed=SEED, scale=SCALE, key=load_key())
    for agency in AGENCIES:
        for delivery in pipeline.ingest_step(agency, PERIOD, settings):
            pipeline.validate_delivery(Delivery(**delivery))
    pipeline.link_step(PERIOD, settings)
    built = pipeline.build_step(PERIOD, "measures-test", settings)
    pipeline.publish_step(built["build_path"], settings)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    saved = {k: os.environ.get(k) for k in ("JOINEDUP_DATA_DIR", "JOINEDUP_KEY")}
    os.environ["JOINEDUP_DATA_DIR"] = str(tmp_path_factory.mktemp("measures"))
    os.environ["JOINEDUP_KEY"] = "measures-test-key-" + "m" * 32
    try:
        settings = Settings.from_env()
        run_pipeline(settings)
        truth = gt.load_truth(settings, PERIOD, load_key())
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            metrics = con.sql("SELECT * FROM metric_values").df()
        spine = pd.read_parquet(settings.work_dir / PERIOD / "link" / "spine.parquet")
        wrong = gt.misassigned_records(spine, truth).true_id.nunique()
        yield Built(settings, truth, metrics, wrong)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cells_of(built: Built, metric_id: str) -> pd.DataFrame:
    rows = built.metrics[(built.metrics.metric_id == metric_id) & (built.metrics.period == PERIOD)]
    return rows.set_index(["la_code", "cohort", "cohort_value"])


def assert_cells_match(built: Built, metric_id: str, expected: pd.DataFrame) -> None:
    """Every expected cell is in the warehouse with its numerator (and denominator, if any)
    equal, or within the children the linkage misassigned; cells the truth lacks are empty."""
    actual = cells_of(built, metric_id)
    expected = expected.set_index(["la_code", "cohort", "cohort_value"])
    assert len(expected) > 0
    tolerance = built.wrong_children
    for cell, row in expected.iterrows():
        found = actual.loc[cell]
        assert abs(found.numerator - row.numerator) <= tolerance, (metric_id, cell)
        if "denominator" in row:
            assert abs(found.denominator - row.denominator) <= tolerance, (metric_id, cell)
    cohorts = set(expected.index.get_level_values(1))
    others = actual[
        actual.index.get_level_values(1).isin(cohorts) & ~actual.index.isin(expected.index)
    ]
    assert (others.numerator.fillna(0) <= tolerance).all(), (metric_id, others)


def test_every_new_measure_has_cells_for_every_area_and_each_listed_dimension(built):
    areas = set(built.truth.records.la_code)
    with duckdb.connect(str(built.settings.warehouse_path), read_only=True) as con:
        listed = dict(
            con.execute(
                "SELECT id, cohort_dimensions FROM metric_catalogue WHERE list_contains(?, id)",
                [list(ALL_NEW)],
            ).fetchall()
        )
        themes = dict(con.execute("SELECT id, theme FROM metric_catalogue").fetchall())
    assert set(listed) == set(ALL_NEW)
    for theme, members in NEW_MEASURES.items():
        assert {themes[m] for m in members} == {theme}
    for metric_id, dimensions in listed.items():
        found = cells_of(built, metric_id)
        assert set(found.index.get_level_values(0)) == areas, metric_id
        assert set(found.index.get_level_values(1)) == set(dimensions), metric_id


@pytest.mark.parametrize(
    ("metric_id", "days"),
    [("seen_within_4_weeks", gs.FOUR_WEEKS_DAYS), ("seen_within_18_weeks", gs.EIGHTEEN_WEEKS_DAYS)],
)
def test_seen_within_weeks_equals_the_ground_truth(built, metric_id, days):
    """Referrals seen, or past their window by the period end; numerator seen within it."""
    expected = gs.seen_within(built.truth, days)
    assert expected.numerator.sum() > 0
    assert_cells_match(built, metric_id, expected)


def test_dna_rate_equals_the_ground_truth(built):
    expected = gs.dna_rate(built.truth)
    assert_cells_match(built, "dna_rate", expected)
    actual = cells_of(built, "dna_rate").loc[(expected.la_code[0], "service", "all")]
    assert actual.value == pytest.approx(100 * actual.numerator / actual.denominator)


@pytest.mark.parametrize(
    "metric_id", ["in_need_share", "protection_plan_share", "looked_after_share"]
)
def test_care_shares_of_pupils_by_sen_status_equal_the_ground_truth(built, metric_id):
    expected = gs.care_shares(built.truth)[metric_id]
    assert expected.numerator.sum() > 0
    assert_cells_match(built, metric_id, expected)


@pytest.mark.parametrize("metric_id", ["overall_absence", "persistent_absence", "suspension_rate"])
def test_education_outcomes_by_care_status_equal_the_ground_truth(built, metric_id):
    """care_status (lac, else cpp, else cin, else none) partitions the pupils."""
    expected = gs.census_by_care_status(built.truth)[metric_id]
    assert {"lac", "cin", "none"} <= set(expected.cohort_value)
    assert_cells_match(built, metric_id, expected)


@pytest.mark.parametrize(
    ("metric_id", "compute"),
    [
        ("ehcp_without_health_involvement", gs.ehcp_without_health_involvement),
        ("need_without_sen_identification", gs.need_without_sen_identification),
        ("repeated_assessments", gs.repeated_assessments),
        ("referral_flows", gs.referral_flows),
        ("linkage_rate", gs.linkage_rate),
    ],
)
def test_integration_measures_equal_the_ground_truth(built, metric_id, compute):
    expected = compute(built.truth)
    assert expected.numerator.sum() > 0
    assert_cells_match(built, metric_id, expected)


@pytest.mark.parametrize("metric_id", ["identifier_recorded_share", "identifier_valid_share"])
def test_identifier_shares_equal_validity_recomputed_from_the_raw_identifiers(built, metric_id):
    expected = gs.identifier_shares(built.truth)[metric_id]
    assert_cells_match(built, metric_id, expected)
    assert (expected.cohort_value != "all").all()
    assert (
        expected.groupby("la_code").numerator.sum() < expected.groupby("la_code").denominator.sum()
    ).all()


@pytest.mark.parametrize("metric_id", list(NEW_MEASURES["activity"]))
def test_activity_counts_equal_the_ground_truth(built, metric_id):
    expected = gs.activity_counts(built.truth)[metric_id]
    assert expected.numerator.sum() > 0
    assert_cells_match(built, metric_id, expected)
    actual = cells_of(built, metric_id)
    assert actual.denominator.isna().all() and (actual.value == actual.numerator).all()


def assert_medians_match(built: Built, metric_id: str, units: pd.DataFrame, by: str) -> None:
    """Each cell's median equals the truth's, or lies where the units of misassigned children
    could move it."""
    actual = cells_of(built, metric_id)
    groups = [((area, by, value), g) for (area, value), g in units.groupby(["la_code", by])]
    groups += [((area, by, "all"), g) for area, g in units.groupby("la_code")]
    assert groups
    for cell, group in groups:
        found = actual.loc[cell]
        assert abs(found.denominator - len(group)) <= built.wrong_children, cell
        if built.wrong_children == 0:
            assert found.value == pytest.approx(group.measure.median()), cell
        else:
            low, high = gt.median_bounds(group.measure, built.wrong_children)
            assert low - 1e-9 <= found.value <= high + 1e-9, cell


def test_referral_wait_by_service_equals_the_ground_truth(built):
    units = gs.referral_waits_by_service(built.truth)
    assert_medians_match(built, "referral_to_first_contact_weeks_median", units, "service")


def test_first_contact_to_ehc_request_equals_the_ground_truth(built):
    """Requests with an earlier health or CIN referral; the others are not measured."""
    units = gs.first_contact_to_ehc_request(built.truth)
    assert_medians_match(built, "first_contact_to_ehc_request_weeks_median", units, "sen_status")


def test_extracts_delivered_share_counts_the_missing_extracts(tmp_path):
    """In the hand-made fixture B delivered only its census and health referrals for 2024-25
    and A only SEN2 and health referrals for 2023-24: the shares follow from its deliveries."""
    build_fixture_warehouse(tmp_path / "b.duckdb", tmp_path)
    with duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True) as con:
        found = {
            (period, la_code, value): (numerator, denominator)
            for period, la_code, value, numerator, denominator in con.execute(
                "SELECT period, la_code, cohort_value, numerator, denominator "
                "FROM metric_values WHERE metric_id = 'extracts_delivered_share'"
            ).fetchall()
        }
        published = con.execute(
            "SELECT DISTINCT disclosure_rule, suppressed FROM published_metrics "
            "WHERE metric_id = 'extracts_delivered_share'"
        ).fetchall()
    delivered = pd.DataFrame(list(DELIVERIES), columns=["extract", "period", "la_code"])
    agency_of = {"education": 3, "health": 1, "care": 2}
    for (period, la_code), group in delivered.groupby(["period", "la_code"]):
        agencies = group.extract.str.split("_").str[0]
        assert found[(period, la_code, "all")] == (len(group), 6)
        for agency, expected in agency_of.items():
            assert found[(period, la_code, agency)] == ((agencies == agency).sum(), expected)
    assert len(found) == 4 * delivered.groupby(["period", "la_code"]).ngroups
    assert published == [("none", False)]


def test_a_unit_without_a_listed_dimension_value_fails_the_build(tmp_path):
    """The partition rule is enforced: dna_rate units stripped of their service are refused."""
    transforms = tmp_path / "transforms"
    shutil.copytree(Settings.from_env().transforms_dir, transforms)
    units = transforms / "33_metric_dna_rate.sql"
    units.write_text(units.read_text().replace(", r.service\n", "\n"))
    settings = replace(Settings.from_env(), transforms_dir=transforms)
    with pytest.raises(TransformError, match=r"without a value .* dna_rate \(service\)"):
        build_fixture_warehouse(tmp_path / "b.duckdb", tmp_path, settings=settings)


def test_counts_are_published_under_their_rule(built):
    """Health activity counts: 1-7 as '*', others multiples of 5 unless hidden as a complement;
    education and care: 1-4 'c', others exact unless hidden as a complement."""
    with duckdb.connect(str(built.settings.warehouse_path), read_only=True) as con:
        shown = con.execute(
            "SELECT p.disclosure_rule, p.published_value, v.numerator FROM published_metrics p "
            "JOIN metric_values v USING (metric_id, period, la_code, cohort, cohort_value) "
            "JOIN metric_catalogue m ON m.id = p.metric_id WHERE m.statistic = 'count'"
        ).fetchall()
    assert {rule for rule, *_ in shown} == {"nhs", "dfe"}
    symbol = {"nhs": "*", "dfe": "c"}
    band = {"nhs": 7, "dfe": 4}
    for rule, value, count in shown:
        if 1 <= count <= band[rule]:
            assert value == symbol[rule]
        elif value != symbol[rule]:
            assert value == str(int(5 * round(count / 5)) if rule == "nhs" else int(count))
    complements = [v for rule, v, n in shown if v == symbol[rule] and n > band[rule]]
    assert len(complements) < sum(v == symbol[rule] for rule, v, _ in shown)


def test_report_groups_measures_by_theme_and_labels_activity(built, tmp_path):
    paths = render_reports(built.settings.warehouse_path, tmp_path, PERIOD)
    html = paths[0].read_text(encoding="utf-8")
    headings = [html.index(f'id="theme-{theme}"') for theme in NEW_MEASURES]
    assert headings == sorted(headings)
    for theme, members in NEW_MEASURES.items():
        start = html.index(f'id="theme-{theme}"')
        for metric_id in members:
            section = html[html.index(f'id="{metric_id}"') :]
            section = section[: section.index("</section>")]
            assert html.index(f'id="{metric_id}"') > start, metric_id
            labelled = '<span class="label">Activity</span>' in section
            assert labelled == (theme == "activity" or metric_id == "referral_flows"), metric_id
            assert "<table" in section, metric_id
