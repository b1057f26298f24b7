"""Tests of joinedup.link.model: EM over counted agreement patterns, term frequencies."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup.link.compare import COMPARISONS, agreement_pattern_table, prepare_side
from joinedup.link.model import (
    FSModel,
    fit_prior,
    initial_m,
    level_frequencies,
    pooled_m,
    run_em,
    value_shares,
)


def test_em_over_counted_patterns_equals_em_over_every_pair() -> None:
    rng = np.random.default_rng(1)
    radices = [len(c.levels) for c in COMPARISONS]
    levels = np.column_stack([rng.integers(1, r, 500) for r in radices]).astype(np.int8)
    levels[:100, 2:5] = 1  # a block of agreeing pairs, so there is a match class to find
    u = level_frequencies(levels)
    used = list(range(len(COMPARISONS)))
    m_pairs, posterior = run_em(levels, u, initial_m(), used, 50)
    table = agreement_pattern_table(levels)
    m_patterns, per_pattern = run_em(table.levels, u, initial_m(), used, 50, counts=table.counts)
    for a, b in zip(m_pairs, m_patterns, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(per_pattern[table.inverse], posterior, atol=1e-9)


def test_value_shares_count_both_sides_and_leave_null_unshared() -> None:
    def side(agency: str, names: list[str | None]) -> object:
        frame = pd.DataFrame(
            {"person_token": [f"{agency}{i}" for i in range(len(names))], "surname_token": names}
        )
        return prepare_side(agency, frame, 64)

    left = side("education", ["x", "x", None])
    right = side("health", ["x", "y"])
    shares = value_shares(left, right, "surname_token")
    np.testing.assert_allclose(shares[:2], [0.75, 0.75])
    assert np.isnan(shares[2])


def test_pooled_m_ignores_a_model_that_never_saw_a_comparison() -> None:
    start = initial_m()
    seen = tuple(np.full_like(m, 0.2) for m in start)
    unseen = tuple(np.full_like(m, 0.9) for m in start)
    evidence = tuple(float(k != 0) for k in range(len(COMPARISONS)))
    a = FSModel(m=seen, u=seen, prior=0.1, expected_matches=1, evidence=(5.0,) * len(evidence))
    b = FSModel(m=unseen, u=unseen, prior=0.1, expected_matches=1, evidence=evidence)
    pooled = pooled_m([a, b])
    np.testing.assert_allclose(pooled[0], seen[0])  # only a saw comparison 0
    np.testing.assert_allclose(pooled[1], (5 * 0.2 + 0.9) / 6)


def test_fit_prior_keeps_m_and_u_and_finds_no_matches_among_unlike_pairs() -> None:
    rng = np.random.default_rng(2)
    radices = [len(c.levels) for c in COMPARISONS]
    unlike = np.column_stack([np.full(300, r - 1) for r in radices]).astype(np.int8)  # disagree
    u = level_frequencies(np.column_stack([rng.integers(1, r, 500) for r in radices]))
    model = fit_prior(unlike, initial_m(), u, record_pairs=10_000, max_iterations=200)
    assert model.expected_matches < 0.01
    assert all(np.array_equal(a, b) for a, b in zip(model.m, initial_m(), strict=True))
    alike = np.vstack([unlike, np.ones((30, len(COMPARISONS)), dtype=np.int8)])
    assert fit_prior(alike, initial_m(), u, 10_000, 200).expected_matches > 25
