"""Tests of joinedup.link.model: EM over counted agreement patterns, term frequencies, the twin
guard."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup.link.compare import (
    COMPARISON_NAMES,
    COMPARISONS,
    agreement_pattern_table,
    level_code,
    prepare_side,
)
from joinedup.link.model import (
    TRAINING_SESSIONS,
    FSModel,
    SessionPairs,
    expected_twin_pairs,
    fit_model,
    fit_prior,
    initial_m,
    level_frequencies,
    pooled_m,
    records_say_one_child,
    run_em,
    sure_match_recall,
    sure_matches,
    surely_distinct,
    twin_guard,
    twin_guard_needed,
    twin_like,
    u_without_matches,
    value_shares,
)
from tests.link.levels import pairs_at


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


TWINS = {
    "forename": "disagree",
    "surname": "exact",
    "dob": "exact",
    "residence": "postcode_address",
}


SIBLINGS = TWINS | {"dob": "disagree"}
SURE = {"forename": "exact", "surname": "exact", "dob": "exact", "residence": "postcode_address"}


def test_fit_prior_keeps_m_and_u_and_counts_only_sure_matches() -> None:
    """However many siblings (one surname and home) there are among the candidates, the prior
    comes from the pairs agreeing on a number, or on names, birth date and home: 30 such pairs
    (and a pseudo-count of one) found by a rule with recall 0.9 are 34.4 matches among 100,000
    record pairs; none sure is one pseudo-match, not proof of none."""
    m = tuple(np.array([0.0, 0.9, *np.full(len(c.levels) - 2, 0.1 / (len(c.levels) - 2))])
              for c in COMPARISONS)  # fmt: skip
    u = tuple(np.full(len(c.levels), 1.0 / len(c.levels)) for c in COMPARISONS)
    siblings = pairs_at(5_000, **SIBLINGS, upn="disagree")
    sure = pairs_at(30, upn="agree", **SURE)
    model = fit_prior(np.vstack([siblings, sure]), m, u, record_pairs=100_000)
    upn_observed = 1.0  # every pair has a UPN on both sides; no NHS numbers
    recall = 1 - (1 - upn_observed * 0.9) * (1 - 0.9**4)
    assert np.isclose(model.expected_matches, 31 / recall)
    assert np.isclose(model.prior, 31 / recall / 100_000)
    assert model.m is not m and all(np.array_equal(a, b) for a, b in zip(model.m, m, strict=True))
    assert np.isclose(fit_prior(siblings, m, u, record_pairs=100_000).expected_matches, 1 / recall)


def test_sure_matches_agree_on_a_number_or_on_names_birth_and_home() -> None:
    rows = np.vstack(
        [pairs_at(nhs="agree"), pairs_at(upn="agree", **TWINS), pairs_at(**SURE), pairs_at(**TWINS),
         pairs_at(**SURE | {"residence": "postcode"}), pairs_at(upn="one_character")]
    )  # fmt: skip
    assert sure_matches(rows).tolist() == [True, True, True, False, False, False]


def test_sure_match_recall_counts_only_the_comparisons_observed() -> None:
    """No numbers observed: the rule finds a match only through names, birth and home."""
    m = initial_m()  # 0.9 on each best level
    rows = pairs_at(**SURE)
    assert np.isclose(sure_match_recall(rows, m), 0.9**4)
    disagree = pairs_at(nhs="disagree", **SURE)
    assert np.isclose(sure_match_recall(disagree, m), 1 - 0.1 * (1 - 0.9**4))


def test_twin_guard_asks_close_forenames_of_pairs_born_together_at_one_home() -> None:
    """Twins' forenames can be as close as one nickname or Dice 0.75 (ALEXANDER and ALEXANDRA).
    A pair with one surname, birth date and home whose numbers disagree links only on the same
    forename or a keying error of it (Dice >= 0.9); without numbers to tell, or elsewhere, any
    forename agreement is enough."""
    for level, may in [("exact", True), ("dice90", True), ("alt", False), ("dice75", False),
                       ("dice50", False), ("phonetic", False), ("disagree", False)]:  # fmt: skip
        twins = pairs_at(**TWINS | {"forename": level}, upn="disagree")
        assert twin_guard(twins).tolist() == [may]
        assert twin_like(twins).tolist() == [not may]
        no_numbers = pairs_at(**TWINS | {"forename": level})
        assert twin_guard(no_numbers).tolist() == [level != "disagree"]
    assert twin_guard(pairs_at(**TWINS | {"forename": "dice50"}, upn="transposed")).all()
    assert twin_guard(
        pairs_at(**TWINS | {"forename": "dice50", "dob": "year"}, nhs="disagree")
    ).all()
    assert not twin_guard(pairs_at(**TWINS | {"dob": "year"})).any()


def test_records_say_one_child_by_a_close_number_or_one_forename_birth_and_home() -> None:
    """Two records of one agency with two numbers are one child where the other number agrees
    or is a keying error, or where forename, birth date and home agree (a surname recorded
    double-barrelled, an address missing on one side). Twins differ in forename; look-alikes
    live apart."""
    two_nhs = {"nhs": "disagree"}
    one_child = [
        pairs_at(**two_nhs, upn="agree", **TWINS | {"forename": "dice50"}),
        pairs_at(**two_nhs, upn="transposed"),
        pairs_at(**two_nhs, **SURE),
        pairs_at(**two_nhs, **SURE | {"surname": "dice50"}),
        pairs_at(**two_nhs, **SURE | {"residence": "postcode"}),
    ]
    two_children = [
        pairs_at(**two_nhs, **TWINS),
        pairs_at(**two_nhs, **TWINS | {"forename": "dice90"}),
        pairs_at(**two_nhs, **SURE | {"residence": "address"}),  # one address, another postcode
        pairs_at(**two_nhs, **SURE | {"residence": "postcode_other_address"}),
        pairs_at(**two_nhs, **SURE | {"dob": "year_month"}),
        pairs_at(**two_nhs, **SURE | {"surname": "disagree"}),
        pairs_at(**two_nhs, upn="disagree", **SURE | {"residence": "district"}),
    ]
    assert records_say_one_child(np.vstack(one_child)).all()
    assert not records_say_one_child(np.vstack(two_children)).any()


def test_surely_two_children_leaves_out_one_child_registered_under_a_mistyped_number() -> None:
    """Numbers that disagree say two children, unless the records themselves say one: the same
    forename, birth date and home (one child, one number mistyped), or another number close.
    Counted as two children, such pairs made the other agencies' 'shared' look common among
    pairs of two children, and weak (at 100k records per agency, 6 of 10 in health)."""
    assert surely_distinct(pairs_at(nhs="disagree", **TWINS)).all()
    assert surely_distinct(pairs_at(nhs="disagree", **SURE | {"residence": "disagree"})).all()
    assert not surely_distinct(pairs_at(nhs="disagree", **SURE)).any()
    assert not surely_distinct(pairs_at(nhs="disagree", **SURE | {"residence": "postcode"})).any()
    assert not surely_distinct(pairs_at(nhs="disagree", upn="one_character")).any()
    assert not surely_distinct(pairs_at(**SURE)).any()


def test_twin_like_pairs_share_surname_dob_and_home_with_other_forenames_and_numbers() -> None:
    assert twin_like(pairs_at(**TWINS)).tolist() == [True]
    assert twin_like(pairs_at(**TWINS | {"surname": "dice50"})).tolist() == [True]  # a typo
    # Not twin-like: forenames agree, a number agrees, another surname, birth date or home.
    assert not twin_like(pairs_at(**TWINS | {"forename": "dice50"})).any()
    assert not twin_like(pairs_at(**TWINS, nhs="one_character")).any()
    assert not twin_like(pairs_at(**TWINS | {"surname": "disagree"})).any()
    assert not twin_like(pairs_at(**TWINS | {"dob": "year"})).any()
    assert not twin_like(pairs_at(**TWINS | {"residence": "district"})).any()


def test_expected_twin_pairs_across_agencies_from_the_twins_inside_each() -> None:
    """100 twin pairs among 1,000 children, coverage 0.8 and 0.5: 64 and 25 twin pairs inside,
    80 across; an agency without twins inside does not lower the other's estimate."""
    assert np.isclose(expected_twin_pairs(64, 800, 25, 500), 80)
    assert np.isclose(expected_twin_pairs(0, 800, 25, 500), 80)
    assert expected_twin_pairs(0, 800, 0, 500) == 0.0


def test_twin_guard_stays_where_twins_inside_the_agencies_explain_the_twin_like_pairs() -> None:
    """Synthetic areas (68 twin pairs expected, 33 twin-like across) keep it; FEBRL (none
    expected, 14 across) lifts it; so few twin-like pairs that one twin pair explains them keep
    it."""
    assert twin_guard_needed(33, 68.0, 0.9)
    assert not twin_guard_needed(14, 0.0, 0.9)
    assert twin_guard_needed(5, 0.0, 0.9)
    assert twin_guard_needed(0, 0.0, 0.9)


def test_u_without_matches_takes_the_matches_out_of_the_random_pairs() -> None:
    """Random pairs of a file and its duplicates (prior 1/5,000): nine in ten sampled number
    agreements are matches, so u of 'agree' falls tenfold; a level rarer among random pairs
    than among matches stops at the rarest sampled share; shares still sum to one."""
    m = tuple(np.array([0.0, 0.9, 0.05, 0.05]) for _ in COMPARISONS)
    u = tuple(np.array([0.0, 2e-4, 1e-6, 1 - 2e-4 - 1e-6]) for _ in COMPARISONS)
    model = FSModel(m=m, u=u, prior=2e-4, expected_matches=5000)
    clean = u_without_matches(u, model)[0]
    assert np.isclose(clean[1], 2e-5, rtol=0.01)
    assert np.isclose(clean[2], 1e-6, rtol=0.01)
    assert np.isclose(clean.sum(), 1.0) and clean[0] == 0.0
    rare = FSModel(m=m, u=u, prior=1e-12, expected_matches=1)
    assert np.allclose(u_without_matches(u, rare)[0], u[0])


def test_em_leaves_twins_out_of_the_matches_and_weighs_sessions_by_what_they_saw() -> None:
    """Twins (one surname, birth date and home, other forenames; half of them of the other sex)
    agree like matches on all the same-dob session sees but forename and sex. Counted as
    matches, they would put m(sex disagree) near 0.2 and m(forename disagree) near 0.17 here.
    Left out, both stay near 0, as among the matches. The same-names session never sees sex
    (forenames that agree imply it), so its m for sex must not dilute the other session's."""
    match = {"forename": "exact", "surname": "exact", "dob": "exact",
             "residence": "postcode_address"}  # fmt: skip
    typo = match | {"forename": "dice75", "sex": "agree"}
    other = {"forename": "disagree", "surname": "disagree", "residence": "disagree"}
    same_dob = np.concatenate(
        [
            pairs_at(900, **match),
            pairs_at(100, **typo),
            pairs_at(100, **TWINS, sex="agree"),
            pairs_at(100, **TWINS, sex="disagree"),
            pairs_at(10_000, **other, dob="exact", sex="agree"),
            pairs_at(10_000, **other, dob="exact", sex="disagree"),
        ]
    )
    same_names = np.concatenate(
        [pairs_at(1_000, **match), pairs_at(50, **match | {"dob": "disagree"}, sex="agree")]
    )
    u = tuple(
        np.array([0.0, 0.5, 0.5])
        if c.name == "sex"
        else np.array([0.0, 0.01, *np.full(len(c.levels) - 2, 0.99 / (len(c.levels) - 2))])
        for c in COMPARISONS
    )
    sessions = [SessionPairs(same_dob, len(same_dob)), SessionPairs(same_names, len(same_names))]
    assert [s.name for s in TRAINING_SESSIONS] == ["same_dob", "same_names"]
    model = fit_model(sessions, u, 5_000, 5_000, 100)
    sex, forename = COMPARISON_NAMES.index("sex"), COMPARISON_NAMES.index("forename")
    assert model.m[sex][level_code("sex", "disagree")] < 0.01
    assert model.m[forename][level_code("forename", "disagree")] < 0.01
    assert model.m[forename][level_code("forename", "exact")] > 0.85
