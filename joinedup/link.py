"""Link one child's records across education, health and care, on pseudonyms only.

Stages, each a small function below:

1. `person_records`: one identity row per (agency, person_token) from every pseudonymised extract.
2. `candidate_pairs`: record pairs of two agencies that share at least one blocking key (union of
   the rules in `BLOCKING_RULES`, deduplicated, as integer row-id pairs).
3. `comparison_levels`: a graded comparison vector per pair, built with `recordlinkage.Compare`
   (built-in `Exact` features and the custom `NameLevels`, `DobLevels`, `ExactLevels` features;
   levels in `COMPARISONS`). Level 0 of every comparison is "missing" and is neutral (weight 0).
   Forenames have an 'alt' level (equal only once nicknames are resolved) below 'exact', so a
   child's own record outranks a sibling's nickname-equivalent one; names have a 'dice50' level
   (0.5 <= Dice < 0.75) because single keying errors in short names land there, while the
   unrelated names of twins almost never do.
4. `fit_model`: an unsupervised multi-level Fellegi-Sunter model per agency pair. u comes from
   random record pairs; m is estimated by EM without labels in training sessions (Splink-style:
   a session takes the candidate pairs that agree on some fields, leaves those fields out and
   estimates m for the others, whose non-matches then behave like random pairs); the prior is
   the expected match count (matches seen in the same-dob session / m(dob exact)) over all
   record pairs. recordlinkage's ECMClassifier was tried on one-hot and on cumulative binary
   features and was far less accurate (see the report of the linkage issue), so EM is here.
5. `score_pairs`: match weight = log2 prior odds + sum of log2 Bayes factors m/u, plus a
   term-frequency adjustment for exact name agreement (rare names weigh more); probability.
6. `twin_guard`: twins share surname, date of birth and address and differ in the forename, a
   dependence the model cannot see. A pair whose forenames disagree (no token, nickname or
   Dice >= 0.5 agreement) is linked only when it also agrees on an NHS number or UPN.
7. `one_to_one`: links above `settings.link.match_probability`, at most one per record and
   agency pair, greedy on descending weight.
8. `cluster_links`: the child spine. Links are added strongest first (Kruskal-style union-find);
   a link that would put two records of one agency into one cluster is dropped. A dropped link
   is always the weakest link on the path that would have joined the two records of one agency,
   because every link already in the clusters is at least as strong. Each cluster's `child_id`
   is "C" + the first 16 hex digits of sha256 of its smallest (agency, person_token), so a rerun
   on the same records gives the same ids whatever their order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import recordlinkage
from recordlinkage.base import BaseCompareFeature
from recordlinkage.compare import Exact

from joinedup.contracts import contract, identity_columns
from joinedup.pseudonymise import bloom_to_array, dice, person_token
from joinedup.settings import AGENCIES, Settings

log = logging.getLogger(__name__)

AGENCY_PAIRS: tuple[tuple[str, str], ...] = (
    ("education", "health"),
    ("education", "care"),
    ("health", "care"),
)
RECORD_KEY = ("agency", "person_token")
ROW = "_row"
BIRTH_YEAR = "_birth_year"
BIRTH_MONTH = "_birth_month"
UNKNOWN_SEX = "U"
COMPARE_CHUNK_PAIRS = 250_000
U_SAMPLE_PAIRS = 200_000
MAX_BLOCK_PAIRS = 50_000
PSEUDO_COUNT = 1.0
RANDOM_SEED = 20240901


def identity_column_names() -> tuple[str, ...]:
    """The pseudonymised identity columns of a person record, plus its area."""
    return (*(c.name for c in identity_columns("pseudonymised")), "la_code")


# ----------------------------------------------------------------------------------------------
# 1. Person records
# ----------------------------------------------------------------------------------------------


def person_records(extract_paths: dict[str, list[Path]]) -> pd.DataFrame:
    """One identity row per (agency, person_token) from all of each agency's extracts.

    Columns: agency, then the identity columns (the union over agencies; a column an agency does
    not hold is null). When one person's rows disagree, the most frequent row is kept (ties: the
    more complete row, then the smallest values), so the result does not depend on file order.
    """
    columns = identity_column_names()
    frames = [
        read_identity_rows(path, name)
        for name, paths in sorted(extract_paths.items())
        for path in sorted(paths)
    ]
    if not frames:
        return pd.DataFrame(columns=["agency", *columns], dtype=object)
    rows = pd.concat(frames, ignore_index=True).reindex(columns=["agency", *columns])
    return most_frequent_row_per_person(rows.astype(object).where(rows.notna(), None))


def read_identity_rows(path: Path, extract: str) -> pd.DataFrame:
    """The identity columns of one pseudonymised extract, with its agency."""
    wanted = set(identity_column_names())
    present = [name for name in pq.read_schema(path).names if name in wanted]
    frame = pq.read_table(path, columns=present).to_pandas()
    frame.insert(0, "agency", contract(extract).agency)
    return frame


def most_frequent_row_per_person(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep, per (agency, person_token), its most frequent identity row."""
    key = list(RECORD_KEY)
    values = [c for c in rows.columns if c not in RECORD_KEY]
    counted = rows.groupby([*key, *values], dropna=False, sort=False).size().rename("_n")
    counted = counted.reset_index()
    counted = counted.astype(object).where(counted.notna(), None)
    counted["_filled"] = counted[values].notna().sum(axis=1)
    ordered = counted.sort_values(
        [*key, "_n", "_filled", *values],
        ascending=[True, True, False, False, *([True] * len(values))],
        na_position="last",
        kind="mergesort",
    )
    best = ordered.drop_duplicates(key, keep="first")
    return best.drop(columns=["_n", "_filled"]).reset_index(drop=True)


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


# ----------------------------------------------------------------------------------------------
# 4. Fellegi-Sunter model, scoring and the twin guard
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSession:
    """EM over the candidate pairs that agree at the given levels; those comparisons are left
    out of the session (their m is estimated in another session)."""

    name: str
    agree_on: tuple[tuple[str, str], ...]


TRAINING_SESSIONS: tuple[TrainingSession, ...] = (
    TrainingSession("same_dob", (("dob", "exact"),)),
    TrainingSession("same_names", (("forename", "exact"), ("surname", "exact"))),
)
PRIOR_SESSION = TRAINING_SESSIONS[0]


@dataclass(frozen=True)
class FSModel:
    """m and u per comparison level (index 0, 'missing', unused) and the prior match odds."""

    m: tuple[np.ndarray, ...]
    u: tuple[np.ndarray, ...]
    prior: float
    expected_matches: float

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
    """u probabilities: level frequencies among random record pairs (nearly all non-matches)."""
    size = min(sample_pairs, len(left.records) * len(right.records))
    pairs = unique_pairs(
        random_pairs(len(left.records), len(right.records), size), len(right.records)
    )
    return level_frequencies(comparison_levels(left, right, pairs))


def session_mask(levels: np.ndarray, session: TrainingSession) -> np.ndarray:
    """Pairs that agree on every (comparison, level) the session is blocked on."""
    mask = np.ones(len(levels), dtype=bool)
    for comparison, level in session.agree_on:
        mask &= levels[:, COMPARISON_NAMES.index(comparison)] == level_code(comparison, level)
    return mask


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
) -> tuple[list[np.ndarray], np.ndarray]:
    """EM for m (u fixed) over the used comparisons; returns m and each pair's posterior."""
    m = [np.array(x, dtype=float) for x in m_start]
    share = 0.5
    posterior = np.full(len(levels), share)
    for _ in range(max_iterations):
        weight = np.log2(share / (1 - share)) + log2_ratio_per_pair(levels, m, u, used)
        posterior = match_probability_from_weight(weight)
        share = float(np.clip(posterior.mean(), 1e-6, 1 - 1e-6))
        updated = list(m)
        fitted = level_frequencies(levels, posterior)
        for k in used:
            updated[k] = fitted[k]
        change = max(float(np.abs(updated[k] - m[k]).max()) for k in used) if used else 0.0
        m = updated
        if change < tolerance:
            break
    return m, posterior


def fit_model(
    levels: np.ndarray, u: Sequence[np.ndarray], n_left: int, n_right: int, max_iterations: int
) -> FSModel:
    """m by EM in each training session, averaged over the sessions that estimate it; the prior
    from the expected match count of the prior session divided by its blocked m."""
    start = initial_m()
    estimates: dict[int, list[np.ndarray]] = {k: [] for k in range(len(COMPARISONS))}
    posteriors: dict[str, np.ndarray] = {}
    for session in TRAINING_SESSIONS:
        blocked = {COMPARISON_NAMES.index(c) for c, _ in session.agree_on}
        used = [k for k in range(len(COMPARISONS)) if k not in blocked]
        subset = levels[session_mask(levels, session)]
        if not len(subset):
            continue
        m, posterior = run_em(subset, u, start, used, max_iterations)
        posteriors[session.name] = posterior
        for k in used:
            estimates[k].append(m[k])
    m_final = tuple(
        np.mean(estimates[k], axis=0) if estimates[k] else start[k] for k in range(len(COMPARISONS))
    )
    seen = posteriors.get(PRIOR_SESSION.name, np.zeros(0))
    expected = expected_match_count(seen, m_final, n_left, n_right)
    prior = expected / max(n_left * n_right, 1)
    return FSModel(
        m=m_final, u=tuple(u), prior=float(np.clip(prior, 1e-12, 0.5)), expected_matches=expected
    )


def expected_match_count(
    posterior: np.ndarray, m: Sequence[np.ndarray], n_left: int, n_right: int
) -> float:
    """Matches found in the prior session scaled up by the share of matches it can see."""
    visible = 1.0
    for comparison, level in PRIOR_SESSION.agree_on:
        visible *= m[COMPARISON_NAMES.index(comparison)][level_code(comparison, level)]
    expected = float(posterior.sum()) / max(visible, 1e-9)
    return float(np.clip(expected, 1.0, max(min(n_left, n_right), 1)))


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
        values = pd.concat([left.records[column], right.records[column]]).dropna()
        share = left.records[column].map(values.value_counts(normalize=True)).to_numpy()
        u_exact = model.u[k][level_code(name, "exact")]
        adjustment[exact] = np.log2(u_exact / share[pairs[exact, 0]].astype(float))
    return adjustment


def twin_guard(levels: np.ndarray) -> np.ndarray:
    """True for pairs that may link: forenames agree at some level (token, nickname, Dice >= 0.5),
    or an NHS number or UPN agrees. Keeps twins (same surname, dob and address) apart."""
    forename = levels[:, COMPARISON_NAMES.index("forename")]
    identifier = (levels[:, COMPARISON_NAMES.index("nhs")] == level_code("nhs", "agree")) | (
        levels[:, COMPARISON_NAMES.index("upn")] == level_code("upn", "agree")
    )
    return (forename != level_code("forename", "disagree")) | identifier


# ----------------------------------------------------------------------------------------------
# 5. One-to-one links per agency pair
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairLinks:
    """Accepted one-to-one links of one agency pair, its model and its candidate count."""

    links: pd.DataFrame
    model: FSModel
    candidates: int


def link_agency_pair(left: Side, right: Side, settings: Settings) -> PairLinks:
    """Candidate pairs, comparison, EM, scoring, twin guard and one-to-one for two agencies."""
    pairs = candidate_pairs(left.records, right.records)
    levels = comparison_levels(left, right, pairs)
    u = estimate_u(left, right)
    model = fit_model(
        levels, u, len(left.records), len(right.records), settings.link.max_em_iterations
    )
    adjustment = term_frequency_adjustment(left, right, pairs, levels, model)
    weight, probability = score_pairs(levels, model, adjustment)
    keep = (probability >= settings.link.match_probability) & twin_guard(levels)
    scored = pd.DataFrame(
        {
            "agency_l": left.agency,
            "person_token_l": left.records["person_token"].to_numpy()[pairs[keep, 0]],
            "agency_r": right.agency,
            "person_token_r": right.records["person_token"].to_numpy()[pairs[keep, 1]],
            "match_weight": weight[keep],
            "match_probability": probability[keep],
            "agreement": agreement_patterns(levels[keep]),
        }
    )
    return PairLinks(links=one_to_one(scored), model=model, candidates=len(pairs))


def by_descending_weight(links: pd.DataFrame) -> pd.DataFrame:
    """Links strongest first; ties in a fixed order of the record keys."""
    return links.sort_values(
        ["match_weight", "agency_l", "person_token_l", "agency_r", "person_token_r"],
        ascending=[False, True, True, True, True],
        kind="mergesort",
    )


def one_to_one(links: pd.DataFrame) -> pd.DataFrame:
    """Greedy on descending weight: each record keeps at most one link (its strongest free one)."""
    used_l: set[str] = set()
    used_r: set[str] = set()
    keep = []
    ordered = by_descending_weight(links)
    for index, left, right in zip(
        ordered.index, ordered["person_token_l"], ordered["person_token_r"], strict=True
    ):
        if left not in used_l and right not in used_r:
            used_l.add(left)
            used_r.add(right)
            keep.append(index)
    return ordered.loc[keep].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# 6. Child spine
# ----------------------------------------------------------------------------------------------


def child_id_of(agency: str, token: str) -> str:
    """'C' + the first 16 hex digits of sha256 of 'agency|person_token'."""
    return "C" + hashlib.sha256(f"{agency}|{token}".encode()).hexdigest()[:16]


def cluster_links(records: pd.DataFrame, links: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clusters of at most one record per agency, strongest links first.

    Returns the spine (agency, person_token, child_id for every record) and the links that the
    clusters kept (a link that would join two records of one agency is dropped).
    """
    keys = records[list(RECORD_KEY)].drop_duplicates().sort_values(list(RECORD_KEY))
    node = {key: i for i, key in enumerate(zip(keys["agency"], keys["person_token"], strict=True))}
    parent = list(range(len(node)))
    agencies = [1 << AGENCIES.index(a) for a in keys["agency"]]

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ordered = by_descending_weight(links)
    kept = []
    for index, row in zip(ordered.index, ordered.itertuples(index=False), strict=True):
        a = root(node[(row.agency_l, row.person_token_l)])
        b = root(node[(row.agency_r, row.person_token_r)])
        if a == b:
            kept.append(index)
        elif not agencies[a] & agencies[b]:
            low, high = sorted((a, b))
            parent[high] = low
            agencies[low] |= agencies[high]
            kept.append(index)
    spine = keys.reset_index(drop=True).assign(_root=[root(i) for i in range(len(node))])
    first = spine.groupby("_root").head(1)
    ids = {
        r: child_id_of(a, t)
        for r, a, t in zip(first["_root"], first["agency"], first["person_token"], strict=True)
    }
    spine["child_id"] = spine["_root"].map(ids)
    return spine.drop(columns="_root"), ordered.loc[kept].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# 7. Public API
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkResult:
    """Links kept in the spine, the spine itself, the fitted models and candidate counts."""

    links: pd.DataFrame
    spine: pd.DataFrame
    model: dict
    candidate_pairs: dict[str, int]


def pair_name(left: str, right: str) -> str:
    return f"{left}-{right}"


def link(extract_paths: dict[str, list[Path]], settings: Settings) -> LinkResult:
    """Link the person records of every extract into a child spine."""
    return link_records(person_records(extract_paths), settings)


def link_records(records: pd.DataFrame, settings: Settings) -> LinkResult:
    """Link person records (as `person_records` returns them) into a child spine."""
    bits = settings.link.bloom_bits
    sides = {a: prepare_side(a, records[records["agency"] == a], bits) for a in AGENCIES}
    results = {
        pair_name(a, b): link_agency_pair(sides[a], sides[b], settings)
        for a, b in AGENCY_PAIRS
        if len(sides[a].records) and len(sides[b].records)
    }
    all_links = pd.concat(
        [empty_links(), *(result.links for result in results.values())], ignore_index=True
    )
    spine, kept = cluster_links(records, all_links)
    return LinkResult(
        links=kept,
        spine=spine,
        model={name: result.model.to_dict() for name, result in results.items()},
        candidate_pairs={name: result.candidates for name, result in results.items()},
    )


def empty_links() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "agency_l": pd.Series(dtype=object),
            "person_token_l": pd.Series(dtype=object),
            "agency_r": pd.Series(dtype=object),
            "person_token_r": pd.Series(dtype=object),
            "match_weight": pd.Series(dtype=float),
            "match_probability": pd.Series(dtype=float),
            "agreement": pd.Series(dtype=object),
        }
    )


def write_link_result(result: LinkResult, out_dir: Path) -> None:
    """links.parquet, spine.parquet and model.json (with candidate-pair counts) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.links.to_parquet(out_dir / "links.parquet", index=False)
    result.spine.to_parquet(out_dir / "spine.parquet", index=False)
    document = {"models": result.model, "candidate_pairs": result.candidate_pairs}
    (out_dir / "model.json").write_text(json.dumps(document, indent=2), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# 8. Evaluation against synthetic ground truth
# ----------------------------------------------------------------------------------------------


def record_pairs_within(groups: pd.DataFrame, group: str, left: str, right: str) -> pd.DataFrame:
    """(person_token_l, person_token_r) of records of two agencies in the same group."""
    a = groups.loc[groups["agency"] == left, ["person_token", group]]
    b = groups.loc[groups["agency"] == right, ["person_token", group]]
    pairs = a.merge(b, on=group, suffixes=("_l", "_r"))
    return pairs[["person_token_l", "person_token_r"]].drop_duplicates()


def evaluate(spine: pd.DataFrame, truth_records: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Per agency pair: true pairs, predicted pairs, true positives, precision, recall, F1.

    Truth records (agency, local_id, true_id) are mapped to person tokens with the key; only
    records present in the spine count, so this measures linkage, not delivery or validation.
    """
    truth = truth_records[["agency", "local_id", "true_id"]].copy()
    truth["person_token"] = [
        person_token(key, a, str(i))
        for a, i in zip(truth["agency"], truth["local_id"], strict=True)
    ]
    truth = truth.merge(spine[list(RECORD_KEY)], on=list(RECORD_KEY)).drop_duplicates(
        list(RECORD_KEY)
    )
    rows = []
    for left, right in AGENCY_PAIRS:
        true = record_pairs_within(truth, "true_id", left, right)
        predicted = record_pairs_within(spine, "child_id", left, right)
        hits = len(true.merge(predicted, on=["person_token_l", "person_token_r"]))
        precision = hits / len(predicted) if len(predicted) else 1.0
        recall = hits / len(true) if len(true) else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "agency_pair": pair_name(left, right),
                "true_pairs": len(true),
                "predicted_pairs": len(predicted),
                "true_positives": hits,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return pd.DataFrame(rows)
