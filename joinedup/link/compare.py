"""Comparison vectors: graded agreement levels per candidate pair, built with recordlinkage."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import recordlinkage
from recordlinkage.base import BaseCompareFeature
from recordlinkage.compare import Exact

from joinedup.link.records import BIRTH_MONTH, BIRTH_YEAR, ROW, UNKNOWN_SEX
from joinedup.pseudonymise import bloom_to_array, dice

log = logging.getLogger(__name__)
COMPARE_CHUNK_PAIRS = 250_000

# ----------------------------------------------------------------------------------------------
# 3. Comparison levels
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """A graded comparison: its level names, best agreement first; level 0 is 'missing'."""

    name: str
    levels: tuple[str, ...]

    @property
    def observed_levels(self) -> tuple[str, ...]:
        return self.levels[1:]


MISSING = "missing"
DICE_THRESHOLDS = (0.9, 0.75, 0.5)
DICE_LEVELS = tuple(f"dice{round(100 * t)}" for t in DICE_THRESHOLDS)
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("nhs", (MISSING, "agree", "disagree")),
    Comparison("upn", (MISSING, "agree", "disagree")),
    Comparison("forename", (MISSING, "exact", "alt", *DICE_LEVELS, "disagree")),
    Comparison("surname", (MISSING, "exact", *DICE_LEVELS, "disagree")),
    Comparison("dob", (MISSING, "exact", "year_month", "year", "month", "disagree")),
    Comparison("sex", (MISSING, "agree", "disagree")),
    Comparison("postcode", (MISSING, "full", "sector", "district", "disagree")),
)
COMPARISON_NAMES = tuple(c.name for c in COMPARISONS)


def level_code(comparison: str, level: str) -> int:
    return COMPARISONS[COMPARISON_NAMES.index(comparison)].levels.index(level)


@dataclass(frozen=True)
class Side:
    """One agency's person records prepared for comparison, with their Bloom filters as bits."""

    agency: str
    records: pd.DataFrame
    forename_bits: np.ndarray
    surname_bits: np.ndarray


def prepare_side(agency: str, records: pd.DataFrame, bloom_bits: int) -> Side:
    """Records of one agency in canonical order (by person_token), with helper columns."""
    frame = records.sort_values("person_token", kind="mergesort").reset_index(drop=True).copy()
    frame[ROW] = np.arange(len(frame))
    frame["sex"] = frame["sex"].where(frame["sex"] != UNKNOWN_SEX, None)
    frame[BIRTH_YEAR] = frame["birth_ym"].str.slice(0, 4)
    frame[BIRTH_MONTH] = frame["birth_ym"].str.slice(5, 7)
    return Side(
        agency=agency,
        records=frame,
        forename_bits=bloom_to_array(frame["forename_bloom"].tolist(), bloom_bits),
        surname_bits=bloom_to_array(frame["surname_bloom"].tolist(), bloom_bits),
    )


def null_mask(*values: np.ndarray) -> np.ndarray:
    """True where any of the arrays is null."""
    return np.logical_or.reduce([pd.isna(v) for v in values])


def equal_not_null(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise a == b, False where either is null."""
    return (a == b) & ~null_mask(a, b)


class NameLevels(BaseCompareFeature):
    """Name agreement: missing (first token null), equal on each token column in turn (e.g. the
    name, then its nickname-resolved form), Dice >= each threshold, else.

    Labels on each side are the token columns then the row id, which indexes the side's Bloom
    filter bits (compared by Dice coefficient).
    """

    name = "name_levels"
    description = "Graded name agreement on tokens and Bloom-filter Dice."

    def __init__(
        self,
        token_columns: tuple[str, ...],
        left_bits: np.ndarray,
        right_bits: np.ndarray,
        label: str,
        thresholds: tuple[float, ...] = DICE_THRESHOLDS,
    ) -> None:
        labels = [*token_columns, ROW]
        super().__init__(labels, labels, label=label)
        self.width = len(labels)
        self.left_bits = left_bits
        self.right_bits = right_bits
        self.thresholds = thresholds

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        left = [s.to_numpy() for s in series[: self.width]]
        right = [s.to_numpy() for s in series[self.width :]]
        missing = null_mask(left[0], right[0])
        equal = [equal_not_null(a, b) for a, b in zip(left[:-1], right[:-1], strict=True)]
        rows_l, rows_r = left[-1].astype(np.int64), right[-1].astype(np.int64)
        similarity = np.nan_to_num(dice(self.left_bits[rows_l], self.right_bits[rows_r]))
        conditions = [missing, *equal, *(similarity >= t for t in self.thresholds)]
        levels = range(len(conditions))
        return np.select(conditions, levels, default=len(conditions)).astype(np.int8)


class DobLevels(BaseCompareFeature):
    """Date of birth agreement: missing, exact, same year-month, same year (a wrong month, or
    day and month swapped), same month (a wrong year), else. Only the full date is tokenised
    (see joinedup.pseudonymise), so a swapped day and month agrees on the year only."""

    name = "dob_levels"
    description = "Graded date-of-birth agreement on tokens and clear birth year-month."
    columns = ("dob_token", BIRTH_YEAR, BIRTH_MONTH)

    def __init__(self, label: str = "dob") -> None:
        super().__init__(list(self.columns), list(self.columns), label=label)

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        width = len(self.columns)
        dob_l, year_l, month_l = (s.to_numpy() for s in series[:width])
        dob_r, year_r, month_r = (s.to_numpy() for s in series[width:])
        same_year = equal_not_null(year_l, year_r)
        same_month = equal_not_null(month_l, month_r)
        conditions = [
            null_mask(dob_l, dob_r),
            equal_not_null(dob_l, dob_r),
            same_year & same_month,
            same_year,
            same_month,
        ]
        return np.select(conditions, [0, 1, 2, 3, 4], default=5).astype(np.int8)


class ExactLevels(BaseCompareFeature):
    """Agreement on the first of several columns, finest first: missing when the finest is null
    on either side, else the 1-based index of the first equal column, else len(columns) + 1."""

    name = "exact_levels"
    description = "Graded exact agreement over columns from finest to coarsest."

    def __init__(self, columns: tuple[str, ...], label: str) -> None:
        super().__init__(list(columns), list(columns), label=label)
        self.width = len(columns)

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        left = [s.to_numpy() for s in series[: self.width]]
        right = [s.to_numpy() for s in series[self.width :]]
        conditions = [null_mask(left[0], right[0])]
        conditions += [equal_not_null(a, b) for a, b in zip(left, right, strict=True)]
        choices = list(range(self.width + 1))
        return np.select(conditions, choices, default=self.width + 1).astype(np.int8)


def exact_agreement(column: str, label: str) -> Exact:
    """Exact agreement coded as levels: 0 missing, 1 agree, 2 disagree."""
    return Exact(column, column, agree_value=1, disagree_value=2, missing_value=0, label=label)


def build_compare(left: Side, right: Side) -> recordlinkage.Compare:
    """The recordlinkage comparison of two sides, one feature per entry of COMPARISONS."""
    features = {
        "nhs": exact_agreement("nhs_token", "nhs"),
        "upn": exact_agreement("upn_token", "upn"),
        "forename": NameLevels(
            ("forename_token", "forename_alt_token"),
            left.forename_bits,
            right.forename_bits,
            label="forename",
        ),
        "surname": NameLevels(
            ("surname_token",), left.surname_bits, right.surname_bits, label="surname"
        ),
        "dob": DobLevels(label="dob"),
        "sex": exact_agreement("sex", "sex"),
        "postcode": ExactLevels(
            ("postcode_token", "postcode_sector_token", "postcode_district"), label="postcode"
        ),
    }
    return recordlinkage.Compare([features[name] for name in COMPARISON_NAMES])


def comparison_levels(
    left: Side, right: Side, pairs: np.ndarray, chunk_pairs: int = COMPARE_CHUNK_PAIRS
) -> np.ndarray:
    """Level codes, shape (n pairs, n comparisons), computed chunk by chunk."""
    compare = build_compare(left, right)
    levels = np.zeros((len(pairs), len(COMPARISONS)), dtype=np.int8)
    for start in range(0, len(pairs), chunk_pairs):
        chunk = pairs[start : start + chunk_pairs]
        index = pd.MultiIndex.from_arrays([chunk[:, 0], chunk[:, 1]])
        features = compare.compute(index, left.records, right.records)
        levels[start : start + len(chunk)] = features[list(COMPARISON_NAMES)].to_numpy(np.int8)
    return levels


def agreement_patterns(levels: np.ndarray) -> list[str]:
    """Readable agreement pattern per pair, e.g. 'nhs:agree|upn:missing|...' (no identifiers)."""
    names = [np.array([f"{c.name}:{lvl}" for lvl in c.levels], dtype=object) for c in COMPARISONS]
    parts = [names[k][levels[:, k]] for k in range(len(COMPARISONS))]
    return ["|".join(row) for row in zip(*parts, strict=True)] if len(levels) else []
