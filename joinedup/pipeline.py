"""The pipeline's steps as plain functions, one per Airflow task; DAG files only wire them.

Each step takes a reporting period and JSON-able arguments and returns a JSON-able summary, so
it runs the same from a task, the CLI or a test.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from joinedup.contracts import Period
from joinedup.ingest import Delivery, current_deliveries, ingest_agency
from joinedup.settings import AGENCIES, Settings

STAGED_ASSET_PREFIX = "joinedup_staged_"
WAREHOUSE_ASSET = "joinedup_warehouse"


class PeriodError(ValueError):
    """The reporting period of a run could not be determined."""


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


def ingest_step(agency: str, period: str, settings: Settings | None = None) -> list[dict]:
    """Ingest everything an agency landed for the period; returns the deliveries."""
    settings = settings or Settings.from_env()
    return [asdict(d) for d in ingest_agency(settings, agency, period)]


def validate_step(deliveries: list[dict], settings: Settings | None = None) -> list[dict]:
    """Validate each delivery with its Great Expectations suite; raise if any fails."""
    from joinedup.validate import raise_for_failures, validate_file

    settings = settings or Settings.from_env()
    reports = []
    for item in deliveries:
        delivery = Delivery(**item)
        results_dir = _validation_dir(settings, delivery)
        reports.append(
            validate_file(
                Path(delivery.stored_path), delivery.extract, Period(delivery.period), results_dir
            )
        )
    raise_for_failures(reports)
    return [{"extract": r.extract, "success": r.success, "evaluated": r.evaluated} for r in reports]


def link_step(period: str, settings: Settings | None = None) -> dict:
    """Link every current delivery (all periods) into the child spine; returns where it is."""
    from joinedup.link import link, write_link_result

    settings = settings or Settings.from_env()
    deliveries = _require_all_agencies(current_deliveries(settings.store_dir), period)
    result = link(extract_paths(deliveries), settings)
    out_dir = settings.work_dir / period / "link"
    write_link_result(result, out_dir)
    quality = linkage_counts(result.spine, deliveries)
    (out_dir / "linkage_quality.json").write_text(json.dumps(quality, indent=2))
    return {
        "link_dir": str(out_dir),
        "links": len(result.links),
        "children": int(result.spine.child_id.nunique()),
    }


def build_step(period: str, run_id: str, settings: Settings | None = None) -> dict:
    """Build a new warehouse file from the store and the spine; the published one is untouched."""
    from joinedup.metrics import SourceFile, build_warehouse

    settings = settings or Settings.from_env()
    link_dir = settings.work_dir / period / "link"
    sources: dict[str, list[SourceFile]] = defaultdict(list)
    for d in current_deliveries(settings.store_dir):
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
    )
    return {"build_path": str(build_path), "row_counts": counts}


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
    records = _delivered_records(deliveries).merge(spine, on=["agency", "person_token"])
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
    present = {d.agency for d in deliveries if d.period == period}
    missing = [a for a in AGENCIES if a not in present]
    if missing:
        raise PeriodError(f"period {period}: no ingested delivery from {', '.join(missing)}")
    return deliveries


def _validation_dir(settings: Settings, delivery: Delivery) -> Path:
    return (
        settings.work_dir
        / delivery.period
        / "validation"
        / delivery.agency
        / delivery.la_code
        / delivery.delivery_id
    )
