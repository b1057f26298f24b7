"""Candidate pairs: record pairs that share a key of any blocking rule.

Works on the integer codes of `compare.prepare_side` (-1 for null): a rule's columns are mixed
into one 64-bit key per record, the right side's keys are sorted once, and each left record's
block is found by binary search, so no pair is held as a Python object.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup.link.records import BIRTH_YEAR

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


# Each rule is tight enough that blocks stay small at a million records per agency (a full date
# of birth alone would put ~150 x 150 records in a block); together they catch a true pair that
# has at most two of: a name typo or nickname, a surname change, a move, a date-of-birth error.
BLOCKING_RULES: tuple[BlockingRule, ...] = (
    same_on("nhs", "nhs_token"),
    same_on("upn", "upn_token"),
    same_on("dob_surname", "dob_token", "surname_phonetic_token"),
    same_on("dob_forename", "dob_token", "forename_phonetic_token"),
    same_on("dob_district", "dob_token", "postcode_district"),
    same_on("ym_names", "birth_ym", "forename_phonetic_token", "surname_phonetic_token"),
    same_on("year_names", BIRTH_YEAR, "forename_alt_token", "surname_token"),
    same_on("postcode_forename", "postcode_token", "forename_alt_token"),
    same_on("postcode_year", "postcode_token", BIRTH_YEAR),
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


def block_pairs(
    keys_l: np.ndarray, keys_r: np.ndarray, max_block_pairs: int, rule: str = ""
) -> np.ndarray:
    """(left row, right row) pairs with equal non-null keys; blocks of more than max_block_pairs
    pairs are skipped (and logged)."""
    rows_l = np.flatnonzero(keys_l != NULL_KEY)
    rows_r = np.flatnonzero(keys_r != NULL_KEY)
    order = rows_r[np.argsort(keys_r[rows_r], kind="stable")]
    sorted_r = keys_r[order]
    key_l = keys_l[rows_l]
    low = np.searchsorted(sorted_r, key_l, "left")
    count = np.searchsorted(sorted_r, key_l, "right") - low
    sorted_l = np.sort(key_l)
    per_key = np.searchsorted(sorted_l, key_l, "right") - np.searchsorted(sorted_l, key_l, "left")
    size = per_key * count
    oversized = size > max_block_pairs
    if oversized.any():
        blocks = len(np.unique(key_l[oversized]))
        log.warning("blocking rule %s: %d oversized blocks skipped", rule, blocks)
    take = (count > 0) & ~oversized
    rows_l, low, count = rows_l[take], low[take], count[take]
    total = int(count.sum())
    first = np.repeat(np.cumsum(count) - count, count)
    right = order[np.repeat(low, count) + (np.arange(total) - first)]
    return np.column_stack([np.repeat(rows_l, count), right])


def candidate_pairs(
    left: pd.DataFrame,
    right: pd.DataFrame | None = None,
    rules: Sequence[BlockingRule] = BLOCKING_RULES,
    max_block_pairs: int = MAX_BLOCK_PAIRS,
) -> np.ndarray:
    """Unique (left row, right row) pairs, shape (n, 2), that share a key of any rule.

    Without `right`, pairs within `left` (duplicates inside one agency): left row < right row.
    """
    within = right is None
    other = left if within else right
    found = []
    for rule in rules:
        keys_l = rule_keys(left, rule.left_on)
        keys_r = keys_l if within and rule.left_on == rule.right_on else None
        keys_r = rule_keys(other, rule.right_on) if keys_r is None else keys_r
        pairs = block_pairs(keys_l, keys_r, max_block_pairs, rule.name)
        found.append(pairs[pairs[:, 0] < pairs[:, 1]] if within else pairs)
    return unique_pairs(np.concatenate([np.empty((0, 2), np.int64), *found]), len(other))


def unique_pairs(pairs: np.ndarray, n_right: int) -> np.ndarray:
    """Deduplicated pairs, sorted by left then right row."""
    width = max(n_right, 1)
    codes = np.sort(pairs[:, 0].astype(np.int64) * width + pairs[:, 1])
    codes = codes[np.concatenate([[True], codes[1:] != codes[:-1]])] if len(codes) else codes
    return np.column_stack([codes // width, codes % width])
