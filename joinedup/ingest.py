"""Ingest: read a landed pseudonymised extract against its contract and keep an immutable copy.

The landing zone is `landing/<agency>/<period>/<la_code>/<extract>.parquet` (or `.csv`). Each
delivery is stored once, by the SHA-256 of its bytes, under
`store/<agency>/<period>/<la_code>/<extract>/`: the bytes as delivered (`<sha256>.delivered.<ext>`),
the rows cast to the contract (`<sha256>.parquet`, what later stages read) and a `<sha256>.json`
record of who/what/when. The newest delivery of an (agency, period, area, extract) is current.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from joinedup.contracts import Contract, Period, contract, contracts
from joinedup.settings import Settings

LANDED_SUFFIXES = (".parquet", ".csv")


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
    """One ingested, immutable delivery."""

    agency: str
    period: str
    la_code: str
    extract: str
    sha256: str
    rows: int
    stored_path: str
    source_path: str
    received_at: str

    @property
    def delivery_id(self) -> str:
        return self.sha256[:16]


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


def read_extract(path: Path, spec: Contract) -> pa.Table:
    """A pseudonymised extract cast to its contract's schema; ContractError when it cannot be."""
    schema = spec.pseudonymised_schema()
    if path.suffix == ".csv":
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: f.type for f in schema}, strings_can_be_null=True
            ),
        )
    else:
        table = pq.read_table(path)
    missing = [n for n in schema.names if n not in table.column_names]
    unexpected = [n for n in table.column_names if n not in schema.names]
    if missing or unexpected:
        raise ContractError(
            f"{path}: columns do not match contract {spec.name}: "
            f"missing {missing or 'none'}, unexpected {unexpected or 'none'}"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ContractError(f"{path}: does not cast to contract {spec.name}: {error}") from error


def ingest_file(landed: LandedFile, store_dir: Path) -> Delivery:
    """Check a landed file against its contract and keep it in the store, once per content."""
    spec = contract(landed.extract)
    table = read_extract(landed.path, spec)
    digest = sha256_of(landed.path)
    folder = store_dir / landed.agency / landed.period / landed.la_code / landed.extract
    stored = folder / f"{digest}.parquet"
    record = folder / f"{digest}.json"
    if record.exists():
        return Delivery(**json.loads(record.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    _copy_atomically(landed.path, folder / f"{digest}.delivered{landed.path.suffix}")
    _write_parquet_atomically(table, stored)
    delivery = Delivery(
        agency=landed.agency,
        period=landed.period,
        la_code=landed.la_code,
        extract=landed.extract,
        sha256=digest,
        rows=table.num_rows,
        stored_path=str(stored),
        source_path=str(landed.path),
        received_at=datetime.now(UTC).isoformat(timespec="microseconds"),
    )
    _write_atomically(record, json.dumps(asdict(delivery), indent=2))
    return delivery


def ingest_agency(settings: Settings, agency: str, period: str) -> list[Delivery]:
    """Ingest everything one agency landed for a period."""
    landed = find_landed(settings.landing_dir, agency, period)
    if not landed:
        raise ContractError(f"{settings.landing_dir / agency / period}: nothing landed")
    return [ingest_file(item, settings.store_dir) for item in landed]


def current_deliveries(store_dir: Path, period: str | None = None) -> list[Delivery]:
    """The newest delivery of every (agency, period, area, extract), optionally for one period."""
    newest: dict[tuple[str, str, str, str], Delivery] = {}
    pattern = f"*/{period}/*/*/*.json" if period else "*/*/*/*/*.json"
    for record in store_dir.glob(pattern):
        delivery = Delivery(**json.loads(record.read_text()))
        slot = (delivery.agency, delivery.period, delivery.la_code, delivery.extract)
        if slot not in newest or delivery.received_at > newest[slot].received_at:
            newest[slot] = delivery
    return sorted(newest.values(), key=lambda d: (d.agency, d.period, d.la_code, d.extract))


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
