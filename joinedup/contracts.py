"""Data contracts of every extract, loaded from `schemas/`: columns, types, code lists, rules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import pyarrow as pa

from joinedup.settings import AGENCIES, PROJECT_ROOT

SCHEMAS_DIR = PROJECT_ROOT / "schemas"
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "date": pa.date32(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "float64": pa.float64(),
}


@dataclass(frozen=True)
class Column:
    """One column of a contract."""

    name: str
    type: str
    required: bool
    description: str
    codes: str | None = None
    pattern: str | None = None
    min: int | None = None
    max: int | None = None
    multi: str | None = None
    direct_identifier: bool = False
    token: bool = False
    encoding: str | None = None
    source: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=not self.required)


@dataclass(frozen=True)
class Contract:
    """The contract of one extract, raw and pseudonymised."""

    name: str
    agency: str
    source_return: str
    grain: str
    identity: tuple[str, ...]
    key: tuple[str, ...]
    payload: tuple[Column, ...]
    row_rules: tuple[dict, ...]
    date_rules: tuple[dict, ...]
    identifier_completeness: tuple[tuple[str, float], ...] = ()

    @property
    def raw_columns(self) -> tuple[Column, ...]:
        """Columns of the identifiable extract, as the agency's system exports it."""
        ident = [c for c in identity_columns("raw") if c.name in self.identity]
        return (*ident, *self.payload)

    @property
    def pseudonymised_columns(self) -> tuple[Column, ...]:
        """Columns of the extract the pipeline receives after pseudonymisation at source."""
        ident = [c for c in identity_columns("pseudonymised") if c.source in self.identity]
        return (*ident, *self.payload)

    @property
    def sensitive_columns(self) -> frozenset[str]:
        """Columns whose values are never shown in a message or report: tokens and encodings."""
        return frozenset(c.name for c in self.pseudonymised_columns if c.token or c.encoding)

    def raw_schema(self) -> pa.Schema:
        return pa.schema([c.field() for c in self.raw_columns])

    def pseudonymised_schema(self) -> pa.Schema:
        return pa.schema([c.field() for c in self.pseudonymised_columns])

    def column(self, name: str) -> Column:
        for col in (*self.raw_columns, *self.pseudonymised_columns):
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


def column_mismatch(name: str, expected: Sequence[str], found: Sequence[str]) -> str | None:
    """What is wrong with a file's column set against its contract's, or None when it fits."""
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    if not (missing or unexpected):
        return None
    return (
        f"columns do not match contract {name}: "
        f"missing {missing or 'none'}, unexpected {unexpected or 'none'}"
    )


def _column(spec: dict) -> Column:
    return Column(
        name=spec["name"],
        type=spec["type"],
        required=spec.get("required", False),
        description=spec.get("description", ""),
        codes=spec.get("codes"),
        pattern=spec.get("pattern"),
        min=spec.get("min"),
        max=spec.get("max"),
        multi=spec.get("multi"),
        direct_identifier=spec.get("direct_identifier", False),
        token=spec.get("token", False),
        encoding=spec.get("encoding"),
        source=spec.get("from"),
    )


def _completeness(path: Path, spec: dict) -> tuple[tuple[str, float], ...]:
    """The minimum share of rows carrying each identifier token, checked against identity.json."""
    shares = spec.get("identifier_completeness", {})
    tokens = {c.name for c in identity_columns("pseudonymised") if c.token}
    unknown = sorted(set(shares) - tokens)
    if unknown:
        raise ValueError(f"{path}: identifier_completeness names non-token columns {unknown}")
    if not all(0 < share <= 1 for share in shares.values()):
        raise ValueError(f"{path}: identifier_completeness shares must lie in (0, 1]")
    return tuple(sorted(shares.items()))


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def identity_columns(form: str) -> tuple[Column, ...]:
    """The identity block in its 'raw' or 'pseudonymised' form."""
    return tuple(_column(c) for c in _read(SCHEMAS_DIR / "identity.json")[form])


@cache
def code_lists() -> dict[str, dict[str, str]]:
    """Every code list by name: code -> meaning."""
    return {k: v for k, v in _read(SCHEMAS_DIR / "codes.json").items() if not k.startswith("_")}


def codes(name: str) -> tuple[str, ...]:
    return tuple(code_lists()[name])


@cache
def contracts() -> dict[str, Contract]:
    """Every extract contract by name (e.g. 'education_census')."""
    found: dict[str, Contract] = {}
    for path in sorted(SCHEMAS_DIR.glob("*.json")):
        spec = _read(path)
        if "agency" not in spec:
            continue
        found[spec["name"]] = Contract(
            name=spec["name"],
            agency=spec["agency"],
            source_return=spec["source_return"],
            grain=spec["grain"],
            identity=tuple(spec["identity"]),
            key=tuple(spec["key"]),
            payload=tuple(_column(c) for c in spec["columns"]),
            row_rules=tuple(spec.get("row_rules", ())),
            date_rules=tuple(spec.get("date_rules", ())),
            identifier_completeness=_completeness(path, spec),
        )
    return found


def contract(name: str) -> Contract:
    return contracts()[name]


def agency_contracts(agency: str) -> tuple[Contract, ...]:
    """The extracts one agency delivers."""
    if agency not in AGENCIES:
        raise ValueError(f"unknown agency {agency!r}; expected one of {AGENCIES}")
    return tuple(c for c in contracts().values() if c.agency == agency)


@dataclass(frozen=True)
class Period:
    """An academic-year reporting period, e.g. '2024-25'."""

    label: str

    def __post_init__(self) -> None:
        start, _, end = self.label.partition("-")
        if not (len(start) == 4 and start.isdigit() and len(end) == 2 and end.isdigit()):
            raise ValueError(f"period {self.label!r} is not an academic year like 2024-25")
        if (int(start) + 1) % 100 != int(end):
            raise ValueError(f"period {self.label!r}: the second year must follow the first")

    @property
    def start(self) -> date:
        return date(int(self.label[:4]), 9, 1)

    @property
    def end(self) -> date:
        return date(int(self.label[:4]) + 1, 8, 31)
