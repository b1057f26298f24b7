"""Tests of joinedup.report: one self-contained HTML page per area, showing only
disclosure-controlled figures from the published warehouse."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from joinedup.metrics import build_warehouse
from joinedup.publish import open_warehouse, publish
from joinedup.report import REPORTED_DIMENSIONS, render_reports, worst_group
from tests.test_metrics import A, B, P, build_fixture_warehouse, write_fixture_inputs


@dataclass(frozen=True)
class Rendered:
    warehouse: Path
    out_dir: Path
    paths: list[Path]

    def html(self, la_code: str) -> str:
        return (self.out_dir / P / f"{la_code}.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("report")
    warehouse = root / "warehouse" / "joinedup.duckdb"
    build_fixture_warehouse(root / "build.duckdb", root)
    publish(root / "build.duckdb", warehouse)
    out_dir = root / "reports"
    return Rendered(warehouse, out_dir, render_reports(warehouse, out_dir, P))


class TableRows(HTMLParser):
    """Cell texts of the report's table rows, keyed by their data attributes: metric rows by
    (metric id, cohort value), linkage rows by ("linkage", agency pair), linkage QA rows by
    ("linkage_qa", "agency pair:agency")."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], list[str]] = {}
        self._key: tuple[str, str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-metric" in found:
            self._key = (found["data-metric"], found["data-cohort"])
        elif tag == "tr" and "data-linkage" in found:
            self._key = ("linkage", found["data-linkage"])
        elif tag == "tr" and "data-linkage-qa" in found:
            self._key = ("linkage_qa", found["data-linkage-qa"])
        elif tag in ("td", "th") and self._key:
            self._cell = []
            return
        else:
            return
        self.rows[self._key] = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._key:
            self.rows[self._key].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._key = None


def table_rows(html: str) -> dict[tuple[str, str], list[str]]:
    parser = TableRows()
    parser.feed(html)
    return parser.rows


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with open_warehouse(warehouse) as con:
        return con.execute(sql, params or []).fetchall()


def test_one_file_per_area_named_by_la_code(rendered):
    assert sorted(p.name for p in rendered.paths) == [f"{A}.html", f"{B}.html"]
    assert all(p.parent == rendered.out_dir / P for p in rendered.paths)


def test_title_names_the_area_from_the_synthetic_areas(rendered):
    assert "<title>Riverside (E09000099)" in rendered.html(A)
    assert "<title>Shirehampton (E10000099)" in rendered.html(B)


def test_every_metric_title_and_definition_appears_in_every_report(rendered):
    entries = query(rendered.warehouse, "SELECT title, definition FROM metric_catalogue")
    for la_code in (A, B):
        html = unescape(rendered.html(la_code))
        for title, definition in entries:
            assert title in html, (la_code, title)
            assert definition.split(",")[0] in html, (la_code, title)


def test_table_cells_show_exactly_the_published_figures(rendered):
    """Each row shows the published numerator and denominator, and the value with its unit:
    one table per breakdown the report shows, the total ('all') in the metric's first."""
    published = query(
        rendered.warehouse,
        "SELECT DISTINCT metric_id, cohort_value, published_numerator, published_denominator, "
        "published_value FROM published_metrics WHERE la_code = ? AND period = ? "
        "AND list_contains(?, cohort)",
        [A, P, list(REPORTED_DIMENSIONS)],
    )
    rows = {
        k: v
        for k, v in table_rows(rendered.html(A)).items()
        if k[0] not in ("linkage", "linkage_qa")
    }
    assert set(rows) == {(m, c) for m, c, *_ in published}
    for metric, cohort, numerator, denominator, value in published:
        _, shown_numerator, shown_denominator, shown_value, _ = rows[(metric, cohort)]
        assert shown_numerator == (numerator or "")
        assert shown_denominator == (denominator or "")
        assert shown_value.startswith(value), (metric, cohort, shown_value)


SMALL_COUNT_LIMIT = {"dfe": 4, "nhs": 7}


def test_suppressed_cells_show_no_raw_small_counts(rendered):
    """No suppressed cell shows a raw count below its rule's threshold (DfE 1-4, NHS 1-7)."""
    suppressed = query(
        rendered.warehouse,
        "SELECT v.metric_id, v.cohort_value, v.numerator, v.denominator, p.disclosure_rule "
        "FROM published_metrics p JOIN metric_values v "
        "USING (metric_id, period, la_code, cohort, cohort_value) "
        "WHERE p.suppressed AND p.la_code = ? AND p.period = ? AND v.unit <> 'ratio' "
        "AND p.cohort = 'sen_status'",
        [A, P],
    )
    assert len(suppressed) > 10
    rows = table_rows(rendered.html(A))
    for metric, cohort, numerator, denominator, rule in suppressed:
        figures = rows[(metric, cohort)][1:4]
        limit = SMALL_COUNT_LIMIT[rule]
        small = {f"{n:.0f}" for n in (numerator, denominator) if n and 0 < n <= limit}
        assert not small & set(figures), (metric, cohort, figures, small)
    assert rows[("known_to_services_1", "K")][1:4] == ["*", "*", "*"]
    assert rows[("persistent_absence", "N")][1:4] == ["c", "11", "c"]


def test_benchmarks_direction_and_units_are_shown(rendered):
    html = rendered.html(A)
    rows = table_rows(html)
    assert rows[("ehcp_issued_within_20_weeks", "all")][4] == "45.9%"
    assert rows[("persistent_absence", "E")][4] == "34.6%"
    assert rows[("suspension_rate", "all")][4] == "11.31 per 100"
    assert rows[("suspension_rate", "all")][3] == "25.00 per 100"
    assert rows[("referral_to_first_contact_weeks_median", "all")][3] == "4.5 weeks"
    assert "England: DfE, Education, health and care plans, England 2025, 2024." in html
    assert "Lower is better" in html and "Higher is better" in html


def test_caveats_cover_synthetic_data_disclosure_and_linkage(rendered):
    """Linkage counts are disclosure-controlled too (21 -> 20, 10 -> 10, 5 links -> *)."""
    html = rendered.html(A)
    assert "Synthetic data." in html
    assert "Secondary suppression: some larger figures are withheld too" in html
    linkage = table_rows(html)[("linkage", "education-health")]
    assert linkage == ["education-health", "20", "10", "*", "98.0%", "95.0%"]
    assert "No linkage quality figures" in rendered.html(B)


def test_reports_load_nothing_from_the_network(rendered):
    for path in rendered.paths:
        html = path.read_text(encoding="utf-8")
        for external in ("http://", "https://", "<script", "<link", "src=", "@import"):
            assert external not in html, (path.name, external)


def test_reports_need_only_the_published_tables(rendered, tmp_path):
    """Dropping the restricted tables changes nothing in the reports."""
    copy = tmp_path / "published-only.duckdb"
    shutil.copy(rendered.warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        for restricted in (
            "metric_values",
            "linkage_quality",
            "linkage_qa",
            "linkage_weight_distribution",
        ):
            con.execute(f"DROP TABLE {restricted}")
    paths = render_reports(copy, tmp_path / "out", P)
    assert [p.read_text() for p in paths] == [p.read_text() for p in rendered.paths]


def test_area_names_can_be_given(rendered, tmp_path):
    paths = render_reports(rendered.warehouse, tmp_path, P, area_names={A: "Testborough"})
    assert "<title>Testborough (E09000099)" in paths[0].read_text()
    assert "<title>E10000099 (E10000099)" in paths[1].read_text()


def test_a_metric_without_data_says_so(rendered):
    """B delivered no SEN2: its 20-week section explains the gap instead of showing a table."""
    html = rendered.html(B)
    section = html[html.index('id="ehcp_issued_within_20_weeks"') :]
    section = section[: section.index("</section>")]
    assert "was not delivered" in section and "<table" not in section


def test_a_period_without_metrics_is_an_error(rendered, tmp_path):
    with pytest.raises(ValueError, match="no published metrics for period 2019-20"):
        render_reports(rendered.warehouse, tmp_path, "2019-20")


QA_SHARES = (
    "published_linkage_rate",
    "published_precision_estimate",
    "published_recall_estimate",
    "published_true_precision",
    "published_true_recall",
)


def shown_share(value: str | None) -> str:
    if value is None:
        return "not measured"
    return value if value in ("*", "z") else f"{value}%"


@pytest.mark.parametrize("la_code", [A, B])
def test_linkage_qa_rows_show_the_published_figures(rendered, la_code):
    """One row per agency pair and side with the area's published counts and shares (group
    'all'); pairs of two agencies come before duplicates within one agency."""
    published = query(
        rendered.warehouse,
        "SELECT agency_pair || ':' || agency, published_records, published_candidate_pairs, "
        f"published_linked_records, {', '.join(QA_SHARES)} FROM published_linkage_qa "
        "WHERE la_code = ? AND period = ? AND group_type = 'all'",
        [la_code, P],
    )
    rows = table_rows(rendered.html(la_code))
    shown = [key for kind, key in rows if kind == "linkage_qa"]
    assert sorted(shown) == sorted(row[0] for row in published) and published
    pair_sides = [key.split(":")[0] for key in shown]
    within = [p.split("-")[0] == p.split("-")[1] for p in pair_sides]
    assert within == sorted(within)
    for key, records, candidates, linked, *shares in published:
        cells = rows[("linkage_qa", key)]
        assert cells[1:4] == [records, candidates, linked], key
        assert cells[4:9] == [shown_share(v) for v in shares], key


def qa_group(group_type: str, value: str, true_recall: str | None, estimate: str) -> dict:
    return {
        "group_type": group_type,
        "group_value": value,
        "published_true_recall": true_recall,
        "published_recall_estimate": estimate,
    }


def test_worst_group_is_the_lowest_shown_recall():
    """True recall is preferred to the estimate; withheld ('*') and undefined ('z') recalls are
    left out; the group is named as the report names it."""
    groups = [
        qa_group("ethnicity_group", "Asian", "99.10", "99.90"),
        qa_group("ethnicity_group", "Black", "*", "10.00"),
        qa_group("sex", "F", "98.75", "99.99"),
        qa_group("age_band", "16-19", "z", "z"),
    ]
    assert worst_group(groups) == "Female: 98.75%"
    estimated = [qa_group("age_band", "5-10", None, "97.00"), qa_group("sex", "M", None, "98")]
    assert worst_group(estimated) == "aged 5-10: 97.00%"
    assert worst_group([qa_group("sex", "M", "*", "*")]) == ""


def test_report_says_when_no_linkage_checks_were_made(tmp_path):
    """A warehouse built from a link dir without record_linkage.parquet still renders."""
    inputs = write_fixture_inputs(tmp_path)
    build = tmp_path / "b.duckdb"
    build_warehouse(build, inputs.sources, inputs.spine, inputs.links, "run-x")
    html = render_reports(build, tmp_path / "out", P)[0].read_text(encoding="utf-8")
    assert "No linkage quality checks were made" in html
    assert 'data-linkage-qa="' not in html
