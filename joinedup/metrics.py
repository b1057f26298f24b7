"""Build the DuckDB warehouse: load the pseudonymised extracts, the child spine and the links,
then run the SQL transforms in `transforms/` that make the star schema and the area metrics.

Python only loads inputs and reference tables and runs the SQL files in file-name order; all
business logic lives in `transforms/*.sql`. Identity tokens are loaded into TEMP tables (kept in
memory, never written to the database file) and dropped by `90_drop_sources.sql`, so the
published file holds `child_id` as its only person key.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from joinedup import __version__
from joinedup.contracts import Contract, Period, code_lists, contract, contracts
from joinedup.dictionary import (
    DESCRIPTIONS_SCHEMA,
    DICTIONARY_FILE,
    apply_comments,
    description_rows,
    read_dictionary,
)
from joinedup.disclosure import suppressed_counts
from joinedup.ingest import DELIVERY_FIELDS, QUARANTINE_SCHEMA
from joinedup.settings import AGENCIES, Settings

CATALOGUE_DIR = "catalogue"
# The catalogue's theme files, read in this order (a missing file is skipped): each theme is
# its own file so that measures of different themes are added without touching one another.
CATALOGUE_THEMES = (
    "education",
    "timeliness",
    "health",
    "care",
    "integration",
    "data_quality",
    "activity",
)
ACADEMIC_YEAR = "academic_year"
FINANCIAL_YEAR = "financial_year"

# Tables of a complete warehouse; publish refuses a build that lacks any of them.
PUBLISHED_TABLES: frozenset[str] = frozenset(
    {
        "ref_period",
        "ref_ethnicity_group",
        "ref_cohort_value",
        "ref_extract",
        "deliveries",
        "metric_catalogue",
        "metric_benchmarks",
        "linkage_quality",
        "published_linkage_quality",
        "dim_child",
        "dim_child_period",
        "fct_attendance",
        "fct_exclusions",
        "fct_ehc_requests",
        "fct_health_referrals",
        "fct_cin_episodes",
        "fct_lac_episodes",
        "fct_service_contact",
        "dq_deliveries",
        "dq_summary",
        "dq_rule_failures",
        "dq_identifier_completeness",
        "quarantine",
        "link_pairs",
        "linkage_qa",
        "published_linkage_qa",
        "linkage_weight_distribution",
        "metric_values",
        "published_metrics",
        "manifest",
        "data_dictionary",
    }
)

# Views of a complete warehouse (transforms/80_views.sql); publish refuses a build without them.
PUBLISHED_VIEWS: frozenset[str] = frozenset(
    {
        "v_metric_trend",
        "v_children_known_to_several_services",
        "v_published_metrics_by_sen_status",
    }
)

# Steps whose logic SQL expresses badly: after the named transform, the function's table is
# loaded as the named TEMP table for the transforms that follow.
PYTHON_STEPS: Mapping[str, tuple[str, Callable[[duckdb.DuckDBPyConnection], pa.Table]]] = {
    "49_disclosure_counts.sql": ("int_suppressed_counts", suppressed_counts),
}

SPINE_COLUMNS = ("agency", "person_token", "child_id")
LINK_COLUMNS = (
    "agency_l",
    "person_token_l",
    "agency_r",
    "person_token_r",
    "match_weight",
    "match_probability",
    "agreement",
    "decided_by",
)
# Optional outputs of the linker: a link dir written before record_linkage.parquet existed, or
# a run on real data (no truth_pairs.parquet), loads them as empty tables (see 70_linkage_qa.sql).
RECORD_LINKAGE_SCHEMA = pa.schema(
    [
        ("agency", pa.string()),
        ("person_token", pa.string()),
        ("other_agency", pa.string()),
        ("candidates", pa.int64()),
        ("match_mass", pa.float64()),
        ("linked", pa.bool_()),
        ("link_weight", pa.float64()),
        ("link_probability", pa.float64()),
    ]
)
TRUTH_PAIRS_SCHEMA = pa.schema(
    [
        ("agency_l", pa.string()),
        ("person_token_l", pa.string()),
        ("agency_r", pa.string()),
        ("person_token_r", pa.string()),
    ]
)
AGENCY_PAIRS_SCHEMA = pa.schema([("agency_l", pa.string()), ("agency_r", pa.string())])

REF_PERIOD_SCHEMA = pa.schema(
    [
        pa.field("period", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("period_start", pa.date32(), nullable=False),
        pa.field("period_end", pa.date32(), nullable=False),
        pa.field("age_reference_date", pa.date32()),
    ]
)
CODE_LISTS_SCHEMA = pa.schema(
    [("code_list", pa.string()), ("code", pa.string()), ("meaning", pa.string())]
)
REF_ETHNICITY_GROUP_SCHEMA = pa.schema(
    [("ethnicity", pa.string()), ("ethnicity_group", pa.string())]
)
REF_EXTRACT_SCHEMA = pa.schema(
    [("extract", pa.string()), ("agency", pa.string()), ("source_return", pa.string())]
)
DELIVERIES_SCHEMA = pa.schema(
    [
        ("extract", pa.string()),
        ("agency", pa.string()),
        ("period", pa.string()),
        ("la_code", pa.string()),
        ("delivery_id", pa.string()),
    ]
)
LINKAGE_QUALITY_SCHEMA = pa.schema(
    [
        ("agency_pair", pa.string()),
        ("la_code", pa.string()),
        ("period", pa.string()),
        ("records_l", pa.int64()),
        ("records_r", pa.int64()),
        ("links", pa.int64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
    ]
)
METRIC_CATALOGUE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("definition", pa.string()),
        ("numerator", pa.string()),
        ("denominator", pa.string()),
        ("unit", pa.string()),
        ("decimals", pa.int32()),
        ("statistic", pa.string()),
        ("cohort_dimensions", pa.list_(pa.string())),
        ("higher_is_better", pa.bool_()),
        ("disclosure_rule", pa.string()),
        ("source_agencies", pa.list_(pa.string())),
        ("needs_linked_data", pa.bool_()),
        ("activity_or_outcome", pa.string()),
        ("period_kinds", pa.list_(pa.string())),
        ("source_extracts", pa.list_(pa.string())),
        ("theme", pa.string()),
        ("per", pa.float64()),
        (
            "ratio",
            pa.struct(
                [
                    ("of", pa.string()),
                    ("reference", pa.string()),
                    (
                        "groups",
                        pa.list_(
                            pa.struct([("value", pa.string()), ("members", pa.list_(pa.string()))])
                        ),
                    ),
                ]
            ),
        ),
    ]
)
# Catalogue fields an entry may leave out (null): the others are required. `theme` is not
# written in an entry: read_catalogue sets it to the name of the entry's theme file.
OPTIONAL_CATALOGUE_FIELDS = frozenset({"benchmark", "per", "ratio", "theme"})
METRIC_BENCHMARKS_SCHEMA = pa.schema(
    [
        ("metric_id", pa.string()),
        ("cohort", pa.string()),
        ("cohort_value", pa.string()),
        ("value", pa.float64()),
        ("source", pa.string()),
        ("year", pa.string()),
    ]
)
DQ_DELIVERIES_SCHEMA = pa.schema(
    [
        *DELIVERY_FIELDS,
        ("received_at", pa.string()),
        ("ingested_by", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("rows_received", pa.int64()),
        ("rows_accepted", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("is_current", pa.bool_()),
    ]
)
VALIDATION_FAILURES_SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("rows", pa.int64()),
    ]
)
MANIFEST_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("built_at", pa.timestamp("us", tz="UTC")),
        ("periods", pa.list_(pa.string())),
        ("table_rows", pa.map_(pa.string(), pa.int64())),
        ("joinedup_version", pa.string()),
        ("published_at", pa.timestamp("us", tz="UTC")),  # set by joinedup.publish
    ]
)


@dataclass(frozen=True)
class SourceFile:
    """One ingested pseudonymised extract file, delivered for one period and area."""

    path: Path
    period: str
    la_code: str
    delivery_id: str


class TransformError(RuntimeError):
    """A SQL transform failed; the message names the file."""


def build_warehouse(
    db_path: Path,
    sources: Mapping[str, Sequence[SourceFile]],
    spine: Path,
    links: Path,
    run_id: str,
    linkage_quality: list[dict] | pd.DataFrame | None = None,
    settings: Settings | None = None,
    delivery_records: Sequence[Mapping[str, Any]] = (),
    record_linkage: Path | None = None,
    truth_pairs: Path | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, int]:
    """Build a new warehouse file at db_path and return its row count per table.

    timings, when given, receives the seconds each step took (loading, each transform file and
    its Python step, comments, manifest), in the order they ran: the build's profile.

    record_linkage and truth_pairs are the linker's optional outputs (record_linkage.parquet,
    and truth_pairs.parquet on synthetic data); None or a path that does not exist loads them
    empty, and the linkage QA tables then have no rows (no record_linkage) or NULL true
    precision and recall (no truth_pairs).

    delivery_records are the store's records of every delivery (history included, as
    joinedup.ingest writes them); those whose delivery_id is among the sources are current,
    and their quarantined rows make the `quarantine` table.

    db_path must not exist. On any failure the partial file is removed and the error re-raised,
    so a failed build never leaves anything a publisher could pick up.
    """
    settings = settings or Settings.from_env()
    db_path = Path(db_path)
    if db_path.exists():
        raise FileExistsError(f"{db_path} exists: build_warehouse writes a new file only")
    check_sources(sources)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with duckdb.connect(str(db_path)) as con:
            with timed(timings, "load reference tables"):
                load_reference_tables(con, sources, linkage_quality, settings.transforms_dir)
            with timed(timings, "load sources"):
                load_sources(con, sources, spine, links)
            with timed(timings, "load linkage outputs and data quality"):
                load_linkage_outputs(con, record_linkage, truth_pairs)
                load_data_quality(con, sources, delivery_records)
            run_transforms(con, settings.transforms_dir, timings)
            with timed(timings, "comments, manifest, checkpoint"):
                apply_comments(con)
                write_manifest(con, run_id, source_periods(sources))
                counts = table_row_counts(con)
                con.execute("CHECKPOINT")
        return counts
    except BaseException:
        remove_database(db_path)
        raise


@contextmanager
def timed(timings: dict[str, float] | None, step: str) -> Iterator[None]:
    """Add the seconds the block takes to timings[step] (nothing when timings is None)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[step] = timings.get(step, 0.0) + time.perf_counter() - started


def check_sources(sources: Mapping[str, Sequence[SourceFile]]) -> None:
    """Refuse unknown extracts, bad periods and two deliveries of one extract, period and area."""
    unknown = set(sources) - set(contracts())
    if unknown:
        raise ValueError(f"unknown extract(s) {sorted(unknown)}; expected {sorted(contracts())}")
    for name, files in sources.items():
        seen: set[tuple[str, str]] = set()
        for source in files:
            Period(source.period)
            key = (source.period, source.la_code)
            if key in seen:
                raise ValueError(
                    f"{name}: more than one delivery for period {source.period} and area "
                    f"{source.la_code}; pass only the current delivery"
                )
            seen.add(key)


def source_periods(sources: Mapping[str, Sequence[SourceFile]]) -> list[str]:
    """The periods the sources deliver, in order: the periods metrics are computed for."""
    return sorted({f.period for files in sources.values() for f in files})


def load_reference_tables(
    con: duckdb.DuckDBPyConnection,
    sources: Mapping[str, Sequence[SourceFile]],
    linkage_quality: list[dict] | pd.DataFrame | None,
    transforms_dir: Path,
) -> None:
    """Load the small tables the transforms read and the warehouse keeps, the empty manifest
    (filled by write_manifest once the transforms ran; created first so that the data dictionary
    describes it) and the table descriptions (TEMP src_dictionary)."""
    load_table(con, "ref_period", period_rows(source_periods(sources)), REF_PERIOD_SCHEMA)
    load_arrow(
        con,
        "src_code_lists",
        pa.Table.from_pylist(code_list_rows(), schema=CODE_LISTS_SCHEMA),
        temp=True,
    )
    groups = code_lists()["ethnicity_group"]
    load_table(
        con,
        "ref_ethnicity_group",
        [{"ethnicity": code, "ethnicity_group": group} for code, group in groups.items()],
        REF_ETHNICITY_GROUP_SCHEMA,
    )
    load_table(con, "ref_extract", extract_rows(), REF_EXTRACT_SCHEMA)
    load_table(con, "deliveries", delivery_rows(sources), DELIVERIES_SCHEMA)
    catalogue = read_catalogue(transforms_dir / CATALOGUE_DIR)
    load_table(con, "metric_catalogue", catalogue_rows(catalogue), METRIC_CATALOGUE_SCHEMA)
    load_table(con, "metric_benchmarks", benchmark_rows(catalogue), METRIC_BENCHMARKS_SCHEMA)
    if isinstance(linkage_quality, pd.DataFrame):
        linkage_quality = linkage_quality.to_dict("records")
    load_table(con, "linkage_quality", list(linkage_quality or []), LINKAGE_QUALITY_SCHEMA)
    load_table(con, "manifest", [], MANIFEST_SCHEMA)
    dictionary = read_dictionary(transforms_dir / DICTIONARY_FILE)
    load_arrow(
        con,
        "src_dictionary",
        pa.Table.from_pylist(description_rows(dictionary), schema=DESCRIPTIONS_SCHEMA),
        temp=True,
    )


def load_data_quality(
    con: duckdb.DuckDBPyConnection,
    sources: Mapping[str, Sequence[SourceFile]],
    delivery_records: Sequence[Mapping[str, Any]],
) -> None:
    """Every delivery's status and row accounting, its validation failures (TEMP, summarised
    by 60_data_quality.sql) and the quarantined rows of the current deliveries."""
    current = {f.delivery_id for files in sources.values() for f in files}
    rows, failures, quarantine_files = [], [], []
    for record in delivery_records:
        delivery_id = record["sha256"][:16]
        rows.append(
            {
                **{name: record.get(name) for name in DQ_DELIVERIES_SCHEMA.names},
                "delivery_id": delivery_id,
                "file": Path(record["source_path"]).name,
                "is_current": delivery_id in current,
            }
        )
        failures += [
            {"delivery_id": delivery_id, **{k: f.get(k) for k in ("rule", "severity", "rows")}}
            for f in record.get("failures", [])
            if f.get("severity") != "row"
        ]
        if delivery_id in current and record.get("quarantine_path"):
            quarantine_files.append(record["quarantine_path"])
    load_table(con, "dq_deliveries", rows, DQ_DELIVERIES_SCHEMA)
    load_arrow(
        con,
        "src_validation_failures",
        pa.Table.from_pylist(failures, VALIDATION_FAILURES_SCHEMA),
        temp=True,
    )
    load_arrow(con, "quarantine", QUARANTINE_SCHEMA.empty_table())
    for path in quarantine_files:
        con.execute("INSERT INTO quarantine BY NAME SELECT * FROM read_parquet(?)", [path])


def period_rows(periods: Iterable[str]) -> list[dict[str, Any]]:
    """Each academic year's bounds and the 31 August before it (the date ages are taken at),
    then each financial year (1 April to 31 March) that the academic years cover whole."""
    rows = []
    for label in periods:
        period = Period(label)
        rows.append(
            {
                "period": label,
                "kind": ACADEMIC_YEAR,
                "period_start": period.start,
                "period_end": period.end,
                "age_reference_date": period.start - timedelta(days=1),
            }
        )
    return rows + financial_year_rows(periods)


def financial_year_rows(academic_years: Iterable[str]) -> list[dict[str, Any]]:
    """The financial years lying wholly inside the given academic years: FY2024-25 (1 April
    2024 to 31 March 2025) needs 2023-24 and 2024-25. Labelled 'FY' + the academic-style label."""
    starts = {Period(label).start.year for label in academic_years}
    rows = []
    for year in sorted(starts):
        if year - 1 in starts:
            rows.append(
                {
                    "period": f"FY{year}-{(year + 1) % 100:02d}",
                    "kind": FINANCIAL_YEAR,
                    "period_start": date(year, 4, 1),
                    "period_end": date(year + 1, 3, 31),
                    "age_reference_date": None,
                }
            )
    return rows


def code_list_rows() -> list[dict[str, str]]:
    """Every code of schemas/codes.json, for the cohort values of 21_cohorts.sql."""
    return [
        {"code_list": name, "code": code, "meaning": meaning}
        for name, codes in code_lists().items()
        if isinstance(codes, Mapping)
        for code, meaning in codes.items()
    ]


def extract_rows() -> list[dict[str, str]]:
    """Every extract contract with its agency: the extracts each area is expected to deliver."""
    return [
        {"extract": name, "agency": c.agency, "source_return": c.source_return}
        for name, c in sorted(contracts().items())
    ]


def delivery_rows(sources: Mapping[str, Sequence[SourceFile]]) -> list[dict[str, str]]:
    return [
        {
            "extract": name,
            "agency": contract(name).agency,
            "period": f.period,
            "la_code": f.la_code,
            "delivery_id": f.delivery_id,
        }
        for name, files in sorted(sources.items())
        for f in files
    ]


def catalogue_files(catalogue_dir: Path) -> list[Path]:
    """The catalogue's theme files that exist, in CATALOGUE_THEMES order."""
    paths = [Path(catalogue_dir) / f"{theme}.json" for theme in CATALOGUE_THEMES]
    return [path for path in paths if path.exists()]


def read_catalogue(catalogue_dir: Path) -> list[dict[str, Any]]:
    """The metric catalogue: the entries of every theme file, in theme order, each with its
    `theme` (the file's name); one entry per metric id across all files, each with every
    required field."""
    files = catalogue_files(catalogue_dir)
    if not files:
        raise FileNotFoundError(f"no catalogue theme files in {catalogue_dir}")
    entries = [
        {**entry, "theme": path.stem}
        for path in files
        for entry in json.loads(path.read_text(encoding="utf-8"))
    ]
    ids = [entry["id"] for entry in entries]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{catalogue_dir}: metric ids repeat: {repeated}")
    required = set(METRIC_CATALOGUE_SCHEMA.names) - OPTIONAL_CATALOGUE_FIELDS
    for entry in entries:
        missing = sorted(required - set(entry))
        if missing:
            raise ValueError(f"{catalogue_dir}: metric {entry['id']} lacks {missing}")
    return entries


def catalogue_rows(catalogue: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Catalogue entries as metric_catalogue rows (benchmarks go to metric_benchmarks)."""
    return [
        {name: catalogue_value(entry, name) for name in METRIC_CATALOGUE_SCHEMA.names}
        for entry in catalogue
    ]


def catalogue_value(entry: Mapping[str, Any], name: str) -> Any:
    """One field of a catalogue entry as loaded: a ratio's groups object (value -> member
    values) becomes a list of {value, members}."""
    value = entry.get(name)
    if name == "ratio" and value is not None:
        groups = [{"value": k, "members": v} for k, v in value["groups"].items()]
        return {**value, "groups": groups}
    return value


def benchmark_rows(catalogue: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per metric and cohort value with a national benchmark.

    A benchmark value is either one number (for cohort value 'all') or an object of numbers by
    cohort value (e.g. {"E": 34.6, "K": 29.9, "N": 18.2}).
    """
    rows = []
    for entry in catalogue:
        benchmark = entry.get("benchmark")
        if not benchmark:
            continue
        values = benchmark["value"]
        if not isinstance(values, Mapping):
            values = {"all": values}
        for cohort_value, value in values.items():
            rows.append(
                {
                    "metric_id": entry["id"],
                    "cohort": entry["cohort_dimensions"][0],
                    "cohort_value": cohort_value,
                    "value": float(value),
                    "source": benchmark["source"],
                    "year": str(benchmark["year"]),
                }
            )
    return rows


def load_sources(
    con: duckdb.DuckDBPyConnection,
    sources: Mapping[str, Sequence[SourceFile]],
    spine: Path,
    links: Path,
) -> None:
    """Load every extract's warehouse columns (source_columns) into TEMP table src_<extract>
    (plus period, delivery_id), the spine into src_spine and the links into src_links. Extracts
    with no file get an empty table."""
    for name, extract in contracts().items():
        schema = extract.pseudonymised_schema()
        columns = source_columns(extract)
        empty = pa.schema([schema.field(column) for column in columns]).empty_table()
        empty = empty.append_column("period", pa.array([], pa.string()))
        empty = empty.append_column("delivery_id", pa.array([], pa.string()))
        load_arrow(con, f"src_{name}", empty, temp=True)
        column_list = ", ".join(columns)
        for source in sources.get(name, ()):
            check_file_columns(source.path, schema.names)
            con.execute(
                f"INSERT INTO src_{name} BY NAME "
                f"SELECT {column_list}, ? AS period, ? AS delivery_id FROM read_parquet(?)",
                [source.period, source.delivery_id, str(source.path)],
            )
    load_parquet_columns(con, "src_spine", spine, SPINE_COLUMNS)
    load_parquet_columns(con, "src_links", links, LINK_COLUMNS)


def source_columns(extract: Contract) -> list[str]:
    """The columns of an extract the warehouse reads: all but its match keys (the tokens and
    encodings only the linker compares), keeping person_token, the record key the spine maps
    to a child. Parquet reads only these, so the Bloom encodings never reach memory."""
    sensitive = extract.sensitive_columns - {"person_token"}
    return [name for name in extract.pseudonymised_schema().names if name not in sensitive]


def load_linkage_outputs(
    con: duckdb.DuckDBPyConnection, record_linkage: Path | None, truth_pairs: Path | None
) -> None:
    """Load the linker's per-record figures into src_record_linkage, the true pairs into
    src_truth_pairs (each empty when its file is absent) and the agency pairs into
    src_agency_pairs, for 70_linkage_qa.sql."""
    load_optional_parquet(con, "src_record_linkage", record_linkage, RECORD_LINKAGE_SCHEMA)
    load_optional_parquet(con, "src_truth_pairs", truth_pairs, TRUTH_PAIRS_SCHEMA)
    load_arrow(
        con,
        "src_agency_pairs",
        pa.Table.from_pylist(agency_pair_rows(), schema=AGENCY_PAIRS_SCHEMA),
        temp=True,
    )


def agency_pair_rows() -> list[dict[str, str]]:
    """Every pair of agencies the linker links, each agency with itself too (duplicates), in
    the linker's orientation: AGENCIES order, as joinedup.link.records.AGENCY_PAIRS (not
    imported here: importing joinedup.link loads recordlinkage)."""
    return [
        {"agency_l": left, "agency_r": right}
        for left, right in itertools.combinations_with_replacement(AGENCIES, 2)
    ]


def load_optional_parquet(
    con: duckdb.DuckDBPyConnection, table: str, path: Path | None, schema: pa.Schema
) -> None:
    """Load a Parquet file's schema columns into a TEMP table; empty when there is no file."""
    load_arrow(con, table, schema.empty_table(), temp=True)
    if path is not None and Path(path).exists():
        check_file_columns(Path(path), schema.names, exact=False)
        column_list = ", ".join(schema.names)
        con.execute(f"INSERT INTO {table} SELECT {column_list} FROM read_parquet(?)", [str(path)])


def check_file_columns(path: Path, expected: Sequence[str], exact: bool = True) -> None:
    """Refuse a Parquet file that lacks an expected column (or, when exact, has another)."""
    found = set(pq.read_schema(path).names)
    missing = sorted(set(expected) - found)
    extra = sorted(found - set(expected)) if exact else []
    if missing or extra:
        raise ValueError(
            f"{path}: columns differ from those expected: missing {missing}, extra {extra}"
        )


def load_parquet_columns(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, columns: Sequence[str]
) -> None:
    """Load the named columns of a Parquet file into a TEMP table."""
    check_file_columns(path, columns, exact=False)
    column_list = ", ".join(columns)
    con.execute(
        f"CREATE TEMP TABLE {table} AS SELECT {column_list} FROM read_parquet(?)", [str(path)]
    )


def load_table(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> None:
    """Load Python rows into a new warehouse table with the given schema."""
    load_arrow(con, table, pa.Table.from_pylist(rows, schema=schema))


def load_arrow(
    con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, temp: bool = False
) -> None:
    view = f"_arrow_{table}"
    con.register(view, data)
    try:
        con.execute(f"CREATE {'TEMP ' if temp else ''}TABLE {table} AS SELECT * FROM {view}")
    finally:
        con.unregister(view)


def transform_files(transforms_dir: Path) -> list[Path]:
    """The SQL transforms, in the order they run (file name)."""
    return sorted(Path(transforms_dir).glob("*.sql"))


def run_transforms(
    con: duckdb.DuckDBPyConnection,
    transforms_dir: Path,
    timings: dict[str, float] | None = None,
) -> None:
    """Execute every transforms/*.sql file in file-name order, each followed by its Python step
    (PYTHON_STEPS) if it has one; timings (see build_warehouse) gets the seconds of each."""
    files = transform_files(transforms_dir)
    if not files:
        raise TransformError(f"no SQL transforms in {transforms_dir}")
    for path in files:
        with timed(timings, path.name):
            try:
                con.execute(path.read_text(encoding="utf-8"))
            except duckdb.Error as error:
                raise TransformError(f"{path.name}: {error}") from error
        if path.name in PYTHON_STEPS:
            table, step = PYTHON_STEPS[path.name]
            with timed(timings, f"{step.__name__} (after {path.name})"):
                load_arrow(con, table, step(con), temp=True)


def table_row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every persistent table of the warehouse."""
    names = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT temporary ORDER BY table_name"
        ).fetchall()
    ]
    counts = {}
    for name in names:
        # fetchall, not fetchone: DuckDB 2.0 refuses register() while a result is unfinished.
        counts[name] = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
    return counts


def write_manifest(con: duckdb.DuckDBPyConnection, run_id: str, periods: list[str]) -> None:
    """Record what this build is in the (empty) manifest table: run id, periods, row counts of
    every table, build time; published_at stays NULL until joinedup.publish sets it."""
    counts = table_row_counts(con)
    counts["manifest"] = 1
    row = {
        "run_id": run_id,
        "built_at": datetime.now(UTC),
        "periods": periods,
        "table_rows": list(counts.items()),
        "joinedup_version": __version__,
        "published_at": None,
    }
    view = "_arrow_manifest_row"
    con.register(view, pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA))
    try:
        con.execute(f"INSERT INTO manifest SELECT * FROM {view}")
    finally:
        con.unregister(view)


def database_files(db_path: Path) -> list[Path]:
    """The database file and the files DuckDB keeps beside it (write-ahead log, temp dir)."""
    return [
        db_path,
        db_path.with_name(db_path.name + ".wal"),
        db_path.with_name(db_path.name + ".tmp"),
    ]


def remove_database(db_path: Path) -> None:
    """Delete a database file and its companions, if present."""
    for path in database_files(db_path):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
