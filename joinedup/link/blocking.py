"""Candidate pairs: record pairs that share a key of any blocking rule."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup.link.records import BIRTH_YEAR

log = logging.getLogger(__name__)
MAX_BLOCK_PAIRS = 50_000

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


BLOCKING_RULES: tuple[BlockingRule, ...] = (
    same_on("nhs", "nhs_token"),
    same_on("upn", "upn_token"),
    same_on("dob", "dob_token"),
    same_on("ym_forename", "birth_ym", "forename_phonetic_token"),
    same_on("ym_surname", "birth_ym", "surname_phonetic_token"),
    same_on("postcode_year", "postcode_token", BIRTH_YEAR),
    same_on("names", "forename_alt_token", "surname_token"),
    same_on("forename_postcode", "forename_alt_token", "postcode_token"),
)


def candidate_pairs(
    left: pd.DataFrame,
    right: pd.DataFrame,
    rules: Sequence[BlockingRule] = BLOCKING_RULES,
    max_block_pairs: int = MAX_BLOCK_PAIRS,
) -> np.ndarray:
    """Unique (left row, right row) pairs, shape (n, 2), that share a key of any rule."""
    found = [rule_pairs(left, right, rule, max_block_pairs) for rule in rules]
    return unique_pairs(np.concatenate([np.empty((0, 2), np.int64), *found]), len(right))


def rule_pairs(
    left: pd.DataFrame, right: pd.DataFrame, rule: BlockingRule, max_block_pairs: int
) -> np.ndarray:
    """Row-id pairs of one blocking rule; blocks of more than max_block_pairs pairs are skipped."""
    columns = list(rule.left_on)
    keys_l = left[columns].dropna()
    keys_r = right[list(rule.right_on)].dropna().set_axis(columns, axis=1)
    block_pairs = keys_l.groupby(columns).size() * keys_r.groupby(columns).size()
    oversized = block_pairs.index[block_pairs > max_block_pairs]
    if len(oversized):
        log.warning("blocking rule %s: %d oversized blocks skipped", rule.name, len(oversized))
        keys_l = keys_l[~keys_l.set_index(columns).index.isin(oversized)]
    merged = keys_l.reset_index(names="_l").merge(keys_r.reset_index(names="_r"), on=columns)
    return merged[["_l", "_r"]].to_numpy(np.int64)


def unique_pairs(pairs: np.ndarray, n_right: int) -> np.ndarray:
    """Deduplicated pairs, sorted by left then right row."""
    codes = np.unique(pairs[:, 0] * max(n_right, 1) + pairs[:, 1])
    return np.column_stack([codes // max(n_right, 1), codes % max(n_right, 1)])
