"""Render one self-contained HTML outcome report per area and period from the published warehouse.

Reads the warehouse read-only and only its published tables: `published_metrics`,
`metric_catalogue`, `metric_benchmarks`, `ref_cohort_value` (cohort labels),
`published_linkage_quality` (linkage_quality with its
counts disclosure-controlled), `published_linkage_qa` (the linkage QA of
transforms/70_linkage_qa.sql, disclosure-controlled) and `manifest`; never the restricted
`metric_values`, `linkage_quality` or `linkage_qa`, which hold unrounded small counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from joinedup.contracts import code_lists
from joinedup.publish import open_warehouse
from joinedup.settings import Settings
from joinedup.synth import AREAS

TEMPLATE = "area_report.html.j2"
AREA_NAMES: Mapping[str, str] = {area.la_code: area.name for area in AREAS}

# Cohort values of ratio groups and totals, which ref_cohort_value does not list.
EXTRA_COHORT_LABELS = {
    "SEN": "Any SEN (SEN support or EHC plan)",
    "all": "All",
}
# The breakdowns a report shows, in this order, where a metric lists them (the others, such as
# age band or ethnic group, are in the warehouse for analysts): one table per breakdown.
REPORTED_DIMENSIONS = (
    "sen_status",
    "care_status",
    "service",
    "flow",
    "identifier",
    "agency_pair",
    "agency",
)
DIMENSION_TITLES = {
    "sen_status": "SEN status",
    "care_status": "Social care involvement",
    "service": "Health service",
    "flow": "Referral flow",
    "identifier": "Identifier",
    "agency_pair": "Agencies",
    "agency": "Agency",
}
THEME_TITLES = {
    "education": "Education outcomes",
    "timeliness": "Timeliness of EHC needs assessments and plans",
    "health": "Health outcomes",
    "care": "Social care",
    "integration": "Integration across services",
    "data_quality": "Data quality as an outcome of partnership",
    "activity": "Activity counts",
}
UNIT_SUFFIX = {"percent": "%", "per 100": " per 100", "weeks": " weeks", "ratio": "×"}
DIRECTION = {
    True: "Higher is better",
    False: "Lower is better",
    None: "No better direction: it describes how the services overlap",
}
ACTIVITY_NOTE = "Activity, not an outcome: a count of what services did, shown beside the outcomes"
SUPPRESSION_SYMBOLS = frozenset({"c", "*", "z", "x"})


@dataclass(frozen=True)
class CohortRow:
    """One published cell of a metric, ready to show."""

    cohort_value: str
    label: str
    numerator: str
    denominator: str
    value: str
    suppressed: bool
    benchmark: str


@dataclass(frozen=True)
class LinkageQaRow:
    """One agency's records looked up in another agency (or its own, for duplicates): the
    published figures of group 'all' and the group with the lowest recall."""

    key: str
    label: str
    figures: dict[str, Any]
    worst_group: str


@dataclass(frozen=True)
class CohortTable:
    """One breakdown of a metric: its dimension and its published cells ('all' in the first
    table of the metric only)."""

    dimension: str
    title: str
    rows: list[CohortRow]


@dataclass(frozen=True)
class MetricSection:
    """One metric of an area report: its catalogue entry and its published cells."""

    entry: dict[str, Any]
    direction: str
    benchmark_note: str
    tables: list[CohortTable]


@dataclass(frozen=True)
class ThemeSection:
    """The metrics of one catalogue theme, in catalogue order."""

    theme: str
    title: str
    sections: list[MetricSection]


def render_reports(
    warehouse_path: Path,
    out_dir: Path,
    period: str,
    area_names: Mapping[str, str] = AREA_NAMES,
    settings: Settings | None = None,
    synthetic_data: bool = True,
) -> list[Path]:
    """Write out_dir/<period>/<la_code>.html for every area with published metrics in period."""
    settings = settings or Settings.from_env()
    with open_warehouse(warehouse_path) as con:
        catalogue = read_catalogue(con)
        cohorts = read_cohort_values(con)
        published = read_published(con, period)
        benchmarks = read_benchmarks(con)
        linkage = read_linkage_quality(con, period)
        linkage_qa = read_linkage_qa(con, period)
        quality = read_data_quality(con, period)
        manifest = rows(con, "SELECT run_id, built_at FROM manifest")[0]
    if not published:
        raise ValueError(f"{warehouse_path} has no published metrics for period {period}")
    template = report_environment(settings.templates_dir).get_template(TEMPLATE)
    target_dir = Path(out_dir) / period
    target_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for la_code in sorted({cell["la_code"] for cell in published}):
        html = template.render(
            la_code=la_code,
            area_name=area_names.get(la_code, la_code),
            period=period,
            themes=theme_sections(
                metric_sections(catalogue, published, benchmarks, cohorts, la_code)
            ),
            linkage=[row for row in linkage if row["la_code"] == la_code],
            linkage_qa=linkage_qa_rows([row for row in linkage_qa if row["la_code"] == la_code]),
            quality=[row for row in quality if row["la_code"] == la_code],
            data_docs=data_docs_links(settings, target_dir),
            manifest=manifest,
            synthetic_data=synthetic_data,
        )
        path = target_dir / f"{la_code}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    return written


def report_environment(templates_dir: Path) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["qa_share"] = qa_share
    return environment


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """Query results as dicts."""
    result = con.execute(sql, params or [])
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def read_catalogue(con: duckdb.DuckDBPyConnection) -> list[dict]:
    return rows(con, "SELECT * FROM metric_catalogue")


def read_published(con: duckdb.DuckDBPyConnection, period: str) -> list[dict]:
    """The period's published cells of the breakdowns the reports show."""
    return rows(
        con,
        "SELECT * FROM published_metrics WHERE period = ? AND list_contains(?, cohort)",
        [period, list(REPORTED_DIMENSIONS)],
    )


def read_cohort_values(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict]:
    """Label and display order of every cohort value, by (dimension, value)."""
    found = rows(con, "SELECT cohort, cohort_value, label, sort_order FROM ref_cohort_value")
    return {(r["cohort"], r["cohort_value"]): r for r in found}


def read_benchmarks(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict]:
    """National benchmarks by (metric id, cohort value)."""
    found = rows(con, "SELECT * FROM metric_benchmarks")
    return {(b["metric_id"], b["cohort_value"]): b for b in found}


def read_linkage_quality(con: duckdb.DuckDBPyConnection, period: str) -> list[dict]:
    """Linkage figures of the period (rows without a period apply to every period)."""
    return rows(
        con,
        "SELECT * FROM published_linkage_quality WHERE period = ? OR period IS NULL "
        "ORDER BY la_code, agency_pair",
        [period],
    )


def read_linkage_qa(con: duckdb.DuckDBPyConnection, period: str) -> list[dict]:
    """The published linkage QA of the period, every group."""
    return rows(con, "SELECT * FROM published_linkage_qa WHERE period = ?", [period])


def read_data_quality(con: duckdb.DuckDBPyConnection, period: str) -> list[dict]:
    """Rows received, accepted and quarantined per agency and area in the period."""
    return rows(
        con,
        "SELECT * FROM dq_summary WHERE period = ? ORDER BY la_code, agency",
        [period],
    )


def data_docs_links(settings: Settings, report_dir: Path) -> dict[str, str]:
    """Each agency's Great Expectations Data Docs index, relative to the report."""
    root = settings.work_dir / "data_docs"
    found = sorted(root.glob("*/**/index.html")) if root.exists() else []
    links: dict[str, str] = {}
    for index in found:
        agency = index.relative_to(root).parts[0]
        links.setdefault(agency, os.path.relpath(index, report_dir))
    return links


def cohort_label(cohorts: dict[tuple[str, str], dict], cohort: str, cohort_value: str) -> str:
    found = cohorts.get((cohort, cohort_value))
    return found["label"] if found else EXTRA_COHORT_LABELS.get(cohort_value, cohort_value)


def cohort_sort_key(
    cohorts: dict[tuple[str, str], dict], cohort: str, cohort_value: str
) -> tuple[int, int, str]:
    """ref_cohort_value order; ratio groups (such as SEN) after the listed values; 'all' last."""
    found = cohorts.get((cohort, cohort_value))
    if found:
        return 0, found["sort_order"], cohort_value
    return (2 if cohort_value == "all" else 1), 0, cohort_value


def with_unit(value: str | None, unit: str) -> str:
    """A published value with its unit; suppression symbols and blanks stay as they are."""
    if value is None:
        return ""
    if value in SUPPRESSION_SYMBOLS:
        return value
    return f"{value}{UNIT_SUFFIX.get(unit, ' ' + unit)}"


def qa_share(value: str | None) -> str:
    """A published linkage QA share (percent as text, or a symbol); NULL is not measured."""
    return "not measured" if value is None else with_unit(value, "percent")


def format_benchmark(value: float, unit: str, decimals: int) -> str:
    return with_unit(f"{value:.{decimals}f}", unit)


def benchmark_note(entry: dict, benchmarks: dict[tuple[str, str], dict]) -> str:
    """Where the metric's national benchmark comes from, or that there is none."""
    found = [b for (metric_id, _), b in benchmarks.items() if metric_id == entry["id"]]
    if not found:
        return "No comparable national figure is published."
    return f"England: {found[0]['source']}, {found[0]['year']}."


def metric_sections(
    catalogue: list[dict],
    published: list[dict],
    benchmarks: dict[tuple[str, str], dict],
    cohorts: dict[tuple[str, str], dict],
    la_code: str,
) -> list[MetricSection]:
    """The report's metric sections for one area, in catalogue order (a metric without cells,
    because an extract it needs was not delivered, gets a section without tables)."""
    sections = []
    for entry in catalogue:
        cells = [c for c in published if c["metric_id"] == entry["id"] and c["la_code"] == la_code]
        shown = [d for d in REPORTED_DIMENSIONS if d in entry["cohort_dimensions"]]
        shown.sort(key=entry["cohort_dimensions"].index)
        tables = []
        for dimension in shown:
            found = [
                c
                for c in cells
                if c["cohort"] == dimension and (not tables or c["cohort_value"] != "all")
            ]
            found.sort(key=lambda c: cohort_sort_key(cohorts, c["cohort"], c["cohort_value"]))
            rows_ = [cohort_row(entry, c, benchmarks, cohorts) for c in found]
            if rows_:
                tables.append(CohortTable(dimension, DIMENSION_TITLES[dimension], rows_))
        sections.append(
            MetricSection(
                entry=entry,
                direction=(
                    ACTIVITY_NOTE
                    if entry["activity_or_outcome"] == "activity"
                    else DIRECTION[entry["higher_is_better"]]
                ),
                benchmark_note=benchmark_note(entry, benchmarks),
                tables=tables,
            )
        )
    return sections


def cohort_row(
    entry: dict,
    cell: dict,
    benchmarks: dict[tuple[str, str], dict],
    cohorts: dict[tuple[str, str], dict],
) -> CohortRow:
    """One published cell as a table row, with the national figure for its cohort value."""
    benchmark = benchmarks.get((entry["id"], cell["cohort_value"]))
    return CohortRow(
        cohort_value=cell["cohort_value"],
        label=cohort_label(cohorts, cell["cohort"], cell["cohort_value"]),
        numerator=cell["published_numerator"] or "",
        denominator=cell["published_denominator"] or "",
        value=with_unit(cell["published_value"], entry["unit"]),
        suppressed=cell["suppressed"],
        benchmark=(
            format_benchmark(benchmark["value"], entry["unit"], entry["decimals"])
            if benchmark
            else ""
        ),
    )


def theme_sections(sections: list[MetricSection]) -> list[ThemeSection]:
    """The metric sections grouped by catalogue theme, themes in catalogue order."""
    themes: dict[str, list[MetricSection]] = {}
    for section in sections:
        themes.setdefault(section.entry["theme"], []).append(section)
    return [
        ThemeSection(theme, THEME_TITLES.get(theme, theme), members)
        for theme, members in themes.items()
    ]


QA_SIDE = ("agency_pair", "agency", "other_agency")


def linkage_qa_rows(qa: list[dict]) -> list[LinkageQaRow]:
    """One row per agency pair and side of an area's published linkage QA, pairs of two
    agencies first, each with its worst group."""
    overall = [row for row in qa if row["group_type"] == "all"]
    overall.sort(key=lambda r: (r["agency"] == r["other_agency"], r["agency_pair"], r["agency"]))
    result = []
    for row in overall:
        side = tuple(row[name] for name in QA_SIDE)
        groups = [
            g for g in qa if g["group_type"] != "all" and tuple(g[n] for n in QA_SIDE) == side
        ]
        result.append(
            LinkageQaRow(
                key=f"{row['agency_pair']}:{row['agency']}",
                label=qa_side_label(row["agency"], row["other_agency"]),
                figures=row,
                worst_group=worst_group(groups),
            )
        )
    return result


def qa_side_label(agency: str, other_agency: str) -> str:
    if agency == other_agency:
        return f"{agency} duplicates"
    return f"{agency} records in {other_agency}"


def group_recall(row: dict) -> str | None:
    """A group's published recall: the true one where measured, else the model's estimate."""
    if row["published_true_recall"] is not None:
        return row["published_true_recall"]
    return row["published_recall_estimate"]


def worst_group(groups: list[dict]) -> str:
    """The group with the lowest published recall, as 'label: value%'; groups whose recall is
    withheld or undefined are left out (empty when none is left)."""
    shown = []
    for group in groups:
        recall = group_recall(group)
        if recall is not None and recall not in SUPPRESSION_SYMBOLS:
            shown.append((float(recall), group))
    if not shown:
        return ""
    recall, group = min(shown, key=lambda item: item[0])
    return f"{group_label(group)}: {recall:.2f}%"


def group_label(group: dict) -> str:
    """An ethnic group, a sex or an age band as the report names it."""
    value = group["group_value"]
    if group["group_type"] == "sex":
        return code_lists()["sex"].get(value, value)
    if group["group_type"] == "age_band":
        return f"aged {value}"
    return value
