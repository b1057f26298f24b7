"""Duplicates inside one agency: the two kinds of evidence the pair's own comparison cannot give.

1. **Twins, not random pairs, are the alternative at one birth and home.** The model weighs a
   pair against a random pair of records. Two records that share a surname, a date of birth and
   a home are, when not one child, almost always twins, and against twins that agreement is no
   evidence at all. Among those pairs the question is how the forenames and sexes compare:
   twins' forenames can be close (ALEXANDER and ALEXANDRA, ISABEL and ISABELLA), a duplicate's
   only by a nickname or a keying error, and half of all twins are of the other sex.
   `fit_twin_alternative` counts the pairs at one birth and home, takes the duplicates the model
   expects among them, and learns how twins' forenames and sexes compare from the pairs whose
   NHS numbers or UPNs disagree (surely two children) and whose forenames are not one name
   (twins are given two: what puts such a pair there is one child's mistyped number).
   `with_twin_alternative` combines both alternatives:
   odds = 1 / (1 / odds against a random pair + 1 / odds against twins).

2. **The other agencies' records corroborate or split the pair.** A child's record in another
   agency links to both of its duplicates; two look-alike children (the same names and birth
   date at two addresses) each link to their own record there. For each record its strongest
   link into each other agency is taken; a pair is 'shared' when both records' strongest links
   in some agency are one record and none are two, 'split' when they are two records and none
   one, 'mixed' when both happen, and 'none' otherwise (`corroboration_levels`). Where the
   record they share is one that either of them reaches among two children there (its links
   in that agency go to two records that are not one child's, `crossing_records`), the pair is
   'crossed' instead of 'shared': namesakes live there, and a child whose own record there is
   no nearer than its namesake's (recorded at another address, or with another surname) shares
   the namesake's record as a duplicate would (at 1M, both false education pairs under one
   key). A pair that
   agrees on an NHS number or UPN is 'number': its records' links elsewhere were made by that
   same number, so they are no further evidence (weight 0). The Bayes factors of the other
   levels are learned from the agency's own scored pairs without labels (`fit_corroboration`):
   m from the pairs that are surely duplicates by names, birth date and home, u from those whose
   numbers disagree and whose records do not otherwise say one child (`model.surely_distinct`:
   surely two children, and mostly look-alikes, as the scored pairs are those the model found
   alike; one child registered twice under a mistyped number, with one forename, birth date and
   home, is left out). EM over all scored pairs, with each pair's model weight as its prior, was
   tried first: at 1M records per agency it put 'shared' at +7 to +15 bits, while among
   look-alikes with no number to tell them apart it is worth +2 to +3 (a child with no record of
   its own in the other agency links there to its namesake's). They are added to the weight and
   show in the agreement pattern as 'others:<level>'.

3. **A record both surely match is one child's, so both records are too.** When each record of
   a pair surely matches one record of another agency (the link agrees on an NHS number or UPN,
   or on both names, the birth date and the home: `SURE_LINK_COLUMNS`), the pair is that
   record's child unless one of the two links is wrong: P(one child) >= p1 + p2 - 1 for the two
   links' probabilities, however much the pair's own records differ (a surname changed and a
   move, one record with the NHS number and the other with the UPN). The pair takes the weight
   of that bound where it is higher (`bridged`), and 'via:<agency>' in its agreement pattern.
   Look-alikes never meet it: namesakes do not share a home or a number, and twins' forenames
   differ: among the scored duplicate pairs of a 1M analysis run, 17,933 had such a bridge and
   none was two children. Pairs the twin guard holds, or whose numbers disagree, are not
   bridged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from joinedup.link.compare import COMPARISON_NAMES, COMPARISONS, level_code
from joinedup.link.model import (
    BIRTH_AND_HOME,
    IDENTIFIERS,
    PSEUDO_COUNT,
    FSModel,
    at_levels,
    match_probability_from_weight,
    same_birth_and_home,
    surely_distinct,
)
from joinedup.link.records import link_ends

# The comparisons that tell one child from twins at one birth and home: forename, sex (seen
# only where forenames differ; half of all twins are of the other sex, one child never is) and
# novelty (twins have real names; a keying error makes a rare one).
TWIN_EVIDENCE = ("forename", "sex", "novelty")
SAME_NAME = ("exact", "alt")  # forename levels never seen in twins
CORROBORATION_LEVELS = ("none", "shared", "split", "mixed", "crossed", "number")
SURE_LINK_COLUMNS = ("identifier_agrees", "names_birth_home")  # a link that is surely one child


# ----------------------------------------------------------------------------------------------
# Twins as the alternative at one birth and home
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwinAlternative:
    """Among one agency's candidate pairs at one birth and home: the duplicates the model expects
    and the twins (the rest), and per TWIN_EVIDENCE comparison log2(m / t) per level, t being how
    twins compare (index 0, missing, is 0)."""

    duplicates: float
    twins: float
    factors: tuple[np.ndarray, ...]

    @property
    def log2_odds(self) -> float:
        return float(np.log2(self.duplicates / self.twins))

    def to_dict(self) -> dict:
        return {
            "duplicates_at_one_birth_and_home": self.duplicates,
            "twins_at_one_birth_and_home": self.twins,
            "comparisons": {
                name: {
                    level: float(self.factors[i][j])
                    for j, level in enumerate(COMPARISONS[COMPARISON_NAMES.index(name)].levels)
                    if j > 0
                }
                for i, name in enumerate(TWIN_EVIDENCE)
            },
        }


def share_at_birth_and_home(levels: np.ndarray, model: FSModel) -> float:
    """The share of duplicates at one birth and home, by m (each comparison observed as often as
    among the candidate pairs)."""
    share = 1.0
    for name, named in BIRTH_AND_HOME:
        k = COMPARISON_NAMES.index(name)
        codes = [level_code(name, level) for level in named]
        observed = float((levels[:, k] != 0).mean()) if len(levels) else 0.0
        share *= observed * float(model.m[k][codes].sum())
    return share


def fit_twin_alternative(levels: np.ndarray, model: FSModel) -> TwinAlternative | None:
    """The twin alternative of one agency's candidate pairs (`levels`) under its model; None
    where no pair at one birth and home is surely twins (nothing to learn from; the twin guard
    still stands)."""
    at_home = same_birth_and_home(levels)
    named_alike = at_levels(levels, "forename", SAME_NAME)
    twins_seen = levels[at_home & surely_distinct(levels) & ~named_alike]
    if not len(twins_seen):
        return None
    duplicates = max(model.expected_matches * share_at_birth_and_home(levels, model), 1.0)
    twins = max(float(at_home.sum()) - duplicates, 1.0)
    factors = []
    for name in TWIN_EVIDENCE:
        k = COMPARISON_NAMES.index(name)
        t = twin_level_shares(twins_seen[:, k], model.u[k])
        factors.append(np.concatenate([[0.0], np.log2(model.m[k][1:] / t[1:])]))
    return TwinAlternative(duplicates, twins, tuple(factors))


def twin_level_shares(seen: np.ndarray, u: np.ndarray) -> np.ndarray:
    """How twins compare (index 0, missing, is 0): the levels seen in surely twin pairs, plus a
    pseudo-count of one pair spread as u spreads any two children (twins' names are as unlike as
    anyone's until seen otherwise)."""
    counts = np.bincount(seen, minlength=len(u)).astype(float)
    counts[1:] += PSEUDO_COUNT * u[1:] / u[1:].sum()
    counts[0] = 0.0
    return counts / counts.sum()


def weight_against_twins(levels: np.ndarray, model: FSModel, twins: TwinAlternative) -> np.ndarray:
    """log2 odds of one child against twins: the prior odds at one birth and home, how the
    forenames and sexes compare (TWIN_EVIDENCE), and the NHS number and UPN weighed as in the
    model (twins' numbers are as unlike as any two children's)."""
    weight = np.full(len(levels), twins.log2_odds)
    for name, factors in zip(TWIN_EVIDENCE, twins.factors, strict=True):
        weight += factors[levels[:, COMPARISON_NAMES.index(name)]]
    bayes = model.bayes_factors()
    for name in IDENTIFIERS:
        k = COMPARISON_NAMES.index(name)
        weight += bayes[k][levels[:, k]]
    return weight


def with_twin_alternative(
    weight: np.ndarray, levels: np.ndarray, model: FSModel, twins: TwinAlternative
) -> np.ndarray:
    """The weight against both alternatives for pairs at one birth and home (against a random
    pair elsewhere): odds = 1 / (1 / odds against a random pair + 1 / odds against twins)."""
    at_home = same_birth_and_home(levels)
    combined = np.asarray(weight, dtype=float).copy()
    against = weight_against_twins(levels[at_home], model, twins)
    combined[at_home] = -np.logaddexp2(-combined[at_home], -against)
    return combined


# ----------------------------------------------------------------------------------------------
# Corroboration by the other agencies' records
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corroboration:
    """m and u of each CORROBORATION_LEVELS level but 'number' for one agency's duplicate pairs."""

    m: np.ndarray
    u: np.ndarray

    @property
    def factors(self) -> np.ndarray:
        """log2(m / u) per level of CORROBORATION_LEVELS ('number': 0)."""
        return np.concatenate([np.log2(self.m / self.u), [0.0]])

    def to_dict(self) -> dict:
        """Per level: m, u and weight ('number': weight 0, m and u not estimated)."""
        out: dict[str, dict] = {
            level: {"m": float(m), "u": float(u), "weight": float(w)}
            for level, m, u, w in zip(
                CORROBORATION_LEVELS[:-1], self.m, self.u, self.factors[:-1], strict=True
            )
        }
        out[CORROBORATION_LEVELS[-1]] = {"m": None, "u": None, "weight": 0.0}
        return out


@dataclass(frozen=True)
class LinkEnds:
    """Each cross-agency link read from both of its ends, strongest first (ties by token):
    the end's agency, record and other agency, the record at the other end, and per end the
    record its own strongest link in that other agency goes to. Records are codes into
    `tokens` (person tokens; a token names one agency's record)."""

    agency: np.ndarray  # object: the end's agency
    record: np.ndarray  # int: code of the end's record
    other: np.ndarray  # object: the other agency
    to: np.ndarray  # int: code of the record at the other end
    best: np.ndarray  # int: code of the record the end's strongest link there goes to
    tokens: np.ndarray  # object: person token of each code


def ends_of_links(links: pd.DataFrame) -> LinkEnds:
    """The ends of the cross-agency links (both directions read)."""
    n = len(links)
    agency = np.concatenate(
        [links["agency_l"].to_numpy(object), links["agency_r"].to_numpy(object)]
    )
    other = np.concatenate([agency[n:], agency[:n]])
    token = np.concatenate(
        [links["person_token_l"].to_numpy(object), links["person_token_r"].to_numpy(object)]
    )
    encoded = pa.array(token, pa.string()).dictionary_encode()  # Arrow hashes strings fast
    record, tokens = encoded.indices.to_numpy().astype(np.int64), encoded.dictionary
    to = np.concatenate([record[n:], record[:n]])
    weight = np.tile(links["match_weight"].to_numpy(float), 2)
    rank = np.empty(len(tokens), dtype=np.int64)  # codes in token order, for the ties
    rank[pc.sort_indices(tokens).to_numpy()] = np.arange(len(tokens))
    order = np.lexsort((rank[to], rank[record], -weight))
    record, to, other, agency = record[order], to[order], other[order], agency[order]
    other_codes, _ = pd.factorize(other)
    group = record * (other_codes.max(initial=0) + 1) + other_codes
    _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    best = to[first][inverse.reshape(-1)]
    return LinkEnds(agency, record, other, to, best, tokens.to_numpy(zero_copy_only=False))


def strongest_links(ends: LinkEnds) -> dict[tuple[str, str], pd.Series]:
    """Per (agency, other agency): each record's strongest link there, as person_token -> the
    other record's person_token."""
    first = ends.to == ends.best  # one row per record and other agency: its strongest link
    frame = pd.DataFrame(
        {
            "agency": ends.agency[first],
            "other": ends.other[first],
            "token": ends.tokens[ends.record[first]],
            "best": ends.tokens[ends.best[first]],
        }
    )
    return {
        (agency, other): pd.Series(group["best"].to_numpy(), index=group["token"].to_numpy())
        for (agency, other), group in frame.groupby(["agency", "other"], sort=True)
    }


def crossing_records(ends: LinkEnds, within_links: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(agency, person_token, other agency) of the records whose links into the other agency
    reach two children: besides its strongest link there, a link to a record that is not the
    strongest one's duplicate (`within_links`: links within one agency)."""
    one_child = set(
        zip(within_links["person_token_l"], within_links["person_token_r"], strict=True)
    )
    one_child |= {(b, a) for a, b in one_child}
    rest = np.flatnonzero(ends.to != ends.best)
    return {
        (ends.agency[i], ends.tokens[ends.record[i]], ends.other[i])
        for i in rest
        if (ends.tokens[ends.best[i]], ends.tokens[ends.to[i]]) not in one_child
    }


def corroboration_levels(
    pairs: pd.DataFrame,
    strongest: Mapping[tuple[str, str], pd.Series],
    crossing: set[tuple[str, str, str]] | frozenset = frozenset(),
) -> np.ndarray:
    """Index into CORROBORATION_LEVELS of each duplicate pair (agency_l == agency_r); crossing:
    see crossing_records."""
    shared = np.zeros(len(pairs), dtype=bool)
    crossed = np.zeros(len(pairs), dtype=bool)
    split = np.zeros(len(pairs), dtype=bool)
    agency = pairs["agency_l"].to_numpy(object)
    for (own, other), best in strongest.items():
        mine = np.flatnonzero(agency == own)
        tokens_l = pairs["person_token_l"].to_numpy(object)[mine]
        tokens_r = pairs["person_token_r"].to_numpy(object)[mine]
        left = best.reindex(tokens_l).to_numpy(object)
        right = best.reindex(tokens_r).to_numpy(object)
        both = pd.notna(left) & pd.notna(right)
        reaching_two = {token for a, token, o in crossing if (a, o) == (own, other)}
        among_two = pd.Series(tokens_l).isin(reaching_two).to_numpy()
        among_two |= pd.Series(tokens_r).isin(reaching_two).to_numpy()
        one = both & (left == right)
        shared[mine[one & ~among_two]] = True
        crossed[mine[one & among_two]] = True
        split[mine[both & (left != right)]] = True
    by_number = pairs["identifier_agrees"].to_numpy(bool)
    code = CORROBORATION_LEVELS.index
    return np.select(
        [by_number, (shared | crossed) & split, split, crossed, shared],
        [code("number"), code("mixed"), code("split"), code("crossed"), code("shared")],
        default=code("none"),
    )


def level_shares(levels: np.ndarray) -> np.ndarray:
    """Share of each corroboration level but 'number', with a pseudo-count of one spread evenly."""
    n = len(CORROBORATION_LEVELS) - 1
    counts = np.bincount(levels[levels < n], minlength=n)[:n] + PSEUDO_COUNT / n
    return counts / counts.sum()


def fit_corroboration(levels: np.ndarray, sure: np.ndarray, distinct: np.ndarray) -> Corroboration:
    """m from the levels of the pairs that are surely duplicates, u from those surely two
    children."""
    return Corroboration(m=level_shares(levels[sure]), u=level_shares(levels[distinct]))


def corroborated(
    pairs: pd.DataFrame, links: pd.DataFrame, within_links: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict[str, Corroboration]]:
    """Scored pairs with every duplicate pair's weight, probability and agreement pattern
    corroborated by the cross-agency `links` (the model's and the reviewers'), and the fitted
    corroboration of each agency. Cross-agency pairs are returned as they are. within_links: the
    links within each agency before corroboration, which tell one child's two records from two
    children's (`crossing_records`); None: every two records are two children.

    pairs: the scored pairs with `names_birth_home` (names, birth date and home agree) and
    `numbers_disagree` (surely two children, `model.surely_distinct`) flags."""
    within = (pairs["agency_l"] == pairs["agency_r"]).to_numpy()
    duplicates = pairs[within]
    within_links = pairs.iloc[:0] if within_links is None else within_links
    ends = ends_of_links(links)
    levels = corroboration_levels(
        duplicates, strongest_links(ends), crossing_records(ends, within_links)
    )
    weight = duplicates["match_weight"].to_numpy(float).copy()
    sure = duplicates["names_birth_home"].to_numpy(bool)
    distinct = duplicates["numbers_disagree"].to_numpy(bool)
    fitted = {}
    for agency in sorted(set(duplicates["agency_l"])):
        mine = (duplicates["agency_l"] == agency).to_numpy()
        fitted[agency] = fit_corroboration(levels, mine & sure, mine & distinct)
        weight[mine] += fitted[agency].factors[levels[mine]]
    named = np.asarray(CORROBORATION_LEVELS, dtype=object)[levels]
    agreement = duplicates["agreement"].astype(str).to_numpy(object) + "|others:" + named
    bridge, via = bridged(duplicates, links)
    higher = bridge > weight
    weight[higher] = bridge[higher]
    agreement[higher] = agreement[higher] + "|via:" + via[higher]
    adjusted = duplicates.assign(
        match_weight=weight,
        match_probability=match_probability_from_weight(weight),
        agreement=agreement,
    )
    out = pd.concat([pairs[~within], adjusted]).loc[pairs.index]
    return out.reindex(columns=pairs.columns), fitted


def sure_link_ends(links: pd.DataFrame) -> pd.DataFrame:
    """Both ends (records.link_ends) of each cross-agency link that surely joins one child
    (SURE_LINK_COLUMNS), with log2 of the link's chance of being wrong (log2(1 - p) from its
    weight)."""
    sure = np.zeros(len(links), dtype=bool)
    for column in SURE_LINK_COLUMNS:
        if column in links:
            sure |= links[column].fillna(False).to_numpy(bool)
    links = links[sure]
    return link_ends(links, log2_wrong=-np.logaddexp2(0.0, links["match_weight"].to_numpy(float)))


def bridged(duplicates: pd.DataFrame, links: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per duplicate pair, the weight of the chance that it is one child because both its
    records surely match one record of another agency (p1 + p2 - 1 at least: p1 and p2 are the
    two links' probabilities), and that agency; -inf and '' where no record bridges the pair,
    the twin guard holds it (`may_link` false) or its numbers disagree."""
    weight = np.full(len(duplicates), -np.inf)
    via = np.full(len(duplicates), "", dtype=object)
    ends = sure_link_ends(links)
    if ends.empty or duplicates.empty:
        return weight, via
    pairs = pd.DataFrame(
        {
            "row": np.arange(len(duplicates)),
            "agency": duplicates["agency_l"].to_numpy(object),
            "left": duplicates["person_token_l"].to_numpy(object),
            "right": duplicates["person_token_r"].to_numpy(object),
        }
    )
    keys = ["agency", "person_token"]
    left = pairs.merge(ends, left_on=["agency", "left"], right_on=keys)
    right = pairs.merge(ends, left_on=["agency", "right"], right_on=keys)
    both = left.merge(right, on=["row", "other_agency", "other_token"], suffixes=("_l", "_r"))
    if both.empty:
        return weight, via
    log2_wrong = np.logaddexp2(both["log2_wrong_l"].to_numpy(), both["log2_wrong_r"].to_numpy())
    right_chance = -np.expm1(np.minimum(log2_wrong, 0.0) * np.log(2.0))  # p1 + p2 - 1
    with np.errstate(divide="ignore"):
        both["weight"] = np.log2(right_chance) - log2_wrong  # log2 of its odds
    best = both.sort_values(["row", "weight", "other_agency"], ascending=[True, False, True])
    best = best.drop_duplicates("row")
    rows = best["row"].to_numpy()
    weight[rows] = best["weight"].to_numpy()
    via[rows] = best["other_agency"].to_numpy(object)
    held = ~duplicates["may_link"].to_numpy(bool) | duplicates["numbers_disagree"].to_numpy(bool)
    weight[held], via[held] = -np.inf, ""
    return weight, via
