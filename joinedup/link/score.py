"""Scored candidate pairs of two agencies, or of one agency with itself (duplicate records).

`score_agency_pair` and `score_within_agency` run the same steps: candidate pairs by blocking,
comparison levels with recordlinkage (chunk by chunk), u from random pairs, m and the prior by EM
without labels, match weights with term-frequency adjustment (for duplicates also weighed against
twins at one birth and home, `duplicates.with_twin_alternative`), and the twin guard. They keep the
pairs whose match probability reaches `settings.link.keep_probability` and count the rest in a
per-record summary, so linking, review and QA downstream never need the full candidate set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup.link.blocking import candidate_pairs
from joinedup.link.compare import Side, agreement_patterns, comparison_levels
from joinedup.link.duplicates import TwinAlternative, fit_twin_alternative, with_twin_alternative
from joinedup.link.model import (
    SURE_MATCH_LEVELS,
    TRAINING_SESSIONS,
    FSModel,
    at_all,
    estimate_u,
    fit_model,
    fit_prior,
    match_probability_from_weight,
    pooled_m,
    records_say_one_child,
    score_pairs,
    session_pairs,
    surely_distinct,
    term_frequency_adjustment,
    twin_guard,
    twin_like,
    u_without_matches,
)
from joinedup.link.records import pair_name
from joinedup.settings import Settings

log = logging.getLogger(__name__)
IDENTIFIER_TOKENS = ("nhs_token", "upn_token")


@dataclass(frozen=True)
class ScoredPairs:
    """The kept scored pairs of one agency pair (or of one agency with itself), a summary per
    record, the fitted model, the number of candidate pairs compared and how many of them look
    like twins (`model.twin_like`; inside one agency: the twins it holds)."""

    name: str
    pairs: pd.DataFrame
    records: pd.DataFrame
    model: FSModel
    candidates: int
    twin_like_pairs: int = 0
    twins: TwinAlternative | None = None  # duplicates only: twins as the alternative


def score_agency_pair(
    left: Side, right: Side, settings: Settings, pairs: np.ndarray | None = None
) -> ScoredPairs:
    """Score the candidate pairs of two agencies' records (`pairs`: those already found by
    `blocking.candidate_pairs_of`; by default found here)."""
    pairs = candidate_pairs(left, right) if pairs is None else pairs
    possible = len(left) * len(right)
    return score_candidates(left, right, pairs, settings, possible)


def score_within_agency(
    side: Side,
    settings: Settings,
    cross_models: Sequence[FSModel] = (),
    pairs: np.ndarray | None = None,
) -> ScoredPairs:
    """Score candidate pairs of one agency's records with each other (left row < right row).

    cross_models: the models of this agency's agency pairs. Their m (pooled) is used and only
    the prior is estimated here, because duplicates are too rare for EM to find their m among
    an agency's own pairs. Without them (an agency linked alone), m is estimated here by EM.
    """
    pairs = candidate_pairs(side) if pairs is None else pairs
    possible = len(side) * (len(side) - 1) // 2
    m = pooled_m(cross_models) if cross_models else None
    return score_candidates(side, side, pairs, settings, possible, m)


def score_candidates(
    left: Side,
    right: Side,
    pairs: np.ndarray,
    settings: Settings,
    possible: int,
    m: Sequence[np.ndarray] | None = None,
) -> ScoredPairs:
    """Compare, fit the model on these pairs (only the prior when m is given), score them and
    keep the likely ones."""
    name = pair_name(left.agency, right.agency)
    levels = comparison_levels(left, right, pairs)
    iterations = settings.link.max_em_iterations

    sessions = [session_pairs(left, right, s) for s in TRAINING_SESSIONS] if m is None else []

    def fit(u: Sequence[np.ndarray]) -> FSModel:
        if m is None:
            return fit_model(sessions, u, len(left), len(right), iterations, record_pairs=possible)
        return fit_prior(levels, m, u, possible)

    sampled = estimate_u(left, right)
    model = fit(u_without_matches(sampled, fit(sampled)))
    adjustment = term_frequency_adjustment(left, right, pairs, levels, model)
    weight, probability = score_pairs(levels, model, adjustment)
    alternative = fit_twin_alternative(levels, model) if left is right else None
    if alternative is not None:
        weight = with_twin_alternative(weight, levels, model, alternative)
        probability = match_probability_from_weight(weight)
    keep = probability >= settings.link.keep_probability
    twins = twin_like(levels)
    log.info("%s: %d candidate pairs, %d kept", name, len(pairs), int(keep.sum()))
    kept = pairs[keep]
    scored = pd.DataFrame(
        {
            "agency_l": left.agency,
            "person_token_l": left.records["person_token"].to_numpy()[kept[:, 0]],
            "agency_r": right.agency,
            "person_token_r": right.records["person_token"].to_numpy()[kept[:, 1]],
            "match_weight": weight[keep],
            "match_probability": probability[keep],
            "agreement": agreement_patterns(levels[keep]),
            "identifier_agrees": identifier_tokens_equal(left, right, kept),
            "may_link": twin_guard(levels[keep]),
            "twin_like": twins[keep],
            "names_birth_home": at_all(levels[keep], SURE_MATCH_LEVELS),  # surely one child
            "one_child": records_say_one_child(levels[keep]),  # even over two numbers
            "numbers_disagree": surely_distinct(levels[keep]),  # surely two children
        }
    )
    return ScoredPairs(
        name=name,
        pairs=scored,
        records=record_summary(left, right, pairs, probability),
        model=model,
        candidates=len(pairs),
        twin_like_pairs=int(twins.sum()),
        twins=alternative,
    )


def identifier_tokens_equal(left: Side, right: Side, pairs: np.ndarray) -> np.ndarray:
    """True where the pair's NHS number token or UPN token is present and equal."""
    agrees = np.zeros(len(pairs), dtype=bool)
    for column in IDENTIFIER_TOKENS:
        a = left.records[column].to_numpy()[pairs[:, 0]]
        b = right.records[column].to_numpy()[pairs[:, 1]]
        agrees |= (a == b) & (a >= 0)
    return agrees


def record_summary(
    left: Side, right: Side, pairs: np.ndarray, probability: np.ndarray
) -> pd.DataFrame:
    """Per record of either side: its candidate pairs and its match mass (the sum of their match
    probabilities, at most 1). Within one agency each record appears once."""
    sides = [(left, right, 0)] if left is right else [(left, right, 0), (right, left, 1)]
    frames = []
    for side, other, column in sides:
        columns = (0, 1) if left is right else (column,)
        candidates = np.zeros(len(side), dtype=np.int64)
        mass = np.zeros(len(side))
        for c in columns:
            candidates += np.bincount(pairs[:, c], minlength=len(side))
            mass += np.bincount(pairs[:, c], weights=probability, minlength=len(side))
        frames.append(
            pd.DataFrame(
                {
                    "agency": side.agency,
                    "person_token": side.records["person_token"].to_numpy(),
                    "other_agency": other.agency,
                    "candidates": candidates,
                    "match_mass": np.minimum(mass, 1.0),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
