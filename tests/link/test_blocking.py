"""Tests of joinedup.link.blocking on integer-coded records: rule keys, the union of rules,
pairs within one agency and the oversized-block guard."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup.link.blocking import BlockingRule, candidate_pairs, rule_keys, same_on

RULES = (same_on("a", "a"), same_on("bc", "b", "c"))


def coded(**columns: list[int]) -> pd.DataFrame:
    return pd.DataFrame({k: np.array(v, dtype=np.int64) for k, v in columns.items()})


def test_rule_keys_are_null_when_any_column_is_null_and_differ_by_column_order() -> None:
    frame = coded(b=[1, 1, -1, 2], c=[2, 2, 2, 1])
    keys = rule_keys(frame, ("b", "c"))
    assert keys[0] == keys[1] != -1 and keys[2] == -1
    assert keys[3] != keys[0]  # (2, 1) is not (1, 2)


def test_candidate_pairs_are_the_deduplicated_union_of_the_rules() -> None:
    left = coded(a=[1, 2, -1], b=[5, 6, 7], c=[0, 0, 0])
    right = coded(a=[1, 1, 3], b=[5, 9, 7], c=[0, 0, 0])
    pairs = candidate_pairs(left, right, RULES)
    # (0, 0) shares both rules but appears once; (2, 2) shares b and c only.
    assert pairs.tolist() == [[0, 0], [0, 1], [2, 2]]


def test_pairs_within_one_agency_have_left_row_below_right_row() -> None:
    frame = coded(a=[1, 1, 1, 2], b=[0, 0, 0, 0], c=[-1, -1, -1, -1])
    assert candidate_pairs(frame, None, RULES).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_oversized_blocks_are_skipped() -> None:
    left = coded(s=[1, 1, 2])
    right = coded(s=[1, 1, 1, 2])
    rule = [BlockingRule("s", ("s",), ("s",))]  # block 1: 2 x 3 pairs, block 2: 1 x 1
    assert len(candidate_pairs(left, right, rule, max_block_pairs=6)) == 7
    assert candidate_pairs(left, right, rule, max_block_pairs=5).tolist() == [[2, 3]]
