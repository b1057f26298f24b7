"""Benchmark: build the whole warehouse (every metric) for a population of ~1M children known to
services, and the same metrics computed by the independent pandas reference.

The input is joinedup's own synthetic population (`joinedup.synth.generate`, no bad rows) at
`--scale` (1.0 = 22,000 children and young people aged 0-25; at the default 84 about 1M of
them are known to at least one agency), pseudonymised at source with joinedup's own code
(`pseudonymise_tree`, a random key drawn for the work directory) and typed by
`joinedup.ingest.ingest_file`, exactly as the pipeline stores it. The child spine is the
synthetic truth (each record's true child), since this measures the metrics, not the linkage;
there are no links, so the linkage QA tables are empty. All of this is made once and cached
under `--work`.

Then, each in a fresh process (so each peak RSS is its own):

- `build`: `joinedup.metrics.build_warehouse` from the stored extracts and the spine: every
  transform (staging, dim_child, facts, all metrics, disclosure control, data quality, linkage
  QA, views, data dictionary) and the manifest, written to a new DuckDB file;
- `reference`: `tests/groundtruth.py`, the independent pandas computation from the raw
  extracts and the truth, for the metrics it covers (EHC plans within 20 weeks, persistent
  absence, suspension rate, known to 1/2/3 services, median referral wait), from reading the
  raw CSVs to the metric cells.

The warehouse's cells are then compared with the reference's. `--runs N` repeats both stages N
times (build, reference, build, ...) and records each run; the build's profile (seconds per
load step, transform file and Python step: build_warehouse's `timings`) is that of its median
run. `--build-only` runs the build alone (no reference, no comparison, nothing recorded), for
iterating on the transforms.

    .venv/bin/python benchmarks/metrics.py --scale 84 --work /tmp/joinedup-metrics \\
        --runs 5 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shlex
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(BENCHMARKS.parent))

from ingest_validate import peak_rss_mib, reset_peak_rss, rss_mib  # noqa: E402
from results import replace_section, run_stage, section_header  # noqa: E402

from joinedup.contracts import contract  # noqa: E402
from joinedup.settings import Settings  # noqa: E402
from joinedup.synth import copy_la_code  # noqa: E402

PERIOD = "2024-25"
SEED = 20241
DEFAULT_SCALE = 84.0
MAX_PART_SCALE = 20.0
TARGET_SECONDS = 60.0
PROFILE_FLOOR_SECONDS = 0.5  # profile steps shorter than this are summed as one line
RESULTS_HEADING = "# Metrics: the whole warehouse build for ~1M children"
PREPARED = "prepared.json"
SPINE_COLUMNS = ("agency", "person_token", "child_id")
LINK_SCHEMA = pa.schema(
    [
        ("agency_l", pa.string()),
        ("person_token_l", pa.string()),
        ("agency_r", pa.string()),
        ("person_token_r", pa.string()),
        ("match_weight", pa.float64()),
        ("match_probability", pa.float64()),
        ("agreement", pa.string()),
        ("decided_by", pa.string()),
    ]
)
SEN_STATUS = ("sen_status",)  # the cohort the comparison reads (metric_values.cohort)


# --- the inputs (made once per work directory) --------------------------------------------


def data_settings(folder: Path) -> Settings:
    """Settings whose data directory is the benchmark's own."""
    return replace(Settings(), data_dir=folder / "data")


def parts_of(scale: float) -> int:
    """How many synthetic populations make up `scale`: `generate` holds at most MAX_PART_SCALE
    (its areas' postcode districts run out above it)."""
    return math.ceil(scale / MAX_PART_SCALE)


def prepare(folder: Path, scale: float, seed: int) -> dict[str, Any]:
    """Synthesise, pseudonymise, type and store the extracts of `parts_of(scale)` populations
    (seeds seed, seed + 1, ...; each with its own key and areas) and write one spine, unless an
    earlier run already did (prepared.json); returns what was made and how long it took."""
    marker = folder / PREPARED
    if marker.exists():
        return json.loads(marker.read_text())
    parts = parts_of(scale)
    seconds = {"synth": 0.0, "pseudonymise": 0.0, "ingest": 0.0}
    population, rows, sources, spines = 0, 0, [], []
    for part in range(parts):
        made = prepare_part(folder / f"part-{part}", part, scale / parts, seed + part)
        population += made["population"]
        rows += made["rows"]
        sources += made["sources"]
        spines.append(folder / f"part-{part}" / "spine.parquet")
        for step, spent in made["seconds"].items():
            seconds[step] += spent
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in spines]), folder / "spine.parquet")
    pq.write_table(LINK_SCHEMA.empty_table(), folder / "links.parquet")
    prepared = {
        "scale": scale,
        "seed": seed,
        "parts": parts,
        "population": population,
        "rows": rows,
        "sources": sources,
        "seconds": seconds,
    }
    marker.write_text(json.dumps(prepared, indent=1))
    return prepared


def prepare_part(folder: Path, part: int, scale: float, seed: int) -> dict[str, Any]:
    """One synthetic population: raw extracts and truth, pseudonymised, typed and stored with
    its areas relabelled for `part`, and its spine."""
    from joinedup.pseudonymise import pseudonymise_tree
    from joinedup.synth import generate

    folder.mkdir(parents=True, exist_ok=True)
    settings = data_settings(folder)
    key = secrets.token_hex(32).encode()
    (folder / "key").write_bytes(key)
    (folder / "key").chmod(0o600)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    summary = generate(settings, period=PERIOD, seed=seed, scale=scale, bad_row_rate=0.0)
    seconds["synth"] = time.perf_counter() - started
    started = time.perf_counter()
    pseudonymise_tree(settings.raw_dir, settings.landing_dir, key, "parquet")
    seconds["pseudonymise"] = time.perf_counter() - started
    started = time.perf_counter()
    sources = store_extracts(settings, part)
    seconds["ingest"] = time.perf_counter() - started
    write_spine(settings, key, part, folder / "spine.parquet")
    return {
        "population": sum(summary.children.values()),
        "rows": summary.total_rows,
        "sources": sources,
        "seconds": seconds,
    }


def store_extracts(settings: Settings, part: int) -> list[dict[str, str]]:
    """Ingest every landed extract (typing its rows as the pipeline does) and keep its rows in
    the store as the warehouse reads them, in the part's areas; returns the SourceFile fields
    of each."""
    from joinedup.ingest import INGESTED, ROW, LandedFile, ingest_file

    sources = []
    for path in sorted(settings.landing_dir.glob(f"*/{PERIOD}/*/*.parquet")):
        agency, period, la_code = path.relative_to(settings.landing_dir).parts[:3]
        landed = LandedFile(agency, period, la_code, path.stem, path)
        delivery = ingest_file(landed, settings.store_dir)
        if delivery.status != INGESTED or delivery.rows_received != pq.read_metadata(path).num_rows:
            raise RuntimeError(f"{path}: ingest did not type every row: {delivery}")
        schema = contract(path.stem).pseudonymised_schema()
        rows = pq.read_table(delivery.typed_path).drop_columns([ROW]).cast(schema)
        area = copy_la_code(la_code, part)
        index = rows.schema.get_field_index("la_code")
        rows = rows.set_column(index, schema.field(index), pa.array([area] * rows.num_rows))
        stored = Path(delivery.typed_path).with_name(f"{delivery.sha256}.parquet")
        pq.write_table(rows, stored)
        sources.append(
            {
                "extract": path.stem,
                "path": str(stored),
                "period": period,
                "la_code": area,
                "delivery_id": delivery.delivery_id,
            }
        )
    return sources


def write_spine(settings: Settings, key: bytes, part: int, target: Path) -> None:
    """The child spine from the truth: each agency record's person token and its true child."""
    from joinedup.pseudonymise import person_token

    records = pd.read_parquet(settings.truth_dir / PERIOD / "records.parquet")
    tokens = [
        person_token(key, a, i) for a, i in zip(records.agency, records.local_id, strict=True)
    ]
    spine = pd.DataFrame(
        {
            "agency": records.agency,
            "person_token": tokens,
            "child_id": f"child-{part}-" + records.true_id.astype(str),
        }
    )
    spine.to_parquet(target, index=False)


# --- the stages (each in a fresh process) -------------------------------------------------


def stage_build(folder: Path, db_path: Path) -> dict[str, Any]:
    """Build the warehouse from the stored extracts and the spine."""
    from joinedup.metrics import SourceFile, build_warehouse

    prepared = json.loads((folder / PREPARED).read_text())
    sources: dict[str, list[SourceFile]] = {}
    for s in prepared["sources"]:
        source = SourceFile(Path(s["path"]), s["period"], s["la_code"], s["delivery_id"])
        sources.setdefault(s["extract"], []).append(source)
    db_path.unlink(missing_ok=True)
    baseline = rss_mib()
    reset_peak_rss()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    counts = build_warehouse(
        db_path,
        sources,
        folder / "spine.parquet",
        folder / "links.parquet",
        run_id="benchmark",
        settings=data_settings(folder),
        timings=timings,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "baseline_mib": baseline,
        "counts": counts,
        "file_mib": db_path.stat().st_size / 1024**2,
        "timings": timings,
    }


def stage_reference(folder: Path, out: Path) -> dict[str, Any]:
    """The reference metrics of every population from its raw extracts and truth, in the
    populations' relabelled areas; cells written to `out`."""
    from tests import groundtruth as gt

    parts = json.loads((folder / PREPARED).read_text())["parts"]
    baseline = rss_mib()
    reset_peak_rss()
    started = time.perf_counter()
    loading, found = 0.0, []
    for part in range(parts):
        part_folder = folder / f"part-{part}"
        loading -= time.perf_counter()
        truth = gt.load_truth(
            data_settings(part_folder), PERIOD, (part_folder / "key").read_bytes()
        )
        loading += time.perf_counter()
        cells = reference_cells(gt, truth)
        found.append(cells.assign(la_code=[copy_la_code(c, part) for c in cells.la_code]))
        del truth
    seconds = time.perf_counter() - started
    cells = pd.concat(found, ignore_index=True)
    cells.to_parquet(out, index=False)
    return {
        "seconds": seconds,
        "load_seconds": loading,
        "peak_mib": peak_rss_mib(),
        "baseline_mib": baseline,
        "cells": len(cells),
    }


def reference_cells(gt: Any, truth: Any) -> pd.DataFrame:
    """The reference's metric cells of one population (tests/groundtruth.py functions)."""
    frames = [
        gt.ehcp_within_20_weeks(truth).assign(metric_id="ehcp_issued_within_20_weeks"),
        gt.persistent_absence(truth, SEN_STATUS).assign(metric_id="persistent_absence"),
        gt.exclusion_rate(truth, "SUSP", SEN_STATUS).assign(metric_id="suspension_rate"),
    ]
    frames.append(gt.known_to_services(truth))
    frames.append(median_waits(gt.referral_waits(truth)))
    cells = pd.concat(frames, ignore_index=True)
    cells["value"] = [
        v if m == MEDIAN else gt.rate(n, d)
        for m, n, d, v in zip(
            cells.metric_id, cells.numerator, cells.denominator, cells["value"], strict=True
        )
    ]
    return cells[["metric_id", "la_code", "cohort_value", "numerator", "denominator", "value"]]


MEDIAN = "referral_to_first_contact_weeks_median"


def median_waits(waits: pd.DataFrame) -> pd.DataFrame:
    """The median wait in weeks per area and SEN status, and per area ('all')."""
    by_status = waits.groupby(["la_code", "sen_status"]).weeks.agg(["median", "count"])
    by_area = waits.groupby("la_code").weeks.agg(["median", "count"])
    by_area = by_area.assign(sen_status="all").set_index("sen_status", append=True)
    both = pd.concat([by_status, by_area]).reset_index()
    return pd.DataFrame(
        {
            "metric_id": MEDIAN,
            "la_code": both.la_code,
            "cohort_value": both.sen_status,
            "numerator": float("nan"),
            "denominator": both["count"],
            "value": both["median"],
        }
    )


# --- comparison and report ------------------------------------------------------------------


def compare(db_path: Path, reference: Path) -> dict[str, dict[str, int]]:
    """Per metric: reference cells, and how many the warehouse has with equal numerator,
    denominator and value (values within 1e-9)."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        built = con.execute(
            "SELECT metric_id, la_code, cohort_value, numerator, denominator, value "
            "FROM metric_values WHERE period = ? AND cohort = 'sen_status'",
            [PERIOD],
        ).df()
    expected = pd.read_parquet(reference)
    both = expected.merge(
        built, on=["metric_id", "la_code", "cohort_value"], how="left", suffixes=("", "_built")
    )
    numerator = ((both.numerator - both.numerator_built).abs() < 1e-9) | both.numerator.isna()
    denominator = (both.denominator - both.denominator_built).abs() < 1e-9
    value = ((both.value - both.value_built).abs() < 1e-9) | (
        both.value.isna() & both.value_built.isna()
    )
    same = numerator & denominator & value
    both = both.assign(same=same)
    return {
        metric_id: {"cells": len(group), "equal": int(group.same.sum())}
        for metric_id, group in both.groupby("metric_id")
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose build time is the median (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda run: run["build"]["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def runs_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One table row per run: build seconds and peak RSS, reference seconds, their ratio."""
    lines = [
        "| run | build_warehouse s | build peak RSS MiB (before) | reference s "
        "| reference peak RSS MiB | build / reference |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for number, run in enumerate(runs, 1):
        build, reference = run["build"], run["reference"]
        lines.append(
            f"| {number} | {build['seconds']:,.1f} | {build['peak_mib']:,.0f} "
            f"({build['baseline_mib']:,.0f}) | {reference['seconds']:,.1f} | "
            f"{reference['peak_mib']:,.0f} | {build['seconds'] / reference['seconds']:.2f}x |"
        )
    return lines


def profile_lines(timings: dict[str, float]) -> list[str]:
    """The build's steps in the order they ran, those under PROFILE_FLOOR_SECONDS summed."""
    lines = ["| step | seconds |", "|---|---:|"]
    short = [s for s in timings.values() if s < PROFILE_FLOOR_SECONDS]
    for step, seconds in timings.items():
        if seconds >= PROFILE_FLOOR_SECONDS:
            lines.append(f"| {step} | {seconds:,.1f} |")
    lines.append(
        f"| {len(short)} other steps, each under {PROFILE_FLOOR_SECONDS:g} s | {sum(short):,.1f} |"
    )
    return lines


def results_lines(prepared: dict, runs: list[dict[str, Any]], agreement: dict) -> list[str]:
    """The figures as Markdown."""
    seconds = [run["build"]["seconds"] for run in runs]
    within = sum(s < TARGET_SECONDS for s in seconds)
    median = median_run(runs)
    build, reference = median["build"], median["reference"]
    counts = build["counts"]
    children = counts["dim_child"]
    fact_rows = sum(n for table, n in counts.items() if table.startswith("fct_"))
    lines = [
        f"Input: {prepared['parts']} synthetic populations of scale "
        f"{prepared['scale'] / prepared['parts']:g} each (seeds {prepared['seed']} to "
        f"{prepared['seed'] + prepared['parts'] - 1}; `generate` holds at most scale "
        f"{MAX_PART_SCALE:g}), their areas relabelled to {3 * prepared['parts']} distinct areas: "
        f"{prepared['population']:,} children and young people aged 0-25, "
        f"of whom **{children:,} are known to a service** (dim_child rows); "
        f"{prepared['rows']:,} extract rows; {fact_rows:,} fact rows, "
        f"{counts['metric_values']:,} metric cells. Spine = the synthetic truth (no linkage).",
        "",
        f"{len(runs)} consecutive run(s), each stage in a fresh process; build_warehouse makes "
        "every table (all transforms, metrics, disclosure, dictionary, manifest); the reference "
        "is tests/groundtruth.py (pandas), raw CSVs to metric cells:",
        "",
        *runs_lines(runs),
        "",
        f"**Build within the {TARGET_SECONDS:.0f} s target in {within} of {len(runs)} runs** "
        f"(slowest {max(seconds):,.1f} s, median {statistics.median(seconds):,.1f} s; peak RSS "
        f"at most {max(run['build']['peak_mib'] for run in runs):,.0f} MiB). The reference "
        f"covers only the {len(agreement)} metrics it computes; of its time, reading the raw "
        f"extracts and truth (`load_truth`) took {reference['load_seconds']:,.1f} s in the median "
        f"run. Warehouse file {build['file_mib']:,.0f} MiB.",
        "",
        f"Profile of the median run ({build['seconds']:,.1f} s; `build_warehouse(timings=...)`):",
        "",
        *profile_lines(build["timings"]),
        "",
        "Warehouse cells equal to the reference's (numerator, denominator, value), last run: "
        + "; ".join(f"{m} {a['equal']}/{a['cells']}" for m, a in sorted(agreement.items()))
        + ".",
        "",
        "Inputs made once (cached in --work): "
        + ", ".join(f"{k} {v:,.0f} s" for k, v in prepared["seconds"].items())
        + ".",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--work", type=Path, default=Path("/tmp/joinedup-metrics"))
    parser.add_argument("--results", type=Path, default=None, help="write RESULTS.md here")
    parser.add_argument("--runs", type=int, default=1, help="consecutive runs to record")
    parser.add_argument(
        "--build-only", action="store_true", help="run the build only; record nothing"
    )
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        name, folder, target = args.stage
        stage = {"build": stage_build, "reference": stage_reference}[name]
        print(json.dumps(stage(Path(folder), Path(target)), default=str))
        return
    folder = args.work / f"scale-{args.scale:g}-seed-{args.seed}"
    started = time.perf_counter()
    prepared = prepare(folder, args.scale, args.seed)
    print(f"inputs ready in {time.perf_counter() - started:,.0f} s: {prepared['seconds']}")
    db_path = folder / "warehouse.duckdb"
    runs = []
    for _ in range(args.runs):
        build = run_stage(__file__, "build", str(folder), str(db_path))
        print(f"build_warehouse: {build['seconds']:.1f} s, peak {build['peak_mib']:,.0f} MiB")
        if args.build_only:
            print("\n".join(profile_lines(build["timings"])))
            continue
        reference = run_stage(__file__, "reference", str(folder), str(folder / "reference.parquet"))
        print(f"reference: {reference['seconds']:.1f} s, peak {reference['peak_mib']:,.0f} MiB")
        runs.append({"build": build, "reference": reference})
    if args.build_only:
        return
    agreement = compare(db_path, folder / "reference.parquet")
    lines = results_lines(prepared, runs, agreement)
    print("\n".join(lines))
    if args.results:
        command = shlex.join([".venv/bin/python", "benchmarks/metrics.py", *sys.argv[1:]])
        header = section_header(
            RESULTS_HEADING, command, f"duckdb {duckdb.__version__}, pandas {pd.__version__}"
        )
        replace_section(args.results, RESULTS_HEADING, [*header, *lines])


if __name__ == "__main__":
    main()
