"""The unsupervised Fellegi-Sunter model: u from random pairs, m by EM, match weights."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from joinedup.link.blocking import pairs_sharing, unique_pairs
from joinedup.link.compare import (
    COMPARISON_NAMES,
    COMPARISONS,
    DICE_LEVELS,
    NAME_SIMILAR_LEVELS,
    NULL_CODE,
    Side,
    agreement_pattern_table,
    comparison_levels,
    level_code,
)

log = logging.getLogger(__name__)
RANDOM_SEED = 20240901
PSEUDO_COUNT = 1.0
U_SAMPLE_PAIRS = 200_000
SESSION_SAMPLE_PAIRS = 200_000  # record pairs per training session, at most

# ----------------------------------------------------------------------------------------------
# 4. Fellegi-Sunter model, scoring and the twin guard
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSession:
    """EM over record pairs equal on `columns`: a uniform sample of all such pairs, not only the
    candidates, because candidates met through the other blocking rules (a birthday and a
    postcode district, a birth year and both names) agree beyond chance on what those rules
    share, which EM with u from random pairs takes for matches (at a million records per agency
    it took half its "matches" from them). The comparisons at `agree_on`, which the columns fix,
    are left out of the session (their m is estimated in another session).

    Pairs that look like twins (`twin_like`: one surname, birth date and home, other forenames)
    are left out too. They agree on everything but forename and sex, so EM takes them for
    matches. At 100k children per agency this put m(sex disagree) at 0.19 and m(forename
    disagree) at 0.036, against 0.0000 and 0.0002 among the true matches. The twin guard, not the
    model, decides those pairs. Where it is lifted (FEBRL, whose twin-like pairs are one person
    with a replaced forename), m of a forename disagreement is learned from the matches that
    live elsewhere: FEBRL4's F1 is unchanged."""

    name: str
    columns: tuple[str, ...]
    agree_on: tuple[tuple[str, str], ...]


TRAINING_SESSIONS: tuple[TrainingSession, ...] = (
    TrainingSession("same_dob", ("dob_token",), (("dob", "exact"),)),
    TrainingSession(
        "same_names",
        ("forename_token", "surname_token"),
        (("forename", "exact"), ("surname", "exact")),
    ),
)
PRIOR_SESSION = TRAINING_SESSIONS[0]


@dataclass(frozen=True)
class SessionPairs:
    """The comparison levels of a training session's pairs, and how many record pairs they were
    drawn from (each stands for total / len(levels) of them)."""

    levels: np.ndarray
    total: int

    @property
    def scale(self) -> float:
        return self.total / max(len(self.levels), 1)


def session_pairs(
    left: Side, right: Side, session: TrainingSession, size: int = SESSION_SAMPLE_PAIRS
) -> SessionPairs:
    """A training session's record pairs (within one agency when left is right), compared."""
    pairs, total = pairs_sharing(left, right, session.columns, size)
    return SessionPairs(comparison_levels(left, right, pairs), total)


@dataclass(frozen=True)
class FSModel:
    """m and u per comparison level (index 0, 'missing', unused) and the prior match odds."""

    m: tuple[np.ndarray, ...]
    u: tuple[np.ndarray, ...]
    prior: float
    expected_matches: float
    # Per comparison, the expected matches (non-missing) its m was estimated from (0: not seen).
    evidence: tuple[float, ...] = ()

    def bayes_factors(self) -> tuple[np.ndarray, ...]:
        """log2(m/u) per level; 0 for 'missing'."""
        return tuple(
            np.concatenate([[0.0], np.log2(m[1:] / u[1:])])
            for m, u in zip(self.m, self.u, strict=True)
        )

    @property
    def prior_weight(self) -> float:
        return float(np.log2(self.prior / (1.0 - self.prior)))

    def to_dict(self) -> dict:
        factors = self.bayes_factors()
        return {
            "prior": self.prior,
            "prior_weight": self.prior_weight,
            "expected_matches": self.expected_matches,
            "m_from": "this pair's EM" if self.evidence else "the cross-agency models",
            "comparisons": {
                c.name: {
                    level: {
                        "m": float(self.m[k][i]),
                        "u": float(self.u[k][i]),
                        "weight": float(factors[k][i]),
                    }
                    for i, level in enumerate(c.levels)
                    if i > 0
                }
                for k, c in enumerate(COMPARISONS)
            },
        }


def initial_m() -> tuple[np.ndarray, ...]:
    """Starting m: 0.9 on the best level, the rest shared decreasingly."""
    starts = []
    for comparison in COMPARISONS:
        n = len(comparison.observed_levels)
        rest = 0.1 * np.arange(n - 1, 0, -1) / max(np.arange(n - 1, 0, -1).sum(), 1)
        starts.append(np.concatenate([[0.0, 0.9], rest]) if n > 1 else np.array([0.0, 1.0]))
    return tuple(starts)


def level_frequencies(
    levels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Weighted share of each non-missing level per comparison, with a pseudo-count per level."""
    out = []
    for k, comparison in enumerate(COMPARISONS):
        counts = np.bincount(levels[:, k], weights=weights, minlength=len(comparison.levels))
        counts = counts.astype(float)
        counts[1:] += PSEUDO_COUNT / len(comparison.observed_levels)
        counts[0] = 0.0
        out.append(counts / counts.sum())
    return tuple(out)


def random_pairs(n_left: int, n_right: int, size: int, seed: int = RANDOM_SEED) -> np.ndarray:
    """Uniformly drawn (left row, right row) pairs, reproducible."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, n_left, size), rng.integers(0, n_right, size)])


def estimate_u(
    left: Side, right: Side, sample_pairs: int = U_SAMPLE_PAIRS
) -> tuple[np.ndarray, ...]:
    """u probabilities: level frequencies among random record pairs (nearly all non-matches).

    When both sides are the same records (duplicates within an agency), a record is never
    paired with itself.
    """
    size = min(sample_pairs, len(left.records) * len(right.records))
    pairs = unique_pairs(
        random_pairs(len(left.records), len(right.records), size), len(right.records)
    )
    if left is right:
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return level_frequencies(comparison_levels(left, right, pairs))


def u_without_matches(u: Sequence[np.ndarray], model: FSModel) -> tuple[np.ndarray, ...]:
    """u with the matches among its random pairs taken out: a random pair is a match with the
    model's prior probability, so the sampled frequencies are prior * m + (1 - prior) * u.

    Where matches are dense (FEBRL: one pair in 5,000) they are most of the random pairs that
    agree on a number or an address, and u counted with them halves the weight of agreement.
    A level is never made rarer than the comparison's rarest sampled level (its pseudo-count).
    """
    clean = []
    for sampled, m in zip(u, model.m, strict=True):
        observed = sampled[1:]
        corrected = (observed - model.prior * m[1:]) / (1.0 - model.prior)
        corrected = np.maximum(corrected, observed.min())
        clean.append(np.concatenate([[0.0], corrected / corrected.sum()]))
    return tuple(clean)


def at_levels(levels: np.ndarray, comparison: str, names: Sequence[str]) -> np.ndarray:
    """True for pairs whose comparison is at one of the named levels."""
    codes = [level_code(comparison, name) for name in names]
    return np.isin(levels[:, COMPARISON_NAMES.index(comparison)], codes)


def at_all(levels: np.ndarray, agree_on: Sequence[tuple[str, str]]) -> np.ndarray:
    """True for pairs at every (comparison, level) given."""
    return at_each(levels, [(comparison, (level,)) for comparison, level in agree_on])


def at_each(levels: np.ndarray, named: Sequence[tuple[str, Sequence[str]]]) -> np.ndarray:
    """True where every named comparison is at one of its named levels (all pairs if none)."""
    mask = np.ones(len(levels), dtype=bool)
    for name, among in named:
        mask &= at_levels(levels, name, among)
    return mask


def session_mask(levels: np.ndarray, session: TrainingSession) -> np.ndarray:
    """Pairs that agree on every (comparison, level) the session is blocked on."""
    return at_all(levels, session.agree_on)


def log2_ratio_per_pair(
    levels: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray], used: Sequence[int]
) -> np.ndarray:
    """Sum over the used comparisons of log2(m/u) at each pair's level (missing: 0)."""
    total = np.zeros(len(levels))
    for k in used:
        factors = np.concatenate([[0.0], np.log2(m[k][1:] / u[k][1:])])
        total += factors[levels[:, k]]
    return total


def match_probability_from_weight(weight: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp2(-np.asarray(weight, dtype=float)))


def run_em(
    levels: np.ndarray,
    u: Sequence[np.ndarray],
    m_start: Sequence[np.ndarray],
    used: Sequence[int],
    max_iterations: int,
    tolerance: float = 1e-6,
    counts: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """EM for m (u fixed) over the used comparisons; returns m and each row's posterior.

    Rows may be distinct agreement patterns weighted by `counts` (how many pairs show each).
    """
    weights = np.ones(len(levels)) if counts is None else np.asarray(counts, dtype=float)
    m = [np.array(x, dtype=float) for x in m_start]
    share = 0.5
    posterior = np.full(len(levels), share)
    for _ in range(max_iterations):
        weight = np.log2(share / (1 - share)) + log2_ratio_per_pair(levels, m, u, used)
        posterior = match_probability_from_weight(weight)
        share = float(np.clip((posterior * weights).sum() / weights.sum(), 1e-6, 1 - 1e-6))
        updated = list(m)
        fitted = level_frequencies(levels, posterior * weights)
        for k in used:
            updated[k] = fitted[k]
        change = max(float(np.abs(updated[k] - m[k]).max()) for k in used) if used else 0.0
        m = updated
        if change < tolerance:
            break
    return m, posterior


def fit_model(
    sessions: Sequence[SessionPairs],
    u: Sequence[np.ndarray],
    n_left: int,
    n_right: int,
    max_iterations: int,
    record_pairs: int | None = None,
) -> FSModel:
    """m by EM in each training session (`sessions`: the pairs of each of TRAINING_SESSIONS),
    averaged over the sessions that estimate it, each weighted by the expected matches it saw the
    comparison on (sex is seen only where forenames differ, so hardly ever in the same-names
    session); the prior from the expected match count of the prior session divided by its
    blocked m.

    EM runs over the distinct agreement patterns weighted by their counts (the same fixed point
    as over the pairs, in a fraction of the time). `record_pairs` is the number of possible
    record pairs (default n_left * n_right; n (n - 1) / 2 within one agency).
    """
    start = initial_m()
    estimates: dict[int, list[np.ndarray]] = {k: [] for k in range(len(COMPARISONS))}
    seen_on: dict[int, list[float]] = {k: [] for k in range(len(COMPARISONS))}
    seen_matches: dict[str, float] = {}
    for session, pairs in zip(TRAINING_SESSIONS, sessions, strict=True):
        patterns = agreement_pattern_table(pairs.levels)
        blocked = {COMPARISON_NAMES.index(c) for c, _ in session.agree_on}
        used = [k for k in range(len(COMPARISONS)) if k not in blocked]
        inside = session_mask(patterns.levels, session) & ~twin_like(patterns.levels)
        if not patterns.counts[inside].sum():
            continue
        subset, counts = patterns.levels[inside], patterns.counts[inside] * pairs.scale
        m, posterior = run_em(subset, u, start, used, max_iterations, counts=counts)
        seen_matches[session.name] = float((posterior * counts).sum())
        for k in used:
            estimates[k].append(m[k])
            seen_on[k].append(float((posterior * counts)[subset[:, k] != 0].sum()))
    m_final = tuple(
        np.average(estimates[k], axis=0, weights=seen_on[k]) if sum(seen_on[k]) > 0 else start[k]
        for k in range(len(COMPARISONS))
    )
    evidence = [sum(seen_on[k]) for k in range(len(COMPARISONS))]
    possible = n_left * n_right if record_pairs is None else record_pairs
    expected = expected_match_count(
        seen_matches.get(PRIOR_SESSION.name, 0.0), m_final, min(n_left, n_right)
    )
    prior = expected / max(possible, 1)
    return FSModel(
        m=m_final,
        u=tuple(u),
        prior=float(np.clip(prior, 1e-12, 0.5)),
        expected_matches=expected,
        evidence=tuple(float(e) for e in evidence),
    )


def pooled_m(models: Sequence[FSModel]) -> tuple[np.ndarray, ...]:
    """Per comparison, the models' m averaged with weights the expected matches each saw it on
    (the starting m where no model saw it)."""
    start = initial_m()
    pooled = []
    for k in range(len(COMPARISONS)):
        weights = np.array([model.evidence[k] if model.evidence else 0.0 for model in models])
        if weights.sum() > 0:
            pooled.append(np.average([model.m[k] for model in models], axis=0, weights=weights))
        else:
            pooled.append(start[k])
    return tuple(pooled)


def fit_prior(
    levels: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray], record_pairs: int
) -> FSModel:
    """A model with m and u given and only the prior estimated, from the pairs that are surely
    matches (`sure_matches`, plus a pseudo-count of one) divided by the share of matches that
    rule finds.

    For duplicates within one agency, where matches are too rare for EM to find m, or even the
    prior: with m fixed, EM over the candidate pairs still settles where siblings (one surname,
    one home, another forename and birthday: about +3 bits at these m and u) count as
    matches, which puts the prior hundreds of times too high, and then any pair whose record
    lacks its NHS number or UPN and shares a forename and a birth year links.
    """
    sure = float(sure_matches(levels).sum()) + PSEUDO_COUNT  # none sure is not proof of none
    expected = sure / sure_match_recall(levels, m)
    prior = np.clip(expected / max(record_pairs, 1), 1e-12, 0.5)
    return FSModel(
        m=tuple(np.asarray(x, dtype=float) for x in m),
        u=tuple(u),
        prior=float(prior),
        expected_matches=float(expected),
    )


# Besides an agreeing NHS number or UPN, the agreement that marks a pair as surely one person.
SURE_MATCH_LEVELS = (
    ("forename", "exact"),
    ("surname", "exact"),
    ("dob", "exact"),
    ("residence", "postcode_address"),
)
IDENTIFIERS = ("nhs", "upn")


def sure_matches(levels: np.ndarray) -> np.ndarray:
    """Pairs that agree on an NHS number or UPN, or on both names, the date of birth and the home
    (full postcode and address lines): siblings and twins never do."""
    return identifier_agreement(levels) | at_all(levels, SURE_MATCH_LEVELS)


def sure_match_recall(levels: np.ndarray, m: Sequence[np.ndarray]) -> float:
    """The share of matches that sure_matches finds, by m (comparisons independent given a
    match), each comparison observed as often as among the candidate pairs."""

    def agrees(comparison: str, level: str) -> float:
        k = COMPARISON_NAMES.index(comparison)
        observed = float((levels[:, k] != 0).mean()) if len(levels) else 0.0
        return observed * float(m[k][level_code(comparison, level)])

    no_identifier = np.prod([1.0 - agrees(name, "agree") for name in IDENTIFIERS])
    everything = np.prod([agrees(c, level) for c, level in SURE_MATCH_LEVELS])
    return float(np.clip(1.0 - no_identifier * (1.0 - everything), 1e-6, 1.0))


def expected_match_count(seen: float, m: Sequence[np.ndarray], most: int) -> float:
    """Matches found in the prior session scaled up by the share of matches it can see."""
    visible = 1.0
    for comparison, level in PRIOR_SESSION.agree_on:
        visible *= m[COMPARISON_NAMES.index(comparison)][level_code(comparison, level)]
    expected = seen / max(visible, 1e-9)
    return float(np.clip(expected, 1.0, max(most, 1)))


def score_pairs(
    levels: np.ndarray, model: FSModel, adjustment: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Match weight (log2 prior odds + log2 Bayes factors + adjustment) and probability."""
    weight = model.prior_weight + log2_ratio_per_pair(
        levels, model.m, model.u, range(len(COMPARISONS))
    )
    weight = weight + adjustment
    return weight, match_probability_from_weight(weight)


TERM_FREQUENCY_COLUMNS = {"forename": "forename_token", "surname": "surname_token"}


def value_shares(left: Side, right: Side, column: str) -> np.ndarray:
    """Per left record, its value's share among the non-null values of both sides (NaN: null)."""
    own = left.records[column].to_numpy(np.int64)
    values = own if left is right else np.concatenate([own, right.records[column].to_numpy()])
    values = values[values != NULL_CODE]
    distinct, counts = np.unique(values, return_counts=True)
    where = np.clip(np.searchsorted(distinct, own), 0, max(len(distinct) - 1, 0))
    shares = np.full(len(own), np.nan)
    if len(distinct):
        found = (distinct[where] == own) & (own != NULL_CODE)
        shares[found] = counts[where[found]] / len(values)
    return shares


def term_frequency_adjustment(
    left: Side, right: Side, pairs: np.ndarray, levels: np.ndarray, model: FSModel
) -> np.ndarray:
    """Extra log2 weight for exact name agreement on a rare name, less for a common one.

    The u of an exact agreement on one value is that value's share of the two sides' records;
    the model's u for 'exact' is the average over all values. Pairs agreeing exactly get
    log2(u_exact / share(value)) added (Splink's term-frequency adjustment).
    """
    adjustment = np.zeros(len(pairs))
    for name, column in TERM_FREQUENCY_COLUMNS.items():
        k = COMPARISON_NAMES.index(name)
        exact = levels[:, k] == level_code(name, "exact")
        share = value_shares(left, right, column)
        u_exact = model.u[k][level_code(name, "exact")]
        adjustment[exact] = np.log2(u_exact / share[pairs[exact, 0]])
    return adjustment


def identifier_at(levels: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """True where the NHS number or the UPN is at one of the named levels."""
    return np.logical_or.reduce([at_levels(levels, name, names) for name in IDENTIFIERS])


def identifier_agreement(levels: np.ndarray) -> np.ndarray:
    """True where the NHS number or the UPN agrees (same valid token or same recorded number)."""
    return identifier_at(levels, ("agree",))


def surely_distinct(levels: np.ndarray) -> np.ndarray:
    """Pairs whose NHS number or UPN disagrees and whose records do not otherwise say one child
    (no number agrees or is close; not one forename, birth date and home): two children. One
    child registered twice under a mistyped number is not, though its numbers disagree."""
    return identifier_at(levels, ("disagree",)) & ~records_say_one_child(levels)


def identifier_near_agreement(levels: np.ndarray) -> np.ndarray:
    """True where the NHS number or the UPN agrees, is one character apart or has two adjacent
    characters transposed. Twins' numbers are never that close: numbers given at one birth are
    consecutive, and a step in the last digit also changes the check digit (NHS number) or
    letter (UPN), by another amount (so not a transposition)."""
    return identifier_at(levels, ("agree", "one_character", "transposed"))


# Levels at which a pair looks like twins: one surname (or a keying error of it), one date of
# birth and one home, forenames that disagree.
TWIN_SURNAME_LEVELS = ("exact", *NAME_SIMILAR_LEVELS)
TWIN_RESIDENCE_LEVELS = ("postcode_address", "postcode", "address", "address_similar")
# Forename levels that tell one child's own forename (or a keying error of it) from a twin's:
# twins' forenames can be as close as one nickname, Dice 0.75, Dice 0.5 or one Soundex code
# (ALEXANDER and ALEXANDRA, ISABEL and ISABELLA, ELLA and BELLA).
CLOSE_FORENAME_LEVELS = ("exact", DICE_LEVELS[0])


# The comparisons and levels at which a pair shares a birth and a home, as twins do.
BIRTH_AND_HOME = (
    ("surname", TWIN_SURNAME_LEVELS),
    ("dob", ("exact",)),
    ("residence", TWIN_RESIDENCE_LEVELS),
)


def same_birth_and_home(levels: np.ndarray) -> np.ndarray:
    """True where surname, full date of birth and home agree, as they do for twins."""
    return at_each(levels, BIRTH_AND_HOME)


# Levels at which two records of one agency are one child even over two numbers: one forename,
# birth date and home (twins differ in forename; look-alikes live apart), a surname the same or
# close (a double-barrelled name, a keying error), the address agreeing or missing on a side.
ONE_CHILD_AT_HOME = (
    ("forename", ("exact",)),
    ("surname", TWIN_SURNAME_LEVELS),
    ("dob", ("exact",)),
    ("residence", ("postcode_address", "postcode")),
)


def records_say_one_child(levels: np.ndarray) -> np.ndarray:
    """True where the two records themselves say one child whatever else disagrees: a number
    agrees or is a keying error of the other, or forename, birth date and home agree."""
    return identifier_near_agreement(levels) | at_each(levels, ONE_CHILD_AT_HOME)


def twin_like(levels: np.ndarray) -> np.ndarray:
    """True for pairs the twin guard stops that look like twins: surname, full date of birth and
    home agree, no NHS number or UPN near agreement, and forenames disagree (or are only
    similar while a number disagrees)."""
    return ~twin_guard(levels) & same_birth_and_home(levels)


def expected_twin_pairs(twins_left: int, n_left: int, twins_right: int, n_right: int) -> float:
    """Cross-agency pairs of twins expected from the twin pairs seen inside each agency.

    With P twin pairs among N children and agency a holding each child with probability c_a,
    a holds n_a = N c_a records and T_a = P c_a^2 twin pairs, so 2 T_a / n_a of its records
    have their twin in it, and the pairs of twins across a and b, 2 P c_a c_b, are
    2 T_a n_b / n_a (or, from b, 2 T_b n_a / n_b). The larger of the two estimates is taken: an
    agency that shows no twins proves nothing if the other holds many.
    """
    from_left = 2.0 * twins_left * n_right / max(n_left, 1)
    from_right = 2.0 * twins_right * n_left / max(n_right, 1)
    return max(from_left, from_right)


def twin_guard_needed(
    twin_like_pairs: float, expected_twins: float, match_probability: float
) -> bool:
    """Whether twin-like pairs of two agencies must stay apart: unless the twins expected from
    those seen inside the agencies (`expected_twin_pairs`, plus one twin pair, so that no twins
    in a small extract is no proof) explain at most 1 - match_probability of the twin-like
    pairs across them. Where they do not, those pairs are the same person with a replaced
    forename (as in FEBRL), and the model's weight decides."""
    if twin_like_pairs <= 0:
        return True
    return (expected_twins + 1.0) / twin_like_pairs > 1.0 - match_probability


def twin_guard(levels: np.ndarray) -> np.ndarray:
    """True for pairs that may link: an NHS number or UPN agrees, is one character apart or
    transposed; or the forenames agree at some level (token, nickname, Dice >= 0.5, Soundex),
    closely (token, or Dice >= 0.9: a keying error) where the pair looks like twins: surname,
    date of birth and home agree and a number disagrees. Keeps twins (same surname, dob and
    address, other forenames and numbers) apart, also twins with similar forenames."""
    close = at_levels(levels, "forename", CLOSE_FORENAME_LEVELS)
    some = ~at_levels(levels, "forename", ("disagree",))
    # a number recorded on both sides and not close
    twins = same_birth_and_home(levels) & identifier_at(levels, ("disagree",))
    return identifier_near_agreement(levels) | close | (some & ~twins)
