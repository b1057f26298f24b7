"""Ingest: take a landed extract as delivered, enforce its contract, and lose no row.

The landing zone is `landing/<agency>/<period>/<la_code>/<extract>.(parquet|csv)`; CSV may be
UTF-8 (with or without BOM) or Windows-1252, comma, semicolon, tab or pipe separated, with ISO
or UK dates. Each delivery is stored once, by the SHA-256 of its bytes, under
`store/<agency>/<period>/<la_code>/<extract>/`:

- `<sha>.delivered.<ext>`: the bytes as delivered, never changed;
- `<sha>.typed.parquet`: the rows that parsed, typed to the contract, with `_row`, their
  1-based row number in the delivered file (what `joinedup.validate` checks);
- `<sha>.parquet`: the accepted rows (what linkage and the warehouse read);
- `<sha>.quarantine.parquet`: every rejected row with the rule it broke and its value;
- `<sha>.json`: the delivery record: who, what, when, status and row accounting.

A file-level problem (unreadable, empty, truncated, wrong columns, wrong period) rejects the
delivery with one message; a row-level problem quarantines the row. Every delivered row ends
accepted or quarantined: rows_received = rows_accepted + rows_quarantined.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from joinedup.contracts import Column, Contract, Period, column_mismatch, contract, contracts
from joinedup.pseudonymise import ROW_COLUMN as ROW
from joinedup.pseudonymise import FileRejected, parse_date, read_delimited
from joinedup.settings import Settings

LANDED_SUFFIXES = (".parquet", ".csv")
INGESTED, ACCEPTED, HELD, REJECTED = "ingested", "accepted", "held", "rejected"
REDACTED = "<redacted>"
WRONG_PERIOD_SHARE = 0.5
TRUE_WORDS = ("true", "t", "1", "yes", "y")
FALSE_WORDS = ("false", "f", "0", "no", "n")
# What names a delivery in the warehouse's data-quality and quarantine tables.
DELIVERY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("delivery_id", pa.string()),
    ("agency", pa.string()),
    ("period", pa.string()),
    ("la_code", pa.string()),
    ("extract", pa.string()),
    ("file", pa.string()),
)
QUARANTINE_SCHEMA = pa.schema(
    [
        *DELIVERY_FIELDS,
        ("row", pa.int64()),
        ("rule", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
        ("quarantined_at", pa.string()),
    ]
)


class ContractError(ValueError):
    """A delivered file does not meet its contract; the message names the file and the rule."""


@dataclass(frozen=True)
class LandedFile:
    """A file an agency dropped into the landing zone."""

    agency: str
    period: str
    la_code: str
    extract: str
    path: Path


@dataclass(frozen=True)
class Delivery:
    """One delivery: where its copies are, its status and its row accounting."""

    agency: str
    period: str
    la_code: str
    extract: str
    sha256: str
    source_path: str
    delivered_path: str
    received_at: str
    ingested_by: str
    status: str
    reason: str | None = None
    rows_received: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    typed_path: str | None = None
    stored_path: str | None = None
    quarantine_path: str | None = None
    failures: list[dict] = field(default_factory=list)

    @property
    def delivery_id(self) -> str:
        return self.sha256[:16]

    @property
    def record_path(self) -> Path:
        return Path(self.delivered_path).with_name(f"{self.sha256}.json")


def find_landed(landing_dir: Path, agency: str, period: str) -> list[LandedFile]:
    """Every extract file landed for one agency and period, across areas."""
    Period(period)
    known = {c.name for c in contracts().values() if c.agency == agency}
    found: list[LandedFile] = []
    for path in sorted((landing_dir / agency / period).glob("*/*")):
        if path.suffix not in LANDED_SUFFIXES:
            continue
        if path.stem not in known:
            raise ContractError(
                f"{path}: unknown extract {path.stem!r} for {agency}; "
                f"expected one of {sorted(known)}"
            )
        found.append(LandedFile(agency, period, path.parent.name, path.stem, path))
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ingest_file(landed: LandedFile, store_dir: Path, ingested_by: str | None = None) -> Delivery:
    """Store a landed file once and type its rows; rejected or quarantined, nothing is lost."""
    digest = sha256_of(landed.path)
    folder = store_dir / landed.agency / landed.period / landed.la_code / landed.extract
    record = folder / f"{digest}.json"
    if record.exists():
        return load_delivery(record)
    folder.mkdir(parents=True, exist_ok=True)
    delivered = folder / f"{digest}.delivered{landed.path.suffix}"
    _copy_atomically(landed.path, delivered)
    delivery = Delivery(
        agency=landed.agency,
        period=landed.period,
        la_code=landed.la_code,
        extract=landed.extract,
        sha256=digest,
        source_path=str(landed.path),
        delivered_path=str(delivered),
        received_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        ingested_by=ingested_by or getpass.getuser(),
        status=INGESTED,
    )
    try:
        delivery = _type_rows(delivery, contract(landed.extract), delivered)
    except (FileRejected, ContractError) as problem:
        reason = problem.reason if isinstance(problem, FileRejected) else str(problem)
        delivery = replace(delivery, status=REJECTED, reason=f"{landed.path}: {reason}")
    save_delivery(delivery)
    return delivery


def ingest_agency(
    settings: Settings, agency: str, period: str, ingested_by: str | None = None
) -> list[Delivery]:
    """Ingest everything one agency landed for a period (rejections included, not raised)."""
    landed = find_landed(settings.landing_dir, agency, period)
    if not landed:
        raise ContractError(f"{settings.landing_dir / agency / period}: nothing landed")
    return [ingest_file(item, settings.store_dir, ingested_by) for item in landed]


def read_delivered(path: Path, spec: Contract) -> tuple[pa.Table, list]:
    """A delivered file as text columns with `_row` numbers, and its structural row problems."""
    if path.stat().st_size == 0:
        raise FileRejected(path, "empty: the file has 0 bytes")
    if path.suffix.endswith("csv"):
        table, problems = read_delimited(path)
    else:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise FileRejected(
                path, "not a readable Parquet file: truncated, or not Parquet at all"
            ) from error
        table = table.rename_columns([n.strip().lower() for n in table.column_names])
        table = table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1)))
        problems = []
    _check_columns([n for n in table.column_names if n != ROW], spec)
    if table.num_rows == 0 and not problems:
        raise FileRejected(path, "empty: no data rows")
    return table, problems


def typed_column(values: pa.Array, column: Column) -> tuple[pa.Array, np.ndarray]:
    """The column typed to the contract, and a mask of values present but not parseable."""
    target = column.arrow_type
    if values.type == target:
        return values, np.zeros(len(values), dtype=bool)
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    if column.type == "date":
        parsed, bad = parse_date(text)
        return parsed, np.asarray(bad, dtype=bool)
    if column.type == "bool":
        lowered = pc.utf8_lower(text)
        parsed = pc.if_else(
            pc.is_in(lowered, pa.array(TRUE_WORDS)),
            True,
            pc.if_else(pc.is_in(lowered, pa.array(FALSE_WORDS)), False, None),
        )
    elif column.type == "int32":
        whole = pc.match_substring_regex(text, r"^[+-]?\d{1,9}$")
        parsed = pc.if_else(whole, text, None).cast(pa.int32())
    else:
        parsed = text.cast(target)
    bad = present & ~pc.is_valid(parsed).to_numpy(zero_copy_only=False)
    return parsed, bad


def quarantine_rows(
    delivery: Delivery, rows: np.ndarray, rule: str, column: str | None, values: list
) -> pa.Table:
    """Quarantine records of one rule; values of token and Bloom columns are redacted."""
    shown = [None if v is None else str(v) for v in values]
    if column in contract(delivery.extract).sensitive_columns:
        shown = [REDACTED if v is not None else None for v in shown]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    n = len(rows)
    return pa.table(
        {
            "delivery_id": [delivery.delivery_id] * n,
            "agency": [delivery.agency] * n,
            "period": [delivery.period] * n,
            "la_code": [delivery.la_code] * n,
            "extract": [delivery.extract] * n,
            "file": [Path(delivery.source_path).name] * n,
            "row": pa.array(rows, pa.int64()),
            "rule": [rule] * n,
            "column": [column] * n,
            "value": pa.array(shown, pa.string()),
            "quarantined_at": [now] * n,
        },
        schema=QUARANTINE_SCHEMA,
    )


def finish_delivery(
    delivery: Delivery,
    typed: pa.Table,
    quarantine: pa.Table,
    status: str,
    failures: list[dict],
    reason: str | None = None,
) -> Delivery:
    """Write the accepted rows and the quarantine; the record's counts must add up."""
    spec = contract(delivery.extract)
    quarantined_rows = set(quarantine.column("row").to_pylist())
    keep = ~np.isin(typed.column(ROW).to_numpy(), list(quarantined_rows))
    accepted = typed.filter(pa.array(keep)).select(spec.pseudonymised_schema().names)
    accepted = accepted.cast(spec.pseudonymised_schema())
    folder = Path(delivery.delivered_path).parent
    stored = folder / f"{delivery.sha256}.parquet"
    quarantine_path = folder / f"{delivery.sha256}.quarantine.parquet"
    _write_parquet_atomically(accepted, stored)
    _write_parquet_atomically(quarantine.sort_by([("row", "ascending")]), quarantine_path)
    finished = replace(
        delivery,
        status=status,
        reason=reason,
        rows_accepted=accepted.num_rows,
        rows_quarantined=len(quarantined_rows),
        stored_path=str(stored),
        quarantine_path=str(quarantine_path),
        failures=failures,
    )
    if finished.rows_accepted + finished.rows_quarantined != finished.rows_received:
        raise AssertionError(f"{delivery.source_path}: row accounting does not add up")
    save_delivery(finished)
    return finished


def apply_validation(delivery: Delivery, report) -> Delivery:
    """Quarantine the rows a validation report failed, hold the delivery on a batch failure,
    and write its accepted rows."""
    typed = pq.read_table(delivery.typed_path)
    rows = typed.column(ROW).to_numpy()
    failures = report.row_failures
    parts = [pq.read_table(delivery.quarantine_path)]
    for (rule, column), group in failures[failures.severity == "row"].groupby(
        ["rule", "column"], dropna=False, sort=True
    ):
        positions = group.position.to_numpy()
        column = None if pd.isna(column) else column
        parts.append(quarantine_rows(delivery, rows[positions], rule, column, list(group.value)))
    summary = [
        {"rule": f.rule, "severity": f.severity, "rows": f.unexpected_count, "detail": f.describe()}
        for f in report.failed
    ]
    reason = "; ".join(f.describe() for f in report.batch_failures) or None
    status = HELD if report.held else ACCEPTED
    return finish_delivery(delivery, typed, pa.concat_tables(parts), status, summary, reason)


def current_deliveries(store_dir: Path, period: str | None = None) -> list[Delivery]:
    """The newest delivery that was not rejected of every (agency, period, area, extract)."""
    newest: dict[tuple[str, str, str, str], Delivery] = {}
    for delivery in all_deliveries(store_dir, period):
        if delivery.status == REJECTED:
            continue
        slot = (delivery.agency, delivery.period, delivery.la_code, delivery.extract)
        if slot not in newest or delivery.received_at > newest[slot].received_at:
            newest[slot] = delivery
    return sorted(newest.values(), key=lambda d: (d.agency, d.period, d.la_code, d.extract))


def all_deliveries(store_dir: Path, period: str | None = None) -> list[Delivery]:
    """Every delivery record in the store (the history), optionally for one period."""
    pattern = f"*/{period}/*/*/*.json" if period else "*/*/*/*/*.json"
    records = [load_delivery(p) for p in store_dir.glob(pattern)]
    return sorted(records, key=lambda d: d.received_at)


def previous_delivery(store_dir: Path, delivery: Delivery) -> Delivery | None:
    """The last accepted delivery of the same agency, area and extract received before this."""
    earlier = [
        d
        for d in all_deliveries(store_dir)
        if (d.agency, d.la_code, d.extract) == (delivery.agency, delivery.la_code, delivery.extract)
        and d.received_at < delivery.received_at
        and d.status == ACCEPTED
    ]
    return earlier[-1] if earlier else None


def load_delivery(record: Path) -> Delivery:
    return Delivery(**json.loads(record.read_text(encoding="utf-8")))


def save_delivery(delivery: Delivery) -> None:
    _write_atomically(delivery.record_path, json.dumps(asdict(delivery), indent=2))


def _type_rows(delivery: Delivery, spec: Contract, delivered: Path) -> Delivery:
    """Read, type and write the parseable rows; quarantine structural and type failures."""
    table, problems = read_delivered(delivered, spec)
    rows = table.column(ROW).to_numpy()
    parts = [
        quarantine_rows(delivery, np.array([p.row]), p.rule, None, [p.detail]) for p in problems
    ]
    columns: dict[str, pa.Array] = {}
    bad_any = np.zeros(table.num_rows, dtype=bool)
    for column in spec.pseudonymised_columns:
        values = table.column(column.name).combine_chunks()
        typed, bad = typed_column(values, column)
        columns[column.name] = typed
        if bad.any():
            bad_values = values.filter(pa.array(bad)).to_pylist()
            parts.append(
                quarantine_rows(delivery, rows[bad], f"type:{column.name}", column.name, bad_values)
            )
        bad_any |= bad
    typed = pa.table({**columns, ROW: rows})
    _check_period(typed, spec, Period(delivery.period))
    folder = delivered.parent
    typed_path = folder / f"{delivery.sha256}.typed.parquet"
    _write_parquet_atomically(typed.filter(pa.array(~bad_any)), typed_path)
    quarantine = pa.concat_tables([QUARANTINE_SCHEMA.empty_table(), *parts])
    _write_parquet_atomically(quarantine, folder / f"{delivery.sha256}.quarantine.parquet")
    return replace(
        delivery,
        rows_received=table.num_rows + len(problems),
        typed_path=str(typed_path),
        quarantine_path=str(folder / f"{delivery.sha256}.quarantine.parquet"),
    )


def _check_columns(names: list[str], spec: Contract) -> None:
    problem = column_mismatch(spec.name, spec.pseudonymised_schema().names, names)
    if problem:
        raise ContractError(problem)


def _check_period(typed: pa.Table, spec: Contract, period: Period) -> None:
    """Reject a file whose dates say it belongs to another period."""
    rules = [r for r in spec.date_rules if r["rule"] in ("in_period", "not_after_period_end")]
    if not rules or typed.num_rows == 0:
        return
    rule, column = rules[0]["rule"], rules[0]["column"]
    dates = typed.column(column)
    present = pc.sum(pc.is_valid(dates)).as_py() or 0
    outside = pc.greater(dates, pa.scalar(period.end))
    if rule == "in_period":
        outside = pc.or_(outside, pc.less(dates, pa.scalar(period.start)))
    count = pc.sum(outside).as_py() or 0
    if present and count / present > WRONG_PERIOD_SHARE:
        where = "outside" if rule == "in_period" else "after the end of"
        raise ContractError(
            f"wrong period: {count} of {present} rows have {column} {where} {period.label} "
            f"({period.start} to {period.end}); is this another period's extract?"
        )


def _copy_atomically(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _write_parquet_atomically(table: pa.Table, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, target)


def _write_atomically(target: Path, text: str) -> None:
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
