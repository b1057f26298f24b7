"""Benchmark: ingest and validate a large pseudonymised health_referrals extract.

Fabricates a valid pseudonymised extract (vectorised; identities shared by the referrals of one
child, realistic nulls), with a small share of bad rows spread over four row rules, writes it as
CSV and as Parquet, then measures in a fresh process per stage (so each peak RSS is that
stage's own):

- `joinedup.ingest.ingest_file` on the CSV and on the Parquet delivery;
- `joinedup.validate.validate_frame` on the typed rows ingest wrote, keeping the result for
  the Data Docs, with the time spent inside Great Expectations (`get_batch`, which fingerprints
  the frame, and `Batch.validate`) and the rest (row failures, redaction, report, Data Docs);
- the same suite checked with plain pandas boolean masks (`reference_failures`, the reference
  tool), on the same frame; the failing-row counts of both must agree rule by rule.

    .venv/bin/python benchmarks/ingest_validate.py --rows 1000000 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from results import replace_section, run_stage, section_header

from joinedup.contracts import Period, contract
from joinedup.settings import Settings

EXTRACT = "health_referrals"
AGENCY = "health"
PERIOD = Period("2024-25")
LA_CODE = "E09000099"
REFERRALS_PER_CHILD = 2.5
SERVICES = ("SLT", "OT", "PHYSIO", "PAEDS", "CAMHS")
REFERRAL_SOURCES = ("GP", "SCH", "SELF", "HV", "ACUTE", "SC", "OTH")
DISTRICTS = ("LS6", "BD1", "HX3", "WF10", "YO1", "M14", "SW1A", "E1W")
ETHNICITIES = ("WBRI", "WOTH", "MWBC", "AIND", "APKN", "BAFR", "CHNE", "OOTH")
MISSING = {"nhs": 0.03, "postcode": 0.02, "ethnicity": 0.08}
DISCHARGED = 0.4
BAD_RULES = (  # the rules the injected bad rows break, one in turn
    "codes:service",
    "not_after_period_end:discharge_date",
    "age_0_25:birth_ym",
    "range:contacts_dna",
)
MIB = 1024 * 1024

RESULTS_HEADING = "# Ingest and validation throughput"


# --- the extract ----------------------------------------------------------------------------


def hex_strings(rng: np.random.Generator, count: int, chars: int) -> pa.Array:
    """`count` random lower-case hex strings of `chars` characters, vectorised."""
    raw = rng.bytes(count * chars // 2).hex().encode()
    return pa.array(np.frombuffer(raw, dtype=f"S{chars}")).cast(pa.string())


def with_nulls(values: pa.Array, rng: np.random.Generator, share: float) -> pa.Array:
    return masked(values, rng.random(len(values)) < share)


def masked(values: pa.Array, missing: np.ndarray) -> pa.Array:
    """values with nulls where `missing`."""
    return pa.array(values.to_numpy(zero_copy_only=False), type=values.type, mask=missing)


def identities(rng: np.random.Generator, children: int, bloom_bits: int) -> dict[str, pa.Array]:
    """One pseudonymised identity per child: tokens, Bloom filters and clear fields."""
    tokens = {name: hex_strings(rng, children, 64) for name in _token_columns()}
    nhs_missing = rng.random(children) < MISSING["nhs"]
    months = rng.integers(0, 18 * 12, children)  # born 2006-09 .. 2024-08: aged 0-17
    return {
        **tokens,
        "nhs_token": masked(tokens["nhs_token"], nhs_missing),
        "nhs_status": pa.array(np.where(nhs_missing, "missing", "valid")),
        # one 16-hex-digit token per position (10) and per adjacent pair of positions (9)
        "nhs_near_tokens": masked(hex_strings(rng, children, 16 * 10), nhs_missing),
        "nhs_near2_tokens": masked(hex_strings(rng, children, 16 * 9), nhs_missing),
        "address_bloom": hex_strings(rng, children, bloom_bits // 4),
        "forename_bloom": hex_strings(rng, children, bloom_bits // 4),
        "surname_bloom": hex_strings(rng, children, bloom_bits // 4),
        "birth_ym": pa.array([f"{2006 + (m + 8) // 12}-{(m + 8) % 12 + 1:02d}" for m in months]),
        "sex": pa.array(rng.choice(["M", "F", "U"], children, p=[0.51, 0.485, 0.005])),
        "postcode_token": with_nulls(tokens["postcode_token"], rng, MISSING["postcode"]),
        "postcode_sector_token": with_nulls(
            tokens["postcode_sector_token"], rng, MISSING["postcode"]
        ),
        "postcode_district": pa.array(rng.choice(DISTRICTS, children)),
        "ethnicity": with_nulls(
            pa.array(rng.choice(ETHNICITIES, children)), rng, MISSING["ethnicity"]
        ),
    }


def _token_columns() -> list[str]:
    return [c.name for c in contract(EXTRACT).pseudonymised_columns if c.token]


def referrals(rng: np.random.Generator, rows: int) -> dict[str, Any]:
    """The payload of `rows` referrals: services, dates in order, contact counts."""
    start, end = PERIOD.start, PERIOD.end
    received = rng.integers(-365, (end - start).days + 1, rows)
    wait = np.ceil(rng.lognormal(np.log(40), 0.8, rows)).astype(int)
    first = received + wait
    seen = (first <= (end - start).days) & (rng.random(rows) > 0.04)
    discharge = first + np.ceil(rng.exponential(100, rows)).astype(int)
    discharged = seen & (discharge <= (end - start).days) & (rng.random(rows) < DISCHARGED)
    service = rng.choice(SERVICES, rows)
    return {
        "la_code": pa.array(np.full(rows, LA_CODE)),
        "dataset": pa.array(np.where(service == "CAMHS", "MHSDS", "CSDS")),
        "service": pa.array(service),
        "referral_received_date": _dates(start, received),
        "referral_source": pa.array(rng.choice(REFERRAL_SOURCES, rows)),
        "first_attended_contact_date": _dates(start, first, ~seen),
        "discharge_date": _dates(start, discharge, ~discharged),
        "contacts_attended": pa.array(np.where(seen, rng.poisson(6, rows), 0), pa.int32()),
        "contacts_dna": pa.array(np.where(seen, rng.poisson(1, rows), 0), pa.int32()),
    }


def _dates(start: date, days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    epoch = (start - date(1970, 1, 1)).days
    return pa.array((days + epoch).astype(np.int32), pa.date32(), mask=missing)


def fabricate(rows: int, bad_share: float, seed: int = 2024) -> tuple[pa.Table, dict[str, int]]:
    """A pseudonymised extract of `rows` referrals in contract form, and the bad rows by rule."""
    rng = np.random.default_rng(seed)
    spec = contract(EXTRACT)
    children = max(1, round(rows / REFERRALS_PER_CHILD))
    child = pa.array(np.sort(rng.integers(0, children, rows)))
    people = {
        k: v.take(child) for k, v in identities(rng, children, Settings().link.bloom_bits).items()
    }
    columns = {**people, **referrals(rng, rows)}
    frame = pa.table(columns).select(spec.pseudonymised_schema().names).to_pandas()
    frame = _unique_keys(frame, list(spec.key))
    bad = _inject_bad_rows(frame, rng, round(rows * bad_share))
    table = pa.Table.from_pandas(frame, schema=spec.pseudonymised_schema(), preserve_index=False)
    return table, bad


def _unique_keys(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Shift the received date of any repeated (child, service, date) by a day until unique."""
    while (repeated := frame.duplicated(key)).any():
        later = frame.loc[repeated, "referral_received_date"] + timedelta(days=1)
        frame.loc[repeated, "referral_received_date"] = later
    return frame


def _inject_bad_rows(frame: pd.DataFrame, rng: np.random.Generator, count: int) -> dict[str, int]:
    """Break one rule on each of `count` distinct rows, the rules in turn."""
    rows = rng.choice(len(frame), count, replace=False)
    broken: dict[str, int] = {}
    for i, rule in enumerate(BAD_RULES):
        chosen = rows[i :: len(BAD_RULES)]
        if rule == "codes:service":
            frame.loc[chosen, "service"] = "XRAY"
        elif rule == "not_after_period_end:discharge_date":
            chosen = chosen[frame.loc[chosen, "first_attended_contact_date"].notna().to_numpy()]
            frame.loc[chosen, "discharge_date"] = PERIOD.end + timedelta(days=30)
        elif rule == "age_0_25:birth_ym":
            frame.loc[chosen, "birth_ym"] = "1990-01"
        else:
            frame.loc[chosen, "contacts_dna"] = 5000
        broken[rule] = len(chosen)
    return broken


# --- the pandas reference: the committed suite as boolean masks -----------------------------


def reference_failures(df: pd.DataFrame, suite: dict, parameters: dict) -> dict[str, int]:
    """Failing-row count of every expectation of the suite (0 or 1 for table-level ones),
    checked with vectorised pandas alone. Dates are compared as datetime64."""
    dates = [c.name for c in contract(suite["name"]).pseudonymised_columns if c.type == "date"]
    frame = df.assign(**{name: pd.to_datetime(df[name]) for name in dates})
    return {
        e["meta"]["rule"]: _reference_count(frame, e, parameters) for e in suite["expectations"]
    }


def _resolve(value: Any, parameters: dict) -> Any:
    return parameters[value["$PARAMETER"]] if isinstance(value, dict) else value


def _reference_count(frame: pd.DataFrame, expectation: dict, parameters: dict) -> int:
    kind, kw = expectation["type"], expectation["kwargs"]
    if kind == "expect_table_columns_to_match_set":
        return int(set(frame.columns) != set(kw["column_set"]))
    if kind == "expect_table_row_count_to_be_between":
        low, high = _resolve(kw["min_value"], parameters), _resolve(kw["max_value"], parameters)
        return int(len(frame) < (low or 0) or (high is not None and len(frame) > high))
    applies = _condition(frame, kw.get("row_condition"))
    if kind == "expect_compound_columns_to_be_unique":
        return int((frame.duplicated(kw["column_list"], keep=False) & applies).sum())
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = frame[kw["column_A"]], frame[kw["column_B"]]
        return int((a.notna() & b.notna() & (a < b)).sum())
    values = frame[kw["column"]]
    present = values.notna() & applies
    if kind == "expect_column_values_to_not_be_null":
        missing = int((values.isna() & applies).sum())
        return missing if missing > (1 - kw.get("mostly", 1)) * int(applies.sum()) else 0
    if kind == "expect_column_values_to_be_null":
        return int(present.sum())
    if kind == "expect_column_values_to_be_in_set":
        return int((present & ~values.isin(_resolve(kw["value_set"], parameters))).sum())
    if kind == "expect_column_values_to_match_regex":
        matched = values.str.contains(kw["regex"], regex=True, na=True)
        return int((present & ~matched.astype(bool)).sum())
    if kind == "expect_column_values_to_be_unique":
        return int((present & values.duplicated(keep=False)).sum())
    if kind == "expect_column_values_to_be_between":
        low, high = (
            _bound(_resolve(kw.get(k), parameters), values) for k in ("min_value", "max_value")
        )
        outside = (values < low if low is not None else False) | (
            values > high if high is not None else False
        )
        return int((present & outside).sum())
    raise ValueError(f"no pandas reference for {kind}")


def _bound(value: Any, values: pd.Series) -> Any:
    """An ISO date bound as a Timestamp when the column holds dates."""
    if isinstance(value, str) and pd.api.types.is_datetime64_any_dtype(values):
        return pd.Timestamp(value)
    return value


def _condition(frame: pd.DataFrame, condition: dict | None) -> pd.Series:
    """The rows a serialised GX row condition selects."""
    if condition is None:
        return pd.Series(True, index=frame.index)
    kind = condition["type"]
    if kind == "comparison":
        return frame[condition["column"]["name"]].isin(condition["parameter"])
    if kind == "nullity":
        present = frame[condition["column"]["name"]].notna()
        return ~present if condition["is_null"] else present
    if kind == "and":
        selected = pd.Series(True, index=frame.index)
        for part in condition["conditions"]:
            selected &= _condition(frame, part)
        return selected
    if kind == "pass_through":
        return frame.eval(condition["pass_through_filter"]).fillna(False).astype(bool)
    raise ValueError(f"no pandas reference for row condition {kind}")


# --- stages, each run in a fresh process ----------------------------------------------------


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak) in MiB."""
    line = next(
        x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field)
    )
    return int(line.split()[1]) * 1024 / MIB


def rss_mib() -> float:
    """The resident memory of this process now."""
    return _status_mib("VmRSS")


def reset_peak_rss() -> None:
    """Start measuring the peak resident memory afresh (Linux: clear_refs 5 resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """The peak resident memory since the last reset_peak_rss."""
    return _status_mib("VmHWM")


def stage_ingest(path: Path, store: Path, la_code: str) -> dict[str, Any]:
    from joinedup.ingest import LandedFile, ingest_file

    baseline = rss_mib()
    reset_peak_rss()
    started = time.perf_counter()
    delivery = ingest_file(LandedFile(AGENCY, PERIOD.label, la_code, EXTRACT, path), store, "bench")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "baseline_mib": baseline,
        "status": delivery.status,
        "rows": delivery.rows_received,
        "typed_path": delivery.typed_path,
    }


def _typed_frame(typed_path: str) -> pd.DataFrame:
    from joinedup.ingest import ROW

    return pq.read_table(typed_path).drop_columns([ROW]).to_pandas()


def stage_validate(typed_path: str, docs_dir: str | None) -> dict[str, Any]:
    from joinedup import validate

    started = time.perf_counter()
    validate._import_gx()
    validate._batch_definition()
    if docs_dir:
        validate._docs_context(Path(docs_dir))
    gx_import = time.perf_counter() - started
    inside_gx = _time_gx_validation()
    keeping_docs = _time_calls(validate, "_keep_for_docs")
    started = time.perf_counter()
    df = _typed_frame(typed_path)
    load = time.perf_counter() - started
    baseline = rss_mib()
    reset_peak_rss()
    started = time.perf_counter()
    report = validate.validate_frame(
        df, EXTRACT, PERIOD, docs_dir=Path(docs_dir) if docs_dir else None
    )
    seconds = time.perf_counter() - started
    counts = {f.rule: f.unexpected_count for f in report.failed}
    docs_seconds = None
    if docs_dir:
        started = time.perf_counter()
        validate.build_data_docs(Path(docs_dir))
        docs_seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "gx_seconds": inside_gx[0][0] + inside_gx[1][0],
        "gx_batch_seconds": inside_gx[0][0],
        "docs_result_seconds": keeping_docs[0],
        "gx_import_seconds": gx_import,
        "load_seconds": load,
        "docs_index_seconds": docs_seconds,
        "peak_mib": peak_rss_mib(),
        "baseline_mib": baseline,
        "rows": report.rows,
        "row_failures": len(report.row_failures),
        "failed": counts,
    }


def _time_gx_validation() -> tuple[list[float], list[float]]:
    """Accumulate the seconds spent in GX from now on: making the batch (GX fingerprints the
    whole frame) and validating it (one-element lists)."""
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.datasource.fluent.interfaces import Batch

    return _time_calls(BatchDefinition, "get_batch"), _time_calls(Batch, "validate")


def _time_calls(owner: Any, name: str) -> list[float]:
    """Wrap owner.name to accumulate the seconds spent in it (a one-element list)."""
    spent = [0.0]
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    setattr(owner, name, timed)
    return spent


def stage_reference(typed_path: str) -> dict[str, Any]:
    from joinedup import validate

    suite = json.loads((Settings().expectations_dir / f"{EXTRACT}.json").read_text())
    parameters = validate.suite_parameters(PERIOD)
    df = _typed_frame(typed_path)
    baseline = rss_mib()
    reset_peak_rss()
    started = time.perf_counter()
    counts = reference_failures(df, suite, parameters)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "baseline_mib": baseline,
        "rows": len(df),
        "failed": {rule: n for rule, n in counts.items() if n},
    }


# --- the report -----------------------------------------------------------------------------


def results_table(rows: int, figures: dict[str, dict[str, Any]]) -> list[str]:
    """The measurements as a markdown table."""
    ingest_csv, ingest_parquet = figures["ingest_csv"], figures["ingest_parquet"]
    valid, ref = figures["validate"], figures["reference"]

    def line(what: str, seconds: float, stage: dict | None = None, note: str = "") -> str:
        shown = f"{stage['peak_mib']:,.0f} ({stage['baseline_mib']:,.0f})" if stage else "-"
        return f"| {what} | {seconds:,.1f} | {rows / seconds:,.0f} | {shown} | {note} |"

    def part(what: str, seconds: float) -> str:
        return f"| {what} | {seconds:,.1f} | - | - | {seconds / valid['seconds']:.0%} of it |"

    def once(what: str, seconds: float | None) -> str:
        return f"| {what} | {seconds or 0:,.1f} | - | - | once per process / run |"

    return [
        "| stage | seconds | rows/s | peak RSS MiB (before) | note |",
        "|---|---:|---:|---:|---|",
        line("ingest_file, CSV", ingest_csv["seconds"], ingest_csv, ingest_csv["status"]),
        line(
            "ingest_file, Parquet",
            ingest_parquet["seconds"],
            ingest_parquet,
            ingest_parquet["status"],
        ),
        line("load typed rows to pandas", valid["load_seconds"]),
        line(
            "validate_frame (with Data Docs)",
            valid["seconds"],
            valid,
            f"{valid['row_failures']:,} row failures",
        ),
        part("of which Great Expectations (get_batch + validate)", valid["gx_seconds"]),
        part("of which GX get_batch (fingerprints the whole frame)", valid["gx_batch_seconds"]),
        part("of which keeping the result for Data Docs", valid["docs_result_seconds"]),
        line(
            "total, CSV: ingest + load + validate",
            ingest_csv["seconds"] + valid["load_seconds"] + valid["seconds"],
        ),
        line(
            "total, Parquet: ingest + load + validate",
            ingest_parquet["seconds"] + valid["load_seconds"] + valid["seconds"],
        ),
        line(
            "reference: the same suite as pandas masks",
            ref["seconds"],
            ref,
            f"validate_frame / reference = {valid['seconds'] / ref['seconds']:.1f}x; "
            f"GX alone / reference = {valid['gx_seconds'] / ref['seconds']:.1f}x",
        ),
        once(
            "import GX, set up its contexts (ephemeral and Data Docs)", valid["gx_import_seconds"]
        ),
        once("Data Docs: suite pages and index (build_data_docs)", valid["docs_index_seconds"]),
    ]


def write_results(
    target: Path, command: str, rows: int, bad: dict[str, int], figures: dict
) -> None:
    """RESULTS.md: when, how, on what machine, the extract and the table."""
    sizes = figures["sizes"]
    gx_counts, reference_counts = figures["validate"]["failed"], figures["reference"]["failed"]
    agree = "yes" if gx_counts == reference_counts else "NO"
    text = [
        *section_header(
            RESULTS_HEADING, command, f"pandas {pd.__version__}, pyarrow {pa.__version__}"
        ),
        f"Extract: {rows:,} fabricated pseudonymised `{EXTRACT}` rows (~{REFERRALS_PER_CHILD} "
        "referrals per child; 12 HMAC tokens and two 1024-bit Bloom filters per row), bad rows "
        f"injected: {', '.join(f'{r} {n}' for r, n in bad.items())}. "
        f"CSV {sizes['csv_mib']:,.0f} MiB, Parquet {sizes['parquet_mib']:,.0f} MiB.",
        "",
        *results_table(rows, figures),
        "",
        "Each stage runs in a fresh process. Peak RSS is the resident high-water mark during "
        "the stage's call alone (reset through /proc/self/clear_refs just before it); in "
        "brackets the resident memory just before the call (interpreter, imports and, for "
        "validation and the reference, the extract loaded as a pandas frame).",
        f"GX and the pandas reference agree on every failing rule's row count: {agree} "
        f"({json.dumps(gx_counts, sort_keys=True)}).",
        "",
        "Notes. Validation time is almost all Great Expectations: its regex expectations run "
        "`str.contains` row by row over the 12 token and 2 Bloom-filter columns, and before "
        "validating, `get_batch` hashes the whole frame (pandas `hash_pandas_object` + MD5, a "
        "batch fingerprint GX always computes). joinedup's own part (row failures, redaction, "
        "report) and keeping the result for the Data Docs are small: they grow with the "
        "failing rows, not with the extract. GX's import and context set-up is paid once per "
        "process (each Airflow task). The CSV ingest is slower than the Parquet one because "
        "every column arrives as text and is parsed and typed.",
        "",
    ]
    replace_section(target, RESULTS_HEADING, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-share", type=float, default=0.001)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory")
    parser.add_argument("--results", type=Path, default=None, help="write RESULTS.md here")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_run_named_stage(args.stage), default=str))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="joinedup-bench-"))
    figures = measure(args.rows, args.bad_share, work)
    print("\n".join(results_table(args.rows, figures)))
    print(json.dumps({k: figures[k]["failed"] for k in ("validate", "reference")}, indent=1))
    if args.results:
        command = shlex.join([".venv/bin/python", *sys.argv])
        write_results(args.results, command, args.rows, figures["bad"], figures)


def _run_named_stage(stage: list[str]) -> dict[str, Any]:
    name, *rest = stage
    if name == "ingest":
        return stage_ingest(Path(rest[0]), Path(rest[1]), rest[2])
    if name == "validate":
        return stage_validate(rest[0], rest[1] if len(rest) > 1 else None)
    if name == "reference":
        return stage_reference(rest[0])
    raise ValueError(f"unknown stage {name}")


def measure(rows: int, bad_share: float, work: Path) -> dict[str, Any]:
    """Fabricate the extract, then run every stage; returns the figures."""
    started = time.perf_counter()
    table, bad = fabricate(rows, bad_share)
    csv_path = work / "landing" / "csv" / f"{EXTRACT}.csv"
    parquet_path = work / "landing" / "parquet" / f"{EXTRACT}.parquet"
    for path in (csv_path, parquet_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    del table
    print(f"fabricated {rows:,} rows in {time.perf_counter() - started:.1f}s: bad rows {bad}")
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)  # ingest of a stored file is a no-op
    shutil.rmtree(work / "gx", ignore_errors=True)
    figures: dict[str, Any] = {"bad": bad}
    figures["sizes"] = {
        "csv_mib": csv_path.stat().st_size / MIB,
        "parquet_mib": parquet_path.stat().st_size / MIB,
    }
    figures["ingest_csv"] = run_stage(__file__, "ingest", str(csv_path), str(store), LA_CODE)
    figures["ingest_parquet"] = run_stage(
        __file__, "ingest", str(parquet_path), str(store), LA_CODE
    )
    typed = figures["ingest_parquet"]["typed_path"]
    figures["validate"] = run_stage(__file__, "validate", typed, str(work / "gx"))
    figures["reference"] = run_stage(__file__, "reference", typed)
    return figures


if __name__ == "__main__":
    main()
