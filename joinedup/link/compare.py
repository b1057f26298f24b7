"""Comparison vectors: graded agreement levels per candidate pair, built with recordlinkage.

Every pseudonymised column is turned once into integers (`prepare_side`): a token or clear value
becomes a 63-bit code, equal for equal values in any agency (-1 for null); a Bloom filter becomes
a row of 64-bit words; the near tokens of an NHS number or UPN become one 64-bit word per masked
position, and a name's edit tokens one 64-bit word each (per distinct name). Blocking and
comparison then work on integer arrays only, chunk by chunk.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import recordlinkage
from recordlinkage.base import BaseCompareFeature

from joinedup.contracts import code_lists
from joinedup.link.records import BIRTH_MONTH, BIRTH_YEAR, ROW, UNKNOWN_SEX
from joinedup.pseudonymise import (
    EDIT_TOKENS,
    NHS_NEAR_POSITIONS,
    UPN_NEAR_POSITIONS,
    dice_of_rows,
    edit_token_overlap,
    filter_sizes,
    near_token_agreement,
    near_tokens_to_array,
)

log = logging.getLogger(__name__)
COMPARE_CHUNK_PAIRS = 1_000_000
NULL_CODE = -1
HEX_PER_WORD = 16

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
# 'one_edit': names whose Dice is below 0.75 that share an edit token (pseudonymise.
# deletion_forms): one keying error apart, as a short name's keying error leaves it (REID and
# REYID), or one letter short of the same form each (CIAN and CANE). It splits them from the
# other pairs near Dice 0.5 (DINA and DIANE), much commoner between different children.
ONE_EDIT_AT = 2  # the index among DICE_LEVELS before which 'one_edit' comes
NAME_SIMILAR_LEVELS = (*DICE_LEVELS[:ONE_EDIT_AT], "one_edit", *DICE_LEVELS[ONE_EDIT_AT:])
EDIT_MIN_DICE = 0.2  # below this no two names one keying error apart (TOM and TMO: 0.25)
IDENTIFIER_LEVELS = (MISSING, "agree", "one_character", "transposed", "disagree")
# Postcode and address lines in one comparison: a household shares both and a move changes both,
# so as two comparisons they would count the same evidence twice.
RESIDENCE_LEVELS = (
    MISSING,
    "postcode_address",  # same full postcode and address lines alike (see ResidenceLevels)
    "postcode",  # same full postcode, address missing on a side
    "postcode_street",  # same full postcode, address lines alike, other house numbers
    "postcode_other_address",  # same full postcode, another address (a neighbour)
    "address",  # same address lines (Dice >= ADDRESS_CLOSE), postcode different or missing
    "address_similar",  # address lines Dice >= ADDRESS_SIMILAR: several keying errors, a part lost
    "address_partial",  # address lines Dice >= ADDRESS_PARTIAL: e.g. the house number kept
    "sector",
    "district",
    "disagree",
)
ADDRESS_SAME = 0.75
ADDRESS_CLOSE = 0.9
ADDRESS_SIMILAR = 0.75
ADDRESS_PARTIAL = 0.5
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("nhs", IDENTIFIER_LEVELS),
    Comparison("upn", IDENTIFIER_LEVELS),
    Comparison("forename", (MISSING, "exact", "alt", *NAME_SIMILAR_LEVELS, "phonetic", "disagree")),
    # 'swapped': forename and surname recorded the wrong way round (see with_swapped_names).
    Comparison("surname", (MISSING, "exact", *NAME_SIMILAR_LEVELS, "swapped", "disagree")),
    Comparison("dob", (MISSING, "exact", "year_month", "year", "month", "disagree")),
    Comparison("sex", (MISSING, "agree", "disagree")),
    Comparison("residence", RESIDENCE_LEVELS),
    Comparison("ethnicity", (MISSING, "exact", "group", "disagree")),
    Comparison("area", (MISSING, "agree", "disagree")),
    # How much rarer than the other a differing name is (see name_novelty): a keying error makes
    # a name few others have (SAAN beside SANA), while twins, siblings and strangers have real
    # names (DINA and LINA). 'rarer_20': at most a twentieth as common; 'rarer_4': a quarter.
    Comparison("novelty", (MISSING, "rarer_20", "rarer_4", "alike")),
)
COMPARISON_NAMES = tuple(c.name for c in COMPARISONS)
DERIVED_COMPARISONS = ("novelty",)  # set from the other levels, after recordlinkage's features
FEATURE_NAMES = tuple(n for n in COMPARISON_NAMES if n not in DERIVED_COMPARISONS)
FEATURE_COLUMNS = [COMPARISON_NAMES.index(n) for n in FEATURE_NAMES]  # their columns in levels
# Per record, how many of its agency's records share its name token (see prepare_side).
NAME_COUNT_COLUMNS = {"forename": "forename_count", "surname": "surname_count"}
NAME_SAME_LEVELS = {"forename": ("exact", "alt"), "surname": ("exact", "swapped")}
NOVELTY_RATIOS = (1 / 20, 1 / 4)

# Columns coded as integers (tokens and clear values), Bloom filters and near-token columns.
CODED_COLUMNS = (
    "nhs_token",
    "upn_token",
    "forename_token",
    "forename_alt_token",
    "forename_phonetic_token",
    "surname_token",
    "surname_phonetic_token",
    "name_pair_token",
    "dob_token",
    "birth_ym",
    "household_birthday_token",
    "sex",
    "postcode_token",
    "postcode_sector_token",
    "postcode_district",
    "premises_token",
    "street_token",
    "ethnicity",
    "ethnicity_group",
    "la_code",
)
ETHNICITY_GROUP = "ethnicity_group"
UNKNOWN_ETHNICITY_GROUP = "Unknown"  # refused or not yet obtained: treated as missing
BLOOM_COLUMNS = {
    "forename": "forename_bloom",
    "surname": "surname_bloom",
    "address": "address_bloom",
}
NEAR_TOKEN_COLUMNS = {
    "nhs": ("nhs_near_tokens", NHS_NEAR_POSITIONS),
    "upn": ("upn_near_tokens", UPN_NEAR_POSITIONS),
    "nhs2": ("nhs_near2_tokens", NHS_NEAR_POSITIONS - 1),
    "upn2": ("upn_near2_tokens", UPN_NEAR_POSITIONS - 1),
}
EDIT_TOKEN_COLUMNS = {"forename": "forename_edit_tokens", "surname": "surname_edit_tokens"}


def level_code(comparison: str, level: str) -> int:
    return COMPARISONS[COMPARISON_NAMES.index(comparison)].levels.index(level)


@dataclass(frozen=True)
class NameEdits:
    """The edit tokens of one agency's names: a uint64 row per distinct name (padded with zeros)
    and, per record, the index of its name's row (-1: no name)."""

    tokens: np.ndarray
    row_of: np.ndarray

    def reordered(self, order: np.ndarray) -> NameEdits:
        return NameEdits(self.tokens, self.row_of[order])


def name_edits(array: pa.Array) -> NameEdits:
    """NameEdits of an edit-token column, each distinct value decoded once."""
    encoded = pc.dictionary_encode(array)
    tokens = near_tokens_to_array(encoded.dictionary, EDIT_TOKENS)
    return NameEdits(tokens, encoded.indices.fill_null(-1).to_numpy().astype(np.int64))


@dataclass(frozen=True)
class Side:
    """One agency's person records as integers, in canonical order (by person_token).

    `records` holds person_token, the row id and every coded column under its own name (int64,
    -1 for null); Bloom filters are uint64 word matrices, one row per record (zeros: missing);
    near tokens are uint64 matrices, one word per masked position (zeros: nothing recorded),
    transposition (near-2) tokens one word per pair of adjacent positions; edit tokens of names
    as NameEdits.
    """

    agency: str
    records: pd.DataFrame
    forename_bits: np.ndarray
    surname_bits: np.ndarray
    address_bits: np.ndarray
    nhs_near: np.ndarray
    upn_near: np.ndarray
    nhs_near2: np.ndarray
    upn_near2: np.ndarray
    forename_edits: NameEdits
    surname_edits: NameEdits

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def filter_sizes(self) -> dict[str, np.ndarray]:
        """The bits set in each record's forename, surname and address filters, by field."""
        filters = {
            "forename": self.forename_bits,
            "surname": self.surname_bits,
            "address": self.address_bits,
        }
        return {field: filter_sizes(words) for field, words in filters.items()}


# --- turning columns into integers -----------------------------------------------------------


def as_string_array(values: pd.Series | None, length: int) -> pa.Array:
    """A column as one Arrow string array (all null when the column is absent)."""
    if values is None:
        return pa.nulls(length, pa.string())
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_null(array.type):
        return pa.nulls(length, pa.string())
    return array.cast(pa.large_string())


def value_codes(array: pa.Array) -> np.ndarray:
    """int64 code per value, equal for equal strings in any frame (a 63-bit hash); -1 for null."""
    encoded = pc.dictionary_encode(array)
    dictionary = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    hashed = pd.util.hash_array(dictionary, categorize=False) >> np.uint64(1)
    indices = encoded.indices.fill_null(-1).to_numpy()
    codes = np.full(len(array), NULL_CODE, dtype=np.int64)
    present = indices >= 0
    codes[present] = hashed.astype(np.int64)[indices[present]]
    return codes


def hex_words(array: pa.Array, words: int) -> np.ndarray:
    """uint64 matrix (rows, words) from hex strings of 16 * words characters; zeros for null.

    The hex of all non-null values is decoded in one call from the Arrow data buffer, without a
    Python object per value.
    """
    out = np.zeros((len(array), words), dtype=np.uint64)
    present = array.is_valid().to_numpy(zero_copy_only=False)
    filled = array.drop_null()
    if not len(filled):
        return out
    lengths = pc.binary_length(filled).to_numpy()
    if (lengths != HEX_PER_WORD * words).any():
        raise ValueError(f"expected {HEX_PER_WORD * words} hex characters per value")
    offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[filled.offset :]
    start, stop = int(offsets[0]), int(offsets[len(filled)])
    raw = binascii.unhexlify(memoryview(filled.buffers()[2])[start:stop])
    out[present] = np.frombuffer(raw, dtype=">u8").reshape(len(filled), words)
    return out


def birth_parts(birth_ym: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Birth year and month as integers (-1 for null) from 'YYYY-MM'."""
    parts = []
    for start, stop in ((0, 4), (5, 7)):
        piece = pc.utf8_slice_codeunits(birth_ym, start, stop)
        parts.append(pc.cast(piece, pa.int64()).fill_null(NULL_CODE).to_numpy())
    return parts[0], parts[1]


def prepare_side(agency: str, records: pd.DataFrame, bloom_bits: int) -> Side:
    """Records of one agency in canonical order (by person_token), coded as integers.

    Columns an agency does not hold (or a frame lacks) are null, i.e. 'missing' in every pair.
    """
    n = len(records)
    tokens = as_string_array(records["person_token"], n)
    order = pc.sort_indices(tokens).to_numpy()

    def string_column(name: str) -> pa.Array:
        return as_string_array(records.get(name), n)

    person = tokens.take(order).to_numpy(zero_copy_only=False).astype(object)
    coded = {"person_token": person, ROW: np.arange(n)}
    for name in CODED_COLUMNS:
        values = ethnicity_groups(string_column("ethnicity")) if name == ETHNICITY_GROUP else None
        values = string_column(name) if values is None else values
        if name == "sex":
            values = pc.if_else(pc.equal(values, UNKNOWN_SEX), None, values)
        coded[name] = value_codes(values)[order]
    unknown = coded[ETHNICITY_GROUP] == NULL_CODE
    coded["ethnicity"][unknown] = NULL_CODE
    for name, column in NAME_COUNT_COLUMNS.items():
        coded[column] = value_counts(coded[f"{name}_token"])
    year, month = birth_parts(string_column("birth_ym"))
    coded[BIRTH_YEAR], coded[BIRTH_MONTH] = year[order], month[order]
    words = bloom_bits // 64
    bits = {k: hex_words(string_column(c), words)[order] for k, c in BLOOM_COLUMNS.items()}
    near = {
        k: near_tokens_to_array(string_column(c), w)[order]
        for k, (c, w) in NEAR_TOKEN_COLUMNS.items()
    }
    edits = {
        k: name_edits(string_column(c)).reordered(order) for k, c in EDIT_TOKEN_COLUMNS.items()
    }
    return Side(
        agency=agency,
        records=pd.DataFrame(coded),
        forename_bits=bits["forename"],
        surname_bits=bits["surname"],
        address_bits=bits["address"],
        nhs_near=near["nhs"],
        upn_near=near["upn"],
        nhs_near2=near["nhs2"],
        upn_near2=near["upn2"],
        forename_edits=edits["forename"],
        surname_edits=edits["surname"],
    )


def value_counts(codes: np.ndarray) -> np.ndarray:
    """How often each code's value occurs among the codes; 0 for null."""
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    out = counts[inverse.reshape(-1)].astype(np.int64)
    out[codes == NULL_CODE] = 0
    return out


def ethnicity_groups(ethnicity: pa.Array) -> pa.Array:
    """The ethnicity group of each code (schemas/codes.json); null for unknown or refused."""
    known = code_lists()[ETHNICITY_GROUP].items()
    groups = {k: v for k, v in known if v != UNKNOWN_ETHNICITY_GROUP}
    codes = pa.array(list(groups), pa.large_string())
    index = pc.index_in(ethnicity.cast(pa.large_string()), value_set=codes)
    return pa.array(list(groups.values()), pa.large_string()).take(index)


# --- recordlinkage comparison features -------------------------------------------------------


def null_mask(*values: np.ndarray) -> np.ndarray:
    """True where any of the code arrays is null."""
    return np.logical_or.reduce([np.asarray(v) == NULL_CODE for v in values])


def equal_not_null(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise a == b, False where either is null."""
    return (a == b) & (a != NULL_CODE)


def rows_of(left: pd.Series, right: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    return left.to_numpy(np.int64), right.to_numpy(np.int64)


class NameLevels(BaseCompareFeature):
    """Name agreement: missing, equal on each token column in turn (e.g. the name, then its
    nickname-resolved form), Dice >= each threshold (with `edits`: one keying error apart by
    edit tokens, before the threshold at index ONE_EDIT_AT, for pairs of Dice at least
    EDIT_MIN_DICE that no level before agrees on), equal on each fallback column (e.g.
    the phonetic code: a keying error that garbles a short name), else.

    Labels on each side are the token columns, the fallback columns, then the row id, which
    indexes the side's Bloom filter words (compared by Dice coefficient). Missing: the first
    token column is null on either side or, without token columns, either filter is empty.
    No agreement gives `disagree` (default: the level after the last condition).
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
        fallback_columns: tuple[str, ...] = (),
        disagree: int | None = None,
        sizes: tuple[np.ndarray, np.ndarray] | None = None,
        edits: tuple[NameEdits, NameEdits] | None = None,
    ) -> None:
        labels = [*token_columns, *fallback_columns, ROW]
        super().__init__(labels, labels, label=label)
        self.width = len(labels)
        self.tokens = len(token_columns)
        self.left_bits = left_bits
        self.right_bits = right_bits
        self.thresholds = thresholds
        self.disagree = disagree
        self.edits = edits
        # bits set per filter (filter_sizes), e.g. a side's cached Side.filter_sizes
        self.sizes = sizes or (filter_sizes(left_bits), filter_sizes(right_bits))

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        left = [s.to_numpy() for s in series[: self.width]]
        right = [s.to_numpy() for s in series[self.width :]]
        rows_l, rows_r = left[-1].astype(np.int64), right[-1].astype(np.int64)
        if self.tokens:
            missing = null_mask(left[0], right[0])
        else:
            missing = (self.sizes[0][rows_l] == 0) | (self.sizes[1][rows_r] == 0)
        equal = [equal_not_null(a, b) for a, b in zip(left[:-1], right[:-1], strict=True)]
        similarity = dice_of_rows(self.left_bits, self.right_bits, rows_l, rows_r, *self.sizes)
        dice_levels = [similarity >= t for t in self.thresholds]
        if self.edits is not None:
            before = [missing, *equal[: self.tokens], *dice_levels[:ONE_EDIT_AT]]
            check = ~np.logical_or.reduce(before) & (similarity >= EDIT_MIN_DICE)
            one_edit = one_edit_apart(self.edits, rows_l, rows_r, check)
            dice_levels.insert(ONE_EDIT_AT, one_edit)
        conditions = [missing, *equal[: self.tokens], *dice_levels, *equal[self.tokens :]]
        disagree = len(conditions) if self.disagree is None else self.disagree
        return np.select(conditions, range(len(conditions)), default=disagree).astype(np.int8)


def one_edit_apart(
    edits: tuple[NameEdits, NameEdits], rows_l: np.ndarray, rows_r: np.ndarray, check: np.ndarray
) -> np.ndarray:
    """True for the pairs (rows_l[k], rows_r[k]) where `check` holds and the two names share an
    edit token; the others are not looked at."""
    at = np.flatnonzero(check)
    names_l, names_r = edits[0].row_of[rows_l[at]], edits[1].row_of[rows_r[at]]
    named = (names_l >= 0) & (names_r >= 0)
    at, names_l, names_r = at[named], names_l[named], names_r[named]
    shared = np.zeros(len(check), dtype=bool)
    shared[at] = edit_token_overlap(edits[0].tokens, edits[1].tokens, names_l, names_r)
    return shared


class IdentifierLevels(BaseCompareFeature):
    """NHS number or UPN agreement: missing (nothing recorded on a side), agree (equal tokens of
    valid numbers, or the same number as recorded: every near token equal), one_character (some
    but not every near token equal: the numbers differ in exactly one position), transposed (a
    transposition token equal: two adjacent characters swapped, 2062273 and 2026273), disagree.

    Labels are the token column and the row id, which indexes the sides' near-token matrices
    (`left_near`, `right_near`) and transposition-token matrices (`left_near2`, `right_near2`).
    """

    name = "identifier_levels"
    description = "Graded identifier agreement on tokens and position-masked near tokens."

    def __init__(
        self,
        token_column: str,
        left_near: np.ndarray,
        right_near: np.ndarray,
        label: str,
        left_near2: np.ndarray,
        right_near2: np.ndarray,
    ) -> None:
        super().__init__([token_column, ROW], [token_column, ROW], label=label)
        self.left_near = left_near
        self.right_near = right_near
        self.left_near2 = left_near2
        self.right_near2 = right_near2

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        token_l, row_l, token_r, row_r = (s.to_numpy() for s in series)
        row_l, row_r = row_l.astype(np.int64), row_r.astype(np.int64)
        shared = near_token_agreement(self.left_near, self.right_near, row_l, row_r)
        has_l = (token_l != NULL_CODE) | self.left_near.any(axis=1)[row_l]
        has_r = (token_r != NULL_CODE) | self.right_near.any(axis=1)[row_r]
        recorded = (self.left_near != 0).sum(axis=1)[row_l]
        shared2 = near_token_agreement(self.left_near2, self.right_near2, row_l, row_r)
        conditions = [
            ~(has_l & has_r),
            equal_not_null(token_l, token_r) | ((shared == recorded) & (recorded > 0)),
            shared > 0,
            shared2 > 0,
        ]
        return np.select(conditions, [0, 1, 2, 3], default=4).astype(np.int8)


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


class ResidenceLevels(BaseCompareFeature):
    """Postcode and address lines together (levels in RESIDENCE_LEVELS): missing when neither
    can be compared, then the full postcode with the address the same, missing, alike but with
    other house numbers (a neighbour in the street), or different, the address alone, the
    postcode sector, the district, else.

    Labels are the postcode, sector, district, premises and street codes and the row id, which
    indexes the sides' address Bloom filters (compared by Dice coefficient). In one postcode,
    address lines are alike when their filters reach ADDRESS_SAME or their street tokens agree
    (an address with its number left out loses the number's bigrams, and with a short street
    name falls under ADDRESS_SAME); two houses in one street are as alike as one address with a
    keying error, so their premises tokens (postcode and numbers) tell them apart where both
    sides have a number.
    """

    name = "residence_levels"
    description = "Graded agreement of postcode and address lines."
    columns = (
        "postcode_token",
        "postcode_sector_token",
        "postcode_district",
        "premises_token",
        "street_token",
        ROW,
    )

    def __init__(
        self,
        left_bits: np.ndarray,
        right_bits: np.ndarray,
        label: str,
        sizes: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__(list(self.columns), list(self.columns), label=label)
        self.left_bits = left_bits
        self.right_bits = right_bits
        self.sizes = sizes or (filter_sizes(left_bits), filter_sizes(right_bits))  # as NameLevels

    def _compute_vectorized(self, *series: pd.Series) -> np.ndarray:
        width = len(self.columns)
        full_l, sector_l, district_l, premises_l, street_l, rows_l = (
            s.to_numpy() for s in series[:width]
        )
        full_r, sector_r, district_r, premises_r, street_r, rows_r = (
            s.to_numpy() for s in series[width:]
        )
        rows_l, rows_r = rows_l.astype(np.int64), rows_r.astype(np.int64)
        no_address = (self.sizes[0][rows_l] == 0) | (self.sizes[1][rows_r] == 0)
        similarity = dice_of_rows(self.left_bits, self.right_bits, rows_l, rows_r, *self.sizes)
        full = equal_not_null(full_l, full_r)
        alike = full & ((similarity >= ADDRESS_SAME) | equal_not_null(street_l, street_r))
        other_numbers = ~null_mask(premises_l, premises_r) & (premises_l != premises_r)
        conditions = [
            null_mask(full_l, full_r) & no_address,
            alike & ~other_numbers,
            full & no_address,
            alike,
            full,
            similarity >= ADDRESS_CLOSE,
            similarity >= ADDRESS_SIMILAR,
            similarity >= ADDRESS_PARTIAL,
            equal_not_null(sector_l, sector_r),
            equal_not_null(district_l, district_r),
        ]
        return np.select(conditions, range(len(conditions)), default=len(conditions)).astype(
            np.int8
        )


def build_compare(left: Side, right: Side) -> recordlinkage.Compare:
    """The recordlinkage comparison of two sides, one feature per entry of COMPARISONS."""
    features = {
        "nhs": IdentifierLevels(
            "nhs_token", left.nhs_near, right.nhs_near, "nhs", left.nhs_near2, right.nhs_near2
        ),
        "upn": IdentifierLevels(
            "upn_token", left.upn_near, right.upn_near, "upn", left.upn_near2, right.upn_near2
        ),
        "forename": NameLevels(
            ("forename_token", "forename_alt_token"),
            left.forename_bits,
            right.forename_bits,
            label="forename",
            fallback_columns=("forename_phonetic_token",),
            sizes=(left.filter_sizes["forename"], right.filter_sizes["forename"]),
            edits=(left.forename_edits, right.forename_edits),
        ),
        "surname": NameLevels(
            ("surname_token",),
            left.surname_bits,
            right.surname_bits,
            label="surname",
            disagree=level_code("surname", "disagree"),  # 'swapped' is set afterwards
            sizes=(left.filter_sizes["surname"], right.filter_sizes["surname"]),
            edits=(left.surname_edits, right.surname_edits),
        ),
        "dob": DobLevels(label="dob"),
        "sex": ExactLevels(("sex",), label="sex"),
        "residence": ResidenceLevels(
            left.address_bits,
            right.address_bits,
            label="residence",
            sizes=(left.filter_sizes["address"], right.filter_sizes["address"]),
        ),
        "ethnicity": ExactLevels(("ethnicity", ETHNICITY_GROUP), label="ethnicity"),
        "area": ExactLevels(("la_code",), label="area"),
    }
    return recordlinkage.Compare([features[name] for name in FEATURE_NAMES])


def pair_chunks(pairs: np.ndarray, chunk_pairs: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, pairs[start:start + chunk_pairs]) for each chunk."""
    for start in range(0, len(pairs), chunk_pairs):
        yield start, pairs[start : start + chunk_pairs]


def comparison_levels(
    left: Side, right: Side, pairs: np.ndarray, chunk_pairs: int = COMPARE_CHUNK_PAIRS
) -> np.ndarray:
    """Level codes, shape (n pairs, n comparisons), computed chunk by chunk."""
    compare = build_compare(left, right)
    levels = np.zeros((len(pairs), len(COMPARISONS)), dtype=np.int8)
    for start, chunk in pair_chunks(pairs, chunk_pairs):
        index = pd.MultiIndex.from_arrays([chunk[:, 0], chunk[:, 1]])
        features = compare.compute(index, left.records, right.records)
        computed = features[list(FEATURE_NAMES)].to_numpy(np.int8)
        levels[start : start + len(chunk), FEATURE_COLUMNS] = computed
    swapped = names_swapped(left, right, pairs, levels)
    levels = without_sex_implied_by_forename(with_swapped_names(levels, swapped))
    levels[:, COMPARISON_NAMES.index("novelty")] = name_novelty(left, right, pairs, levels)
    return levels


def names_swapped(left: Side, right: Side, pairs: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """True for pairs whose forename and surname were recorded the wrong way round on one side:
    neither name agrees exactly (forename nor its nickname-resolved form) but the unordered
    name pairs do (name_pair_token)."""
    pair_l = left.records["name_pair_token"].to_numpy(np.int64)[pairs[:, 0]]
    pair_r = right.records["name_pair_token"].to_numpy(np.int64)[pairs[:, 1]]
    forename = levels[:, COMPARISON_NAMES.index("forename")]
    surname = levels[:, COMPARISON_NAMES.index("surname")]
    forename_exact = np.isin(forename, [level_code("forename", n) for n in ("exact", "alt")])
    surname_exact = surname == level_code("surname", "exact")
    return equal_not_null(pair_l, pair_r) & ~forename_exact & ~surname_exact


def name_novelty(left: Side, right: Side, pairs: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The novelty level of each pair: missing where no name differs (each agrees, is missing
    or was swapped); else by the smallest ratio, over the names that differ, of the rarer
    name's share of its agency's records to the commoner's (NOVELTY_RATIOS)."""
    ratio = np.full(len(pairs), np.inf)  # inf: no name differs
    for name, column in NAME_COUNT_COLUMNS.items():
        k = COMPARISON_NAMES.index(name)
        same = [level_code(name, level) for level in NAME_SAME_LEVELS[name]]
        differs = (levels[:, k] != 0) & ~np.isin(levels[:, k], same)
        share_l = left.records[column].to_numpy(np.int64)[pairs[:, 0]] / max(len(left), 1)
        share_r = right.records[column].to_numpy(np.int64)[pairs[:, 1]] / max(len(right), 1)
        low, high = np.minimum(share_l, share_r), np.maximum(share_l, share_r)
        rarer = np.divide(low, high, out=np.ones_like(low), where=high > 0)
        ratio = np.where(differs, np.minimum(ratio, rarer), ratio)
    code = partial(level_code, "novelty")
    conditions = [ratio <= NOVELTY_RATIOS[0], ratio <= NOVELTY_RATIOS[1], np.isfinite(ratio)]
    choices = [code("rarer_20"), code("rarer_4"), code("alike")]
    return np.select(conditions, choices, default=0).astype(np.int8)


def with_swapped_names(levels: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """Swapped names as surname 'swapped' and forename 'missing': one piece of evidence (both
    names agree, crosswise), which as two name disagreements would count against the pair."""
    levels[swapped, COMPARISON_NAMES.index("surname")] = level_code("surname", "swapped")
    levels[swapped, COMPARISON_NAMES.index("forename")] = 0
    return levels


def without_sex_implied_by_forename(levels: np.ndarray) -> np.ndarray:
    """Sex agreement as 'missing' (no evidence) where the forenames agree: a forename implies the
    sex, so for pairs of different children too the sexes then agree, and counting both would
    count one piece of evidence twice."""
    forename = levels[:, COMPARISON_NAMES.index("forename")]
    sex = COMPARISON_NAMES.index("sex")
    named = (forename == level_code("forename", "exact")) | (
        forename == level_code("forename", "alt")
    )
    levels[named & (levels[:, sex] == level_code("sex", "agree")), sex] = 0
    return levels


@dataclass(frozen=True)
class Patterns:
    """The distinct agreement patterns of a level matrix and how many pairs show each."""

    levels: np.ndarray
    counts: np.ndarray
    inverse: np.ndarray  # per pair, the index of its pattern


def agreement_pattern_table(levels: np.ndarray) -> Patterns:
    """Distinct rows of a level matrix, counted in one pass (a mixed-radix code per row)."""
    radices = np.array([len(c.levels) for c in COMPARISONS], dtype=np.int64)
    places = np.concatenate([[1], np.cumprod(radices[:-1])])
    code = levels.astype(np.int64) @ places
    present, inverse, counts = np.unique(code, return_inverse=True, return_counts=True)
    table = (present[:, None] // places) % radices
    return Patterns(table.astype(np.int8), counts.astype(float), inverse.reshape(-1))


def agreement_patterns(levels: np.ndarray) -> list[str]:
    """Readable agreement pattern per pair, e.g. 'nhs:agree|upn:missing|...' (no identifiers)."""
    names = [np.array([f"{c.name}:{lvl}" for lvl in c.levels], dtype=object) for c in COMPARISONS]
    table = agreement_pattern_table(levels.reshape(-1, len(COMPARISONS)))
    text = np.array(
        ["|".join(names[k][row[k]] for k in range(len(COMPARISONS))) for row in table.levels],
        dtype=object,
    )
    return text[table.inverse].tolist()
