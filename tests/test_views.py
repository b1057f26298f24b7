"""Tests of transforms/80_views.sql, the views for common questions, on the hand-made fixture
warehouse of tests/test_metrics.py (its docstring lists the fixture)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.test_metrics import PREV, A, B, P, child_id


@pytest.fixture(scope="module")
def con(fixture_warehouse: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(fixture_warehouse), read_only=True)
    yield connection
    connection.close()


def test_metric_trend_orders_periods_and_carries_the_benchmark(con):
    """EHC plans within 20 weeks in A: SEN2 delivered for 2023-24 and 2024-25; benchmark 45.9."""
    rows = con.execute(
        "SELECT period, published_value, benchmark_value, benchmark_year FROM v_metric_trend "
        "WHERE metric_id = 'ehcp_issued_within_20_weeks' AND la_code = ? "
        "AND cohort = 'sen_status' AND cohort_value = 'all' AND period_kind = 'academic_year' "
        "ORDER BY period_start",
        [A],
    ).fetchall()
    published = dict(
        con.execute(
            "SELECT period, published_value FROM published_metrics "
            "WHERE metric_id = 'ehcp_issued_within_20_weeks' AND la_code = ? "
            "AND cohort = 'sen_status' AND cohort_value = 'all'",
            [A],
        ).fetchall()
    )
    assert [r[0] for r in rows] == [PREV, P]
    assert [r[1] for r in rows] == [published[PREV], published[P]]
    assert {(r[2], r[3]) for r in rows} == {(45.9, "2024")}


def test_metric_trend_has_every_published_cell_once_and_benchmarks_by_cohort_value(con):
    assert (
        con.execute("SELECT count(*) FROM v_metric_trend").fetchall()
        == con.execute("SELECT count(*) FROM published_metrics").fetchall()
    )
    benchmarks = dict(
        con.execute(
            "SELECT cohort_value, benchmark_value FROM v_metric_trend "
            "WHERE metric_id = 'persistent_absence' AND la_code = ? AND period = ? "
            "AND cohort = 'sen_status'",
            [A, P],
        ).fetchall()
    )
    assert benchmarks == {"N": 18.2, "K": 29.9, "E": 34.6, "X": None, "all": None}


def test_children_known_to_several_services_in_the_fixture(con):
    """2024-25: education and health know c01, c02, c03, c14, c19; all three c13 and c18;
    health and care h01 and k01. 2023-24: no child is known to two services."""
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT child_id, period, services, agencies, la_code, sen_provision, sex, "
            "ethnicity_group, known_to_education, known_to_health, known_to_care "
            "FROM v_children_known_to_several_services"
        ).fetchall()
    }
    expected = {"c01", "c02", "c03", "c13", "c14", "c18", "c19", "h01", "k01"}
    assert set(rows) == {child_id(p) for p in expected}
    assert {r[0] for r in rows.values()} == {P}
    assert rows[child_id("c18")] == (
        P,
        3,
        "care, education, health",
        A,
        "E",
        "M",
        "Black",
        True,
        True,
        True,
    )
    assert rows[child_id("k01")][1:5] == (2, "care, health", B, "X")
    assert rows[child_id("c14")][1:3] == (2, "education, health")


def test_published_metrics_by_sen_status_puts_each_groups_published_value_side_by_side(con):
    wide = con.execute("SELECT * FROM v_published_metrics_by_sen_status").df()
    columns = {
        "all": "all_children",
        "N": "no_sen",
        "K": "sen_support",
        "E": "ehc_plan",
        "SEN": "any_sen",
        "X": "not_on_census",
    }
    cells = con.execute(
        "SELECT metric_id, period, la_code, cohort_value, published_value, suppressed "
        "FROM published_metrics WHERE cohort = 'sen_status'"
    ).fetchall()
    rows = wide.set_index(["metric_id", "period", "la_code"])
    assert len(rows) == len({c[:3] for c in cells})
    for metric_id, period, la_code, value, published, _ in cells:
        assert rows.loc[(metric_id, period, la_code), columns[value]] == published
    suppressed = {c[:3] for c in cells if c[5]}
    for key, row in rows.iterrows():
        assert row.any_suppressed == (key in suppressed)
    absence = rows.loc[("persistent_absence", P, A)]
    # census measures have an empty, not-applicable cell for children not on the census
    assert absence.not_on_census == "z" and absence.any_sen is None
