"""Candidate pairs: record pairs that share a key of any blocking rule.

Works on the integer codes of `compare.prepare_side` (-1 for null): a rule's columns are mixed
into one 64-bit key per record, each side's non-null keys are sorted once per rule (for every
pair of sides it takes part in), and each left key's block is found by binary search in the
right side's sorted keys, so no pair is held as a Python object. A near-token rule gives
each record one key per position of its recorded NHS number or UPN (the position's near token),
so records whose numbers are equal or one character apart share a key, whatever else differs;
a Bloom-band rule gives one key per band of sampled address-filter bits. Both need a `Side`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup.link.compare import Side
from joinedup.link.records import BIRTH_YEAR, distinct
from joinedup.pseudonymise import MISSING_NEAR_TOKEN

log = logging.getLogger(__name__)
MAX_BLOCK_PAIRS = 50_000
NULL_KEY = -1

# ----------------------------------------------------------------------------------------------
# 2. Candidate pairs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockingRule:
    """Pairs whose left `left_on` values equal their right `right_on` values (no nulls)."""

    name: str
    left_on: tuple[str, ...]
    right_on: tuple[str, ...]


def same_on(name: str, *columns: str) -> BlockingRule:
    return BlockingRule(name, columns, columns)


@dataclass(frozen=True)
class NearTokenRule:
    """Pairs whose recorded numbers share the near token of some position (the same number, or
    one character apart): `matrix` names the Side's near-token matrix, e.g. 'nhs_near' (or its
    transposition-token matrix, e.g. 'nhs_near2': the same number, or two characters swapped).

    The position is part of each token's keyed hash, so tokens of different positions never
    meet, and a number's block holds only the numbers one character from it (<= 9 per digit).
    """

    name: str
    matrix: str


@dataclass(frozen=True)
class BloomBandRule:
    """Pairs equal on `columns` whose Bloom filters (`bits`: a Side's word matrix, e.g.
    'address_bits') agree on every sampled bit of some band: locality-sensitive hashing of the
    Hamming distance, so filters with a high Dice coefficient share a band with high probability
    and unrelated ones rarely do. The sampled positions are fixed (BAND_SEED), not secret: they
    only pick which bits of a filter to compare."""

    name: str
    columns: tuple[str, ...]
    bits: str = "address_bits"
    bands: int = 12
    band_bits: int = 32


Rule = BlockingRule | NearTokenRule | BloomBandRule
BAND_SEED = 20240901
BAND_CHUNK_ROWS = 1 << 18  # filters turned to one row per word at a time (32 MB)


# Each rule is tight enough that blocks stay small at a million records per agency (a full date
# of birth alone would put ~150 x 150 records in a block); together they catch a true pair that
# has at most two of: a name typo or nickname, a surname change, a move, a date-of-birth error.
# The near-token rules find numbers recorded with a typo and numbers without a valid check digit
# (no exact token), with the rest of the identity garbled, moved or missing; the near-2 rules
# numbers with two adjacent characters transposed (a number's block of one position pair holds
# only the number and its transposition there).
BLOCKING_RULES: tuple[Rule, ...] = (
    same_on("nhs", "nhs_token"),
    same_on("upn", "upn_token"),
    NearTokenRule("nhs_near", "nhs_near"),
    NearTokenRule("upn_near", "upn_near"),
    NearTokenRule("nhs_near2", "nhs_near2"),
    NearTokenRule("upn_near2", "upn_near2"),
    same_on("dob_surname", "dob_token", "surname_phonetic_token"),
    same_on("dob_forename", "dob_token", "forename_phonetic_token"),
    same_on("dob_district", "dob_token", "postcode_district"),
    same_on("ym_names", "birth_ym", "forename_phonetic_token", "surname_phonetic_token"),
    same_on("year_names", BIRTH_YEAR, "forename_alt_token", "surname_token"),
    same_on("year_name_pair", BIRTH_YEAR, "name_pair_token"),  # forename and surname swapped
    same_on("postcode_forename", "postcode_token", "forename_alt_token"),
    same_on("postcode_year", "postcode_token", BIRTH_YEAR),
    # The birth year keyed wrong and the forename garbled, at home: one household's birthday.
    same_on("household_birthday", "household_birthday_token"),
    # The date of birth missing or wrong: the forename and the surname's sound at the same address
    # lines (a surname typo that keeps its Soundex code still meets).
    BloomBandRule("names_address", ("forename_alt_token", "surname_phonetic_token"), bands=20),
    # Both names garbled, swapped or replaced: the same date of birth at the same address lines
    # (+6% candidates on the synthetic areas).
    BloomBandRule("dob_address", ("dob_token",)),
)

MIX_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of 64-bit values."""
    z = values.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rule_keys(records: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One int64 key per record mixing the columns' codes; -1 when any column is null."""
    codes = [records[c].to_numpy(np.int64) for c in columns]
    with np.errstate(over="ignore"):
        key = mix(codes[0])
        for more in codes[1:]:
            key = mix(key * MIX_MULTIPLIER + more.astype(np.uint64))
    key = (key >> np.uint64(1)).astype(np.int64)
    key[np.logical_or.reduce([c == NULL_KEY for c in codes])] = NULL_KEY
    return key


@dataclass(frozen=True)
class SortedKeys:
    """One side's non-null keys under a rule, ascending, with the record row of each key."""

    keys: np.ndarray
    rows: np.ndarray


def sorted_keys(keys: np.ndarray, rows: np.ndarray) -> SortedKeys:
    """The non-null keys sorted, with rows (each key's record row) in the same order."""
    kept = np.flatnonzero(keys != NULL_KEY)
    order = kept[np.argsort(keys[kept])]  # any order within a key: pairs are deduplicated
    return SortedKeys(keys[order], rows[order])


def repeated_keys(keys: SortedKeys) -> SortedKeys:
    """The keys held by more than one row, with their rows."""
    same = keys.keys[1:] == keys.keys[:-1]
    kept = np.zeros(len(keys.keys), dtype=bool)
    kept[1:] |= same
    kept[:-1] |= same
    return SortedKeys(keys.keys[kept], keys.rows[kept])


def sorted_block_pairs(
    left: SortedKeys, right: SortedKeys, max_block_pairs: int, rule: str = ""
) -> np.ndarray:
    """(left row, right row) pairs with equal keys, from each side's sorted keys; blocks of
    more than max_block_pairs pairs are skipped (and logged)."""
    if not len(left.keys) or not len(right.keys):  # e.g. NHS numbers, which education lacks
        return np.empty((0, 2), dtype=np.int64)
    _, per_key, low, count = key_blocks(left, right)
    oversized = per_key * count > max_block_pairs
    if oversized.any():
        log.warning("blocking rule %s: %d oversized blocks skipped", rule, int(oversized.sum()))
    take = (count > 0) & ~oversized
    # each left key row meets its key's block of right rows
    low, count = np.repeat(low[take], per_key[take]), np.repeat(count[take], per_key[take])
    rows_l = left.rows[np.repeat(take, per_key)]
    total = int(count.sum())
    first = np.repeat(np.cumsum(count) - count, count)
    right_rows = right.rows[np.repeat(low, count) + (np.arange(total) - first)]
    return np.column_stack([np.repeat(rows_l, count), right_rows])


def key_blocks(
    left: SortedKeys, right: SortedKeys
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct key of left: its first position and number of rows in left, and its first
    position and number of rows in right (0 where right lacks it)."""
    key_l = left.keys
    starts = np.flatnonzero(np.concatenate([[True], key_l[1:] != key_l[:-1]]))[: len(key_l)]
    per_key = np.diff(np.append(starts, len(key_l)))
    low = np.searchsorted(right.keys, key_l[starts], "left")
    return starts, per_key, low, np.searchsorted(right.keys, key_l[starts], "right") - low


def near_token_keys(near: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, record rows) with one key per record and position: the position's near token as a
    non-negative int64, -1 where the position holds no token."""
    keys = (near.reshape(-1) >> np.uint64(1)).astype(np.int64)
    keys[near.reshape(-1) == MISSING_NEAR_TOKEN] = NULL_KEY
    return keys, np.repeat(np.arange(near.shape[0]), near.shape[1])


def band_positions(width_bits: int, bands: int, band_bits: int) -> np.ndarray:
    """(bands, band_bits) distinct bit positions of a filter, the same in every run."""
    chosen = np.random.default_rng(BAND_SEED).choice(width_bits, bands * band_bits, replace=False)
    return chosen.reshape(bands, band_bits)


def bloom_band_keys(
    words: np.ndarray, column_keys: np.ndarray, bands: int, band_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """(keys, record rows) with one key per record and band: the column key mixed with the band
    number and the band's sampled bits; -1 where the column key is null or the filter empty."""
    positions = band_positions(words.shape[1] * 64, bands, band_bits)
    keys = np.empty((len(words), bands), dtype=np.int64)
    empty = np.zeros((len(words), bands), dtype=bool)
    with np.errstate(over="ignore"):
        for start in range(0, len(words), BAND_CHUNK_ROWS):
            rows = slice(start, start + BAND_CHUNK_ROWS)
            by_word = np.ascontiguousarray(words[rows].T)  # one contiguous row per word
            for band in range(bands):
                value = band_value(by_word, positions[band])
                empty[rows, band] = value == 0
                tag = mix(np.uint64(band) * MIX_MULTIPLIER + value)
                keys[rows, band] = (
                    mix(column_keys[rows].astype(np.uint64) * MIX_MULTIPLIER + tag) >> np.uint64(1)
                ).astype(np.int64)
    keys[empty | (column_keys == NULL_KEY)[:, None]] = NULL_KEY
    return keys.reshape(-1), np.repeat(np.arange(len(words)), bands)


def band_value(by_word: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per filter, bit j set where the filter's bit positions[j] is (bit p: bit p % 64 of word
    p // 64); by_word holds the filters' words one row per word, so each read is contiguous."""
    value = np.zeros(by_word.shape[1], dtype=np.uint64)
    bit = np.empty_like(value)
    for j, position in enumerate(positions):
        np.right_shift(by_word[position // 64], np.uint64(position % 64), out=bit)
        np.bitwise_and(bit, np.uint64(1), out=bit)
        np.bitwise_or(value, np.left_shift(bit, np.uint64(j), out=bit), out=value)
    return value


def side_keys(side: Side | pd.DataFrame, rule: Rule, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """(keys, record rows) of one side under a rule. A bare records frame has no near tokens,
    so a near-token rule gives it no keys."""
    records = side.records if isinstance(side, Side) else side
    if isinstance(rule, BlockingRule):
        return rule_keys(records, rule.left_on if left else rule.right_on), np.arange(len(side))
    if not isinstance(side, Side):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if isinstance(rule, NearTokenRule):
        return near_token_keys(getattr(side, rule.matrix))
    column_keys = rule_keys(records, rule.columns)
    return bloom_band_keys(getattr(side, rule.bits), column_keys, rule.bands, rule.band_bits)


def candidate_pairs(
    left: Side | pd.DataFrame,
    right: Side | pd.DataFrame | None = None,
    rules: Sequence[Rule] = BLOCKING_RULES,
    max_block_pairs: int = MAX_BLOCK_PAIRS,
) -> np.ndarray:
    """Unique (left row, right row) pairs, shape (n, 2), that share a key of any rule.

    Without `right`, pairs within `left` (duplicates inside one agency): left row < right row.
    """
    sides = {"left": left} if right is None else {"left": left, "right": right}
    wanted = ("left", "left" if right is None else "right")
    return candidate_pairs_of(sides, [wanted], rules, max_block_pairs)[wanted]


def candidate_pairs_of(
    sides: Mapping[str, Side | pd.DataFrame],
    wanted: Sequence[tuple[str, str]],
    rules: Sequence[Rule] = BLOCKING_RULES,
    max_block_pairs: int = MAX_BLOCK_PAIRS,
    threads: int = 1,
) -> dict[tuple[str, str], np.ndarray]:
    """The candidate pairs (as `candidate_pairs`) of several pairs of sides at once: for each
    (left, right) name pair of `wanted`, pairs within one side when the names are equal.

    Rule by rule, each side's keys are made and sorted once for all the pairs it takes part in,
    then dropped, so only `threads` rules' keys are held at a time (rules run in that many
    threads; the pairs are the same).
    """
    found: dict[tuple[str, str], list[np.ndarray]] = {w: [] for w in wanted}

    def pairs_of(rule: Rule) -> dict[tuple[str, str], np.ndarray]:
        return rule_pairs(sides, wanted, rule, max_block_pairs)

    with ThreadPoolExecutor(max(threads, 1)) as pool:
        for pairs in pool.map(pairs_of, rules):
            for w, codes in pairs.items():
                found[w].append(codes)
    return {
        (name_l, name_r): pairs_of_codes(
            distinct(np.concatenate([np.empty(0, np.int64), *found.pop((name_l, name_r))])),
            len(sides[name_r]),
        )
        for name_l, name_r in wanted
    }


def rule_pairs(
    sides: Mapping[str, Side | pd.DataFrame],
    wanted: Sequence[tuple[str, str]],
    rule: Rule,
    max_block_pairs: int,
) -> dict[tuple[str, str], np.ndarray]:
    """One rule's distinct pairs as codes (`codes_of_pairs`) for each wanted pair of sides, each
    side's keys made once (a rule with the same columns on both sides gives a side the same keys
    as left and as right). A pair meets in every band or position it shares, so a near-token or
    Bloom-band rule finds most pairs several times: they are dropped here, rule by rule, so the
    repeats of all rules are never held at once (at 100k, 3.2 of 11 million codes remain)."""
    symmetric = not isinstance(rule, BlockingRule) or rule.left_on == rule.right_on
    cache: dict[tuple[str, bool], SortedKeys] = {}

    def keys_of(name: str, left: bool) -> SortedKeys:
        left = left or symmetric
        if (name, left) not in cache:
            cache[(name, left)] = sorted_keys(*side_keys(sides[name], rule, left))
        return cache[(name, left)]

    found = {}
    for name_l, name_r in wanted:
        left_keys, right_keys = keys_of(name_l, True), keys_of(name_r, False)
        if left_keys is right_keys:  # one side with itself: only a repeated key makes a pair
            left_keys = right_keys = repeated_keys(left_keys)
        pairs = sorted_block_pairs(left_keys, right_keys, max_block_pairs, rule.name)
        pairs = pairs[pairs[:, 0] < pairs[:, 1]] if name_l == name_r else pairs
        found[(name_l, name_r)] = distinct(codes_of_pairs(pairs, len(sides[name_r])))
    return found


def codes_of_pairs(pairs: np.ndarray, n_right: int) -> np.ndarray:
    """Each pair as one int64, left row * n_right + right row (half the memory of the pair)."""
    return pairs[:, 0].astype(np.int64) * max(n_right, 1) + pairs[:, 1]


def pairs_of_codes(codes: np.ndarray, n_right: int) -> np.ndarray:
    """The (left row, right row) pairs of codes_of_pairs."""
    width = max(n_right, 1)
    return np.column_stack([codes // width, codes % width])


def unique_pairs(pairs: np.ndarray, n_right: int) -> np.ndarray:
    """Deduplicated pairs, sorted by left then right row."""
    return pairs_of_codes(distinct(codes_of_pairs(pairs, n_right)), n_right)


SAMPLE_SEED = 20240902


def pairs_sharing(
    left: Side, right: Side, columns: Sequence[str], size: int, seed: int = SAMPLE_SEED
) -> tuple[np.ndarray, int]:
    """Up to `size` (left row, right row) pairs equal on `columns` (no nulls; within one side,
    two different records), and how many such pairs there are: all of them when there are no
    more than `size`, else a uniform sample drawn with replacement (reproducible)."""
    same = left is right
    keys_l = sorted_keys(rule_keys(left.records, columns), np.arange(len(left)))
    keys_r = (
        keys_l if same else sorted_keys(rule_keys(right.records, columns), np.arange(len(right)))
    )
    starts, per_key, low, count = key_blocks(keys_l, keys_r)
    block_pairs = per_key * (per_key - 1) // 2 if same else per_key * count
    total = int(block_pairs.sum())
    if total <= size:
        pairs = sorted_block_pairs(keys_l, keys_r, np.iinfo(np.int64).max)
        return (pairs[pairs[:, 0] < pairs[:, 1]] if same else pairs), total
    rng = np.random.default_rng(seed)
    block = np.searchsorted(np.cumsum(block_pairs), rng.integers(0, total, size), "right")
    first = rng.integers(0, per_key[block])
    if same:  # another record of the block: a step of 1 to size - 1 round the block
        second = (first + 1 + rng.integers(0, per_key[block] - 1)) % per_key[block]
        rows_r = keys_l.rows[starts[block] + second]
    else:
        rows_r = keys_r.rows[low[block] + rng.integers(0, count[block])]
    return np.column_stack([keys_l.rows[starts[block] + first], rows_r]), total
