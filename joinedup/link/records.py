"""Person records: one identity row per (agency, person_token) from the pseudonymised extracts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from joinedup.contracts import contract, identity_columns

log = logging.getLogger(__name__)

AGENCY_PAIRS: tuple[tuple[str, str], ...] = (
    ("education", "health"),
    ("education", "care"),
    ("health", "care"),
)
RECORD_KEY = ("agency", "person_token")
ROW = "_row"
BIRTH_YEAR = "_birth_year"
BIRTH_MONTH = "_birth_month"
UNKNOWN_SEX = "U"


def pair_name(left: str, right: str) -> str:
    return f"{left}-{right}"


def record_rows(records: pd.DataFrame, agency: pd.Series, token: pd.Series) -> np.ndarray:
    """The row in `records` (agency, person_token, one row per record) of each (agency, token);
    -1 where there is none. One hash lookup per agency, no join on string pairs."""
    rows = np.full(len(agency), -1, dtype=np.int64)
    held_agency, agency_values = records["agency"].to_numpy(), agency.to_numpy()
    tokens, held_tokens = token.to_numpy(), records["person_token"].to_numpy()
    for name in pd.unique(agency_values):
        held = np.flatnonzero(held_agency == name)
        if not len(held):
            continue
        wanted = np.flatnonzero(agency_values == name)
        found = pd.Index(held_tokens[held]).get_indexer(tokens[wanted])
        rows[wanted] = np.where(found >= 0, held[np.maximum(found, 0)], -1)
    return rows


def link_ends(links: pd.DataFrame, **values: np.ndarray) -> pd.DataFrame:
    """Each link read from both of its records: agency, person_token, other_agency, other_token
    and the given per-link values (the same at both ends)."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "agency": links[f"agency_{this}"].to_numpy(object),
                    "person_token": links[f"person_token_{this}"].to_numpy(object),
                    "other_agency": links[f"agency_{other}"].to_numpy(object),
                    "other_token": links[f"person_token_{other}"].to_numpy(object),
                    **values,
                }
            )
            for this, other in (("l", "r"), ("r", "l"))
        ],
        ignore_index=True,
    )


def distinct(codes: np.ndarray) -> np.ndarray:
    """The distinct values, ascending, by sorting (np.unique hashes, which is several times
    slower on the hundreds of millions of mostly distinct codes of a million records)."""
    codes = np.sort(codes)
    return codes[np.concatenate([[True], codes[1:] != codes[:-1]])] if len(codes) else codes


def identity_column_names() -> tuple[str, ...]:
    """The pseudonymised identity columns of a person record, plus its area."""
    return (*(c.name for c in identity_columns("pseudonymised")), "la_code")


# ----------------------------------------------------------------------------------------------
# 1. Person records
# ----------------------------------------------------------------------------------------------


def person_records(extract_paths: dict[str, list[Path]]) -> pd.DataFrame:
    """One identity row per (agency, person_token) from all of each agency's extracts.

    Columns: agency, then the identity columns (the union over agencies; a column an agency does
    not hold is null). When one person's rows disagree, the most frequent row is kept (ties: the
    more complete row, then the smallest values), so the result does not depend on file order.
    """
    columns = identity_column_names()
    frames = [
        read_identity_rows(path, name)
        for name, paths in sorted(extract_paths.items())
        for path in sorted(paths)
    ]
    if not frames:
        return pd.DataFrame(columns=["agency", *columns], dtype=object)
    rows = pd.concat(frames, ignore_index=True).reindex(columns=["agency", *columns])
    return most_frequent_row_per_person(rows.astype(object).where(rows.notna(), None))


def read_identity_rows(path: Path, extract: str) -> pd.DataFrame:
    """The identity columns of one pseudonymised extract, with its agency."""
    wanted = set(identity_column_names())
    present = [name for name in pq.read_schema(path).names if name in wanted]
    frame = pq.read_table(path, columns=present).to_pandas()
    frame.insert(0, "agency", contract(extract).agency)
    return frame


def most_frequent_row_per_person(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep, per (agency, person_token), its most frequent identity row."""
    key = list(RECORD_KEY)
    values = [c for c in rows.columns if c not in RECORD_KEY]
    counted = rows.groupby([*key, *values], dropna=False, sort=False).size().rename("_n")
    counted = counted.reset_index()
    counted = counted.astype(object).where(counted.notna(), None)
    counted["_filled"] = counted[values].notna().sum(axis=1)
    ordered = counted.sort_values(
        [*key, "_n", "_filled", *values],
        ascending=[True, True, False, False, *([True] * len(values))],
        na_position="last",
        kind="mergesort",
    )
    best = ordered.drop_duplicates(key, keep="first")
    return best.drop(columns=["_n", "_filled"]).reset_index(drop=True)
