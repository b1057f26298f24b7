"""The pipeline's steps as plain functions, one per Airflow task; DAG files only wire them.

Each step takes a reporting period and JSON-able arguments and returns a JSON-able summary, so
it runs the same from a task, the CLI or a test.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from joinedup.contracts import Period, contract
from joinedup.ingest import (
    ACCEPTED,
    HELD,
    INGESTED,
    QUARANTINE_SCHEMA,
    REJECTED,
    ROW,
    ContractError,
    Delivery,
    LandedFile,
    all_deliveries,
    apply_validation,
    current_deliveries,
    ingest_agency,
    ingest_file,
    previous_delivery,
    save_delivery,
)
from joinedup.settings import AGENCIES, Settings

STAGED_ASSET_PREFIX = "joinedup_staged_"
WAREHOUSE_ASSET = "joinedup_warehouse"


class PeriodError(ValueError):
    """The reporting period of a run could not be determined."""


class DeliveryProblem(RuntimeError):
    """A delivery of the period was rejected or held, so the period cannot be published."""


def resolve_period(conf: Mapping | None, asset_event_extras: Iterable[Mapping] = ()) -> str:
    """The run's period: from the run conf, else the one period all triggering assets carry."""
    if conf and conf.get("period"):
        return Period(str(conf["period"])).label
    periods = {str(extra["period"]) for extra in asset_event_extras if extra.get("period")}
    if len(periods) == 1:
        return Period(periods.pop()).label
    if periods:
        raise PeriodError(f"triggering assets carry different periods {sorted(periods)}")
    raise PeriodError("no period: pass {'period': 'YYYY-YY'} in the run conf")


def period_of_run(context: Mapping) -> str:
    """The period of a running task: its run conf, else its params, else the triggering
    assets' events (asset-triggered runs have no logical date)."""
    events = context.get("triggering_asset_events") or {}
    extras = [event.extra for asset_events in events.values() for event in asset_events]
    return resolve_period(context["dag_run"].conf or context["params"], extras)


def ingest_step(
    agency: str, period: str, settings: Settings | None = None, run_id: str | None = None
) -> list[dict]:
    """Ingest everything an agency landed for the period; returns the delivery records."""
    settings = settings or Settings.from_env()
    return [asdict(d) for d in ingest_agency(settings, agency, period, run_id)]


def validate_step(deliveries: list[dict], settings: Settings | None = None) -> list[dict]:
    """Validate each newly ingested delivery with its suite: quarantine failing rows, hold the
    delivery on a batch failure, record warnings, and update the Data Docs. Raises
    DeliveryProblem naming every rejected or held file."""
    from joinedup.validate import build_data_docs

    settings = settings or Settings.from_env()
    done = []
    for delivery in (Delivery(**item) for item in deliveries):
        if delivery.status == INGESTED:
            previous = previous_delivery(settings.store_dir, delivery)
            delivery = validate_delivery(
                delivery,
                previous_rows=previous.rows_received if previous else None,
                docs_dir=data_docs_dir(settings, delivery.agency),
            )
        done.append(delivery)
    done = record_cross_extract_warnings(done)
    for agency in sorted({d.agency for d in done if d.status != REJECTED}):
        build_data_docs(data_docs_dir(settings, agency))
    raise_for_problems(done)
    return [_summary(d) for d in done]


def validate_delivery(
    delivery: Delivery, previous_rows: int | None = None, docs_dir: Path | None = None
) -> Delivery:
    """Run the extract's suite on a delivery's typed rows and apply the outcome."""
    from joinedup.validate import validate_frame

    typed = pq.read_table(delivery.typed_path).drop_columns([ROW]).to_pandas()
    report = validate_frame(
        typed,
        delivery.extract,
        Period(delivery.period),
        previous_rows=previous_rows,
        docs_dir=docs_dir,
        docs_label=f"{delivery.la_code}_{delivery.delivery_id}",
    )
    return apply_validation(delivery, report)


def data_docs_dir(settings: Settings, agency: str) -> Path:
    """The Great Expectations Data Docs of an agency's validations, every run kept (one context
    per agency, so the agencies' DAGs never write the same one at once)."""
    return settings.work_dir / "data_docs" / agency


def record_cross_extract_warnings(deliveries: list[Delivery]) -> list[Delivery]:
    """Add the warn-level checks across one area's extracts (e.g. census E has a plan record)
    to the failures of the area's census delivery, with delivered row numbers."""
    from joinedup.validate import cross_extract_failures

    by_area: dict[tuple[str, str], dict[str, Delivery]] = defaultdict(dict)
    for d in deliveries:
        if d.status in (ACCEPTED, HELD):
            by_area[(d.period, d.la_code)][d.extract] = d
    updated = {}
    for extracts in by_area.values():
        typed = {name: pq.read_table(d.typed_path) for name, d in extracts.items()}
        frames = {name: t.drop_columns([ROW]).to_pandas() for name, t in typed.items()}
        for failure in cross_extract_failures(frames):
            census = extracts["education_census"]
            rows = typed["education_census"].column(ROW).to_numpy()
            delivered = [int(rows[r - 1]) for r in failure.rows]
            warning = {
                "rule": failure.rule,
                "severity": failure.severity,
                "rows": failure.unexpected_count,
                "detail": f"{failure.rule}: {failure.unexpected_count} census row(s), "
                f"first rows {delivered}",
            }
            if warning["rule"] not in {f["rule"] for f in census.failures}:
                census = replace(census, failures=[*census.failures, warning])
                save_delivery(census)
                updated[census.sha256] = census
    return [updated.get(d.sha256, d) for d in deliveries]


def raise_for_problems(deliveries: Iterable[Delivery]) -> None:
    """Raise one error listing every rejected or held delivery with its reason."""
    problems = [d for d in deliveries if d.status in (REJECTED, HELD)]
    if problems:
        lines = [f"{d.status}: {d.reason}" for d in problems]
        raise DeliveryProblem(
            f"{len(problems)} delivery(ies) cannot be published; the last published "
            "warehouse stays as it was:\n" + "\n".join(lines)
        )


def check_extract(
    path: Path, agency: str, period: str, extract: str | None = None
) -> tuple[Delivery, pd.DataFrame]:
    """What ingest and validation would make of one file, without touching the store: the
    check an agency runs before sending. Returns the delivery record and its quarantine."""
    spec = contract(extract or path.stem)
    if spec.agency != agency:
        raise ContractError(f"{path}: extract {spec.name} is delivered by {spec.agency}")
    with tempfile.TemporaryDirectory(prefix="joinedup-check-") as scratch:
        landed = LandedFile(agency, period, "check", spec.name, path)
        delivery = ingest_file(landed, Path(scratch), ingested_by="joinedup validate")
        if delivery.status == INGESTED:
            delivery = validate_delivery(delivery)
        quarantine = (
            pq.read_table(delivery.quarantine_path).to_pandas()
            if delivery.quarantine_path
            else QUARANTINE_SCHEMA.empty_table().to_pandas()
        )
    return delivery, quarantine


def export_quarantine(
    agency: str, period: str, target: Path, settings: Settings | None = None
) -> int:
    """Write the quarantined rows of an agency's current deliveries for a period to CSV, to send
    back to the agency; returns the number of rows written."""
    settings = settings or Settings.from_env()
    paths = [
        d.quarantine_path
        for d in current_deliveries(settings.store_dir, period)
        if d.agency == agency and d.quarantine_path
    ]
    table = pa.concat_tables(
        [QUARANTINE_SCHEMA.empty_table(), *(pq.read_table(p) for p in paths)]
    ).sort_by([("extract", "ascending"), ("la_code", "ascending"), ("row", "ascending")])
    target.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, target)
    return table.num_rows


def link_step(period: str, settings: Settings | None = None) -> dict:
    """Link every current delivery (all periods) into the child spine, applying the clerical
    decisions; writes the link outputs and review.csv, then moves the id registry on (last, so a
    failed step leaves the ids as they were). Returns where the outputs are and their counts."""
    from joinedup.link import link, write_link_result
    from joinedup.link.spine import registry_dir

    settings = settings or Settings.from_env()
    deliveries = _require_all_agencies(current_deliveries(settings.store_dir), period)
    result = link(extract_paths(deliveries), settings, period)
    out_dir = settings.work_dir / period / "link"
    out_dir.mkdir(parents=True, exist_ok=True)
    quality = linkage_counts(result.spine, deliveries)
    (out_dir / "linkage_quality.json").write_text(json.dumps(quality, indent=2))
    write_link_result(result, out_dir, registry_dir(settings))
    return {
        "link_dir": str(out_dir),
        "links": len(result.links),
        "children": int(result.spine.child_id.nunique()),
        "review_pairs": len(result.review),
        "clerical_conflicts": len(result.conflicts),
    }


def build_step(period: str, run_id: str, settings: Settings | None = None) -> dict:
    """Build a new warehouse file from the store and the spine; the published one is untouched."""
    from joinedup.metrics import SourceFile, build_warehouse

    settings = settings or Settings.from_env()
    link_dir = settings.work_dir / period / "link"
    sources: dict[str, list[SourceFile]] = defaultdict(list)
    current = current_deliveries(settings.store_dir)
    raise_for_problems(current)
    for d in current:
        sources[d.extract].append(
            SourceFile(Path(d.stored_path), d.period, d.la_code, d.delivery_id)
        )
    build_path = settings.warehouse_path.parent / f".build-{safe_run_id(run_id)}.duckdb"
    build_path.parent.mkdir(parents=True, exist_ok=True)
    build_path.unlink(missing_ok=True)
    counts = build_warehouse(
        build_path,
        dict(sources),
        link_dir / "spine.parquet",
        link_dir / "links.parquet",
        run_id=run_id,
        linkage_quality=json.loads((link_dir / "linkage_quality.json").read_text()),
        settings=settings,
        delivery_records=[asdict(d) for d in all_deliveries(settings.store_dir)],
        record_linkage=link_dir / "record_linkage.parquet",
        truth_pairs=synthetic_truth_pairs(settings, link_dir),
    )
    return {"build_path": str(build_path), "row_counts": counts}


def synthetic_truth_pairs(settings: Settings, link_dir: Path) -> Path | None:
    """On synthetic data, the true pairs of every period in one file in the link dir (the spine
    links all current deliveries, whatever their period); None where there is no truth."""
    from joinedup.link.evaluate import TRUTH_PAIRS_FILE

    found = sorted(settings.truth_dir.glob(f"*/{TRUTH_PAIRS_FILE}"))
    if not found:
        return None
    target = link_dir / TRUTH_PAIRS_FILE
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in found]), target)
    return target


def publish_step(build_path: str, settings: Settings | None = None) -> str:
    """Swap the built warehouse in atomically; returns the published path."""
    from joinedup.publish import publish

    settings = settings or Settings.from_env()
    return str(publish(Path(build_path), settings.warehouse_path))


def report_step(period: str, settings: Settings | None = None) -> list[str]:
    """Render one outcome report per area from the published warehouse."""
    from joinedup.report import render_reports

    settings = settings or Settings.from_env()
    return [str(p) for p in render_reports(settings.warehouse_path, settings.reports_dir, period)]


def extract_paths(deliveries: Iterable[Delivery]) -> dict[str, list[Path]]:
    """Stored Parquet paths of the deliveries, by extract."""
    paths: dict[str, list[Path]] = defaultdict(list)
    for d in deliveries:
        paths[d.extract].append(Path(d.stored_path))
    return dict(paths)


def linkage_counts(spine: pd.DataFrame, deliveries: Iterable[Delivery]) -> list[dict]:
    """Per period, agency pair and area: person records on each side and how many link across."""
    keys = spine[["agency", "person_token", "child_id"]]
    records = _delivered_records(deliveries).merge(keys, on=["agency", "person_token"])
    rows = []
    for (period, la_code), area in records.groupby(["period", "la_code"]):
        for i, left in enumerate(AGENCIES):
            for right in AGENCIES[i + 1 :]:
                left_side = area[area.agency == left]
                right_side = area[area.agency == right]
                rows.append(
                    {
                        "period": period,
                        "agency_pair": f"{left}-{right}",
                        "la_code": la_code,
                        "records_l": len(left_side),
                        "records_r": len(right_side),
                        "links": int(left_side.child_id.isin(right_side.child_id).sum()),
                    }
                )
    return rows


def safe_run_id(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def _delivered_records(deliveries: Iterable[Delivery]) -> pd.DataFrame:
    """Agency, person_token, period and la_code of every person record in the deliveries."""
    frames = [
        pq.read_table(d.stored_path, columns=["person_token"])
        .to_pandas()
        .assign(agency=d.agency, period=d.period, la_code=d.la_code)
        for d in deliveries
    ]
    return pd.concat(frames).drop_duplicates()


def _require_all_agencies(deliveries: list[Delivery], period: str) -> list[Delivery]:
    """The deliveries, once every agency has one for the period and none of them is held."""
    present = {d.agency for d in deliveries if d.period == period}
    missing = [a for a in AGENCIES if a not in present]
    if missing:
        raise PeriodError(f"period {period}: no ingested delivery from {', '.join(missing)}")
    raise_for_problems(deliveries)
    return deliveries


def _summary(delivery: Delivery) -> dict:
    keys = ("extract", "la_code", "status", "rows_received", "rows_accepted", "rows_quarantined")
    return {key: getattr(delivery, key) for key in keys}
