"""Link one child's records across education, health and care, on pseudonyms only.

Stages (1-6 score the pairs, in `score.py`: `score_agency_pair` for two agencies and
`score_within_agency` for duplicates inside one agency's extracts):

1. `person_records`: one identity row per (agency, person_token) from every pseudonymised extract.
2. `candidate_pairs_of`: record pairs of two agencies that share at least one blocking key
   (union of the rules in `BLOCKING_RULES`, deduplicated, as integer row-id pairs), found for
   every agency pair and agency at once so that each agency's keys are made and sorted once.
3. `comparison_levels`: a graded comparison vector per pair, built with `recordlinkage.Compare`
   (built-in `Exact` features and the custom `NameLevels`, `DobLevels`, `ExactLevels` features;
   levels in `COMPARISONS`). Level 0 of every comparison is "missing" and is neutral (weight 0).
   Forenames have an 'alt' level (equal only once nicknames are resolved) below 'exact', so a
   child's own record outranks a sibling's nickname-equivalent one; names have a 'dice50' level
   (0.5 <= Dice < 0.75) because single keying errors in short names land there, while the
   unrelated names of twins almost never do. Where a name differs, 'novelty' grades how much
   rarer the rarer of the two names is in its agency: a keying error makes a rare name, twins
   and strangers have real ones (`compare.name_novelty`).
4. `fit_model`: an unsupervised multi-level Fellegi-Sunter model per agency pair. u comes from
   random record pairs; m is estimated by EM without labels in training sessions (Splink-style:
   a session takes a uniform sample of all record pairs that agree on some fields, not only the
   candidates, whose other blocking rules would make its non-matches agree beyond chance; it
   leaves those fields out and estimates m for the others, whose non-matches then behave like
   random pairs); the prior is the expected match count (matches seen in the same-dob session /
   m(dob exact)) over all record pairs. Within one agency m comes from the cross-agency models
   and the prior from the pairs that are surely duplicates (`model.sure_matches`).
   recordlinkage's ECMClassifier was tried on one-hot and on cumulative binary features and was
   far less accurate (see the report of the linkage issue), so EM is here.
5. `score_pairs`: match weight = log2 prior odds + sum of log2 Bayes factors m/u, plus a
   term-frequency adjustment for exact name agreement (rare names weigh more); probability.
6. `twin_guard`: twins share surname, date of birth and address and differ in the forename, a
   dependence the model cannot see. A pair whose forenames disagree (no token, nickname or
   Dice >= 0.5 agreement) is linked only when it also agrees on an NHS number or UPN. A pair
   that shares surname, birth date and home while its numbers disagree is linked only on the
   same forename (or Dice >= 0.9), because twins' names can be close (ALEXANDER and ALEXANDRA).
7. Duplicates (`duplicates.py`): inside one agency a pair at one birth and home is weighed
   against twins too (`with_twin_alternative`, in scoring), and every duplicate pair is
   corroborated by the other agencies' records (`corroborated`: both records' strongest links
   there go to one record, or to two), with Bayes factors learned from the sure pairs.
8. Links: cross-agency pairs at or above `settings.link.match_probability` that pass the twin
   guard, at most one per record and agency pair (`one_to_one`, greedy on descending weight);
   duplicate pairs within an agency likewise, without the one-to-one rule. Clerical decisions
   (`review.py`) apply here: an accepted pair is a link (decided_by 'clerical') whatever its
   weight, a rejected pair never is.
9. `cluster_records`: the child spine, a union-find strongest link first under constraints (one
   NHS number token, one UPN token, one agency person per agency in a child); refused clerical
   links are reported as conflicts.
10. `assign_child_ids`: stable child ids from the persistent registry (see `spine.py`).
11. Review: the pairs between `review_probability` and `match_probability` that pass the twin
   guard, are undecided and are not already one child go to review.csv.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from joinedup.link.blocking import candidate_pairs_of
from joinedup.link.compare import Side, prepare_side
from joinedup.link.duplicates import Corroboration, corroborated
from joinedup.link.evaluate import evaluate
from joinedup.link.model import expected_twin_pairs, twin_guard_needed
from joinedup.link.records import (
    AGENCY_PAIRS,
    RECORD_KEY,
    link_ends,
    pair_name,
    person_records,
    record_rows,
)
from joinedup.link.review import (
    ACCEPT,
    CONTEXT,
    PAIR_KEY,
    REJECT,
    current_decisions,
    decisions_path,
    in_review_band,
    matching_pairs,
    pair_ids,
    read_decisions,
    review_rows,
    write_review_file,
)
from joinedup.link.score import ScoredPairs, score_agency_pair, score_within_agency
from joinedup.link.spine import (
    IdState,
    assign_child_ids,
    cluster_records,
    column_at,
    one_to_one,
    read_id_state,
    registry_dir,
    write_atomically,
    write_id_state,
)
from joinedup.settings import AGENCIES, Settings

log = logging.getLogger(__name__)

__all__ = [
    "KEPT_AFTER_SIDES",
    "LinkResult",
    "evaluate",
    "link",
    "link_records",
    "link_sides",
    "prepare_side",
    "person_records",
    "twin_guard_lifted",
    "with_twin_guard_lifted",
    "write_link_result",
]

MODEL = "model"
CLERICAL = "clerical"
# What a run still needs of the records once they are coded into sides: the spine's identifier
# constraints and areas, and the review file's clear context.
KEPT_AFTER_SIDES = frozenset((*RECORD_KEY, "nhs_token", "upn_token", *CONTEXT))
LINK_COLUMNS = (*PAIR_KEY, "match_weight", "match_probability", "agreement", "decided_by")
SPINE_COLUMNS = ("agency", "person_token", "child_id", "la_code")
RECORD_LINKAGE_COLUMNS = (
    "agency",
    "person_token",
    "other_agency",
    "candidates",
    "match_mass",
    "linked",
    "link_weight",
    "link_probability",
)
CONFLICT_COLUMNS = (*PAIR_KEY, "pair_id", "reason")
NOT_SCORED = "the pair is not among this run's scored pairs"
NOT_ONE_TO_ONE = "a record already holds a stronger link to the other agency"
JOINED_ANYWAY = "rejected, but other links put both records in one child"


@dataclass(frozen=True)
class LinkResult:
    """A link run: kept links, the spine, per-record linkage, the pairs for clerical review,
    accepted decisions that could not be applied, the models and counts, and the updated id
    registry (written by `write_link_result` after everything else)."""

    links: pd.DataFrame
    spine: pd.DataFrame
    record_linkage: pd.DataFrame
    review: pd.DataFrame
    conflicts: pd.DataFrame
    identifier_conflicts: pd.DataFrame  # links kept although their records' numbers differ
    model: dict
    candidate_pairs: dict[str, int]
    thresholds: dict[str, float]
    ids: IdState
    period: str | None


def link(
    extract_paths: dict[str, list[Path]], settings: Settings, period: str | None = None
) -> LinkResult:
    """Link the person records of every extract into a child spine.

    period: the reporting period of the run, kept in the id registry (None for an ad hoc run:
    ids are still taken from the registry, without a period recorded).
    """
    return link_records(person_records(extract_paths), settings, period, consume=True)


def link_records(
    records: pd.DataFrame, settings: Settings, period: str | None = None, consume: bool = False
) -> LinkResult:
    """Link person records (as `person_records` returns them) into a child spine, reading the
    id registry and the clerical decisions under settings.data_dir (nothing is written).

    consume: once the records are coded into sides, drop their encodings from `records` in
    place (tokens, Bloom filters and near tokens are most of a run's memory: ~7 GB at 3M
    records); only the columns the spine and the review file still need are kept.
    """
    sides = prepare_sides(records, settings)
    if consume:
        records.drop(columns=[c for c in records if c not in KEPT_AFTER_SIDES], inplace=True)
        pa.default_memory_pool().release_unused()  # hand the freed encodings back to the system
    return link_sides(sides, records, settings, period, consume_sides=True)


def link_sides(
    sides: dict[str, Side],
    records: pd.DataFrame,
    settings: Settings,
    period: str | None = None,
    consume_sides: bool = False,
) -> LinkResult:
    """Link records already coded into sides (`prepare_side` of each agency's records), which a
    caller can build agency by agency so that no more than one agency's encodings are ever held.

    records: the person records' KEPT_AFTER_SIDES columns (agency, person_token, nhs_token,
    upn_token and the review context); other columns are not used.
    consume_sides: empty `sides` once the pairs are scored, so that their encodings (about 1 GB
    per million records) are freed before the spine is built, when a run's memory peaks.
    """
    scored = score_all(sides, settings)
    sizes = {agency: len(side) for agency, side in sides.items()}
    if consume_sides:
        sides.clear()
    pairs = pd.concat([empty_pairs(), *(s.pairs for s in scored)], ignore_index=True)
    pairs = with_twin_guard_lifted(pairs, twin_guard_lifted(scored, sizes, settings))
    decisions = current_decisions(read_decisions(decisions_path(settings)))
    cross = (pairs["agency_l"] != pairs["agency_r"]).to_numpy()
    cross_links = chosen_links(pairs[cross], decisions, settings)
    before = chosen_links(pairs[~cross], decisions, settings)  # duplicates, uncorroborated
    pairs, corroboration = corroborated(pairs, cross_links, before)
    links = pd.concat([cross_links, chosen_links(pairs[~cross], decisions, settings)])
    within = links["agency_l"] == links["agency_r"]
    clusters = cluster_records(records, links[within], one_to_one_per_pair(links[~within]))
    child_ids, ids = assign_child_ids(
        clusters.records, read_id_state(registry_dir(settings)), period
    )
    spine = spine_frame(clusters.records.assign(child_id=child_ids.to_numpy()), records)
    kept = clusters.kept.reindex(columns=list(LINK_COLUMNS)).reset_index(drop=True)
    return LinkResult(
        links=kept,
        spine=spine,
        record_linkage=record_linkage(scored, kept, spine),
        review=review_rows(pairs_for_review(pairs, decisions, spine, settings), records),
        conflicts=clerical_conflicts(decisions, pairs, clusters.refused, spine),
        identifier_conflicts=clusters.identifier_conflicts.reindex(
            columns=[*PAIR_KEY, "match_weight", "match_probability", "agreement", "reason"]
        ).reset_index(drop=True),
        model=model_summary(scored, corroboration),
        candidate_pairs={s.name: int(s.candidates) for s in scored},
        thresholds={
            "match_probability": settings.link.match_probability,
            "review_probability": settings.link.review_probability,
            "keep_probability": settings.link.keep_probability,
        },
        ids=ids,
        period=period,
    )


def model_summary(
    scored: list[ScoredPairs], corroboration: dict[str, Corroboration]
) -> dict[str, dict]:
    """model.json: each agency pair's model; for duplicates also the twin alternative and the
    corroboration by the other agencies (`duplicates.py`)."""
    summary = {}
    for s in scored:
        summary[s.name] = s.model.to_dict()
        agency, other = s.name.split("-")
        if s.twins is not None:
            summary[s.name]["twins"] = s.twins.to_dict()
        if agency == other and agency in corroboration:
            summary[s.name]["corroboration"] = corroboration[agency].to_dict()
    return summary


def prepare_sides(records: pd.DataFrame, settings: Settings) -> dict[str, Side]:
    """Each agency's records coded for comparison (see compare.prepare_side)."""
    bits = settings.link.bloom_bits
    return {a: prepare_side(a, records[records["agency"] == a], bits) for a in AGENCIES}


def score_all(sides: dict[str, Side], settings: Settings) -> list[ScoredPairs]:
    """Scored pairs of every agency pair with records on both sides, then of every agency's
    duplicates, scored with the m of that agency's cross-agency models (duplicates are too rare
    within one agency for EM to find them on its own). Pairs are scored settings.link.threads
    at a time; the result does not depend on how many."""
    linked = [(a, b) for a, b in AGENCY_PAIRS if len(sides[a].records) and len(sides[b].records)]
    alone = [(a, a) for a in AGENCIES if len(sides[a].records) > 1]
    threads = max(settings.link.threads, 1)
    candidates = candidate_pairs_of(sides, linked + alone, threads=threads)

    def across(pair: tuple[str, str]) -> ScoredPairs:
        a, b = pair
        return score_agency_pair(sides[a], sides[b], settings, candidates.pop(pair))

    def within(pair: tuple[str, str]) -> ScoredPairs:
        a = pair[0]
        models = [s.model for s in cross if a in s.name.split("-")]
        return score_within_agency(sides[a], settings, models, candidates.pop(pair))

    with ThreadPoolExecutor(threads) as pool:
        cross = list(pool.map(across, linked))
        return cross + list(pool.map(within, alone))


def twin_guard_lifted(
    scored: list[ScoredPairs], sizes: dict[str, int], settings: Settings
) -> set[tuple[str, str]]:
    """Agency pairs whose twin-like pairs need no twin guard (`model.twin_guard_needed`): the
    twins seen inside the two agencies (sizes: records per agency) explain almost none of the
    twin-like pairs across them."""
    twins = {s.name: s.twin_like_pairs for s in scored}
    lifted = set()
    for s in scored:
        left, right = s.name.split("-")
        if left == right:
            continue
        expected = expected_twin_pairs(
            twins.get(pair_name(left, left), 0),
            sizes.get(left, 0),
            twins.get(pair_name(right, right), 0),
            sizes.get(right, 0),
        )
        if not twin_guard_needed(s.twin_like_pairs, expected, settings.link.match_probability):
            log.info(
                "%s: twin guard lifted (%d twin-like pairs, %.1f twins expected)",
                s.name,
                s.twin_like_pairs,
                expected,
            )
            lifted.add((left, right))
    return lifted


def with_twin_guard_lifted(pairs: pd.DataFrame, lifted: set[tuple[str, str]]) -> pd.DataFrame:
    """Twin-like pairs of the lifted agency pairs may link (their weight decides)."""
    left, right = pairs["agency_l"].to_numpy(), pairs["agency_r"].to_numpy()
    in_lifted = np.zeros(len(pairs), dtype=bool)
    for agency_l, agency_r in lifted:
        in_lifted |= (left == agency_l) & (right == agency_r)
    free = pairs["twin_like"].to_numpy(bool) & in_lifted
    return pairs.assign(may_link=pairs["may_link"].to_numpy(bool) | free)


def empty_pairs() -> pd.DataFrame:
    """The ScoredPairs.pairs columns, no rows."""
    return pd.DataFrame(
        {
            **{c: pd.Series(dtype=object) for c in PAIR_KEY},
            "match_weight": pd.Series(dtype=float),
            "match_probability": pd.Series(dtype=float),
            "agreement": pd.Series(dtype=object),
            "identifier_agrees": pd.Series(dtype=bool),
            "may_link": pd.Series(dtype=bool),
            "twin_like": pd.Series(dtype=bool),
            "names_birth_home": pd.Series(dtype=bool),
            "one_child": pd.Series(dtype=bool),
            "numbers_disagree": pd.Series(dtype=bool),
        }
    )


def chosen_links(pairs: pd.DataFrame, decisions: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Pairs the model links (probability >= match_probability, twin guard passed) or a reviewer
    accepted, less the pairs a reviewer rejected; with decided_by."""
    accepted = matching_pairs(pairs, decisions[decisions["decision"] == ACCEPT])
    rejected = matching_pairs(pairs, decisions[decisions["decision"] == REJECT])
    by_model = (
        (pairs["match_probability"].to_numpy(float) >= settings.link.match_probability)
        & pairs["may_link"].to_numpy(bool)
        & ~rejected
    )
    keep = by_model | accepted
    return pairs[keep].assign(decided_by=np.where(accepted[keep], CLERICAL, MODEL))


def one_to_one_per_pair(links: pd.DataFrame) -> pd.DataFrame:
    """`one_to_one` within each agency pair."""
    groups = [one_to_one(group) for _, group in links.groupby(["agency_l", "agency_r"], sort=True)]
    return pd.concat([links.iloc[:0], *groups], ignore_index=True)


def spine_frame(assigned: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """agency, person_token, child_id, la_code of every record."""
    areas = records.reindex(columns=[*RECORD_KEY, "la_code"]).drop_duplicates(list(RECORD_KEY))
    spine = assigned.merge(areas, on=list(RECORD_KEY), how="left")
    return spine.reindex(columns=list(SPINE_COLUMNS)).reset_index(drop=True)


def children_of(pairs: pd.DataFrame, spine: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The child_id of each pair's left and right record (None when not in the spine)."""
    found = []
    for side in ("l", "r"):
        rows = record_rows(spine, pairs[f"agency_{side}"], pairs[f"person_token_{side}"])
        found.append(column_at(spine, "child_id", rows))
    return found[0], found[1]


def pairs_for_review(
    pairs: pd.DataFrame, decisions: pd.DataFrame, spine: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """Pairs in the review band that nobody has decided and that are not already one child."""
    band = pairs[in_review_band(pairs, settings)]
    band = band[~matching_pairs(band, decisions)]
    left, right = children_of(band, spine)
    return band[left != right]


def clerical_conflicts(
    decisions: pd.DataFrame, pairs: pd.DataFrame, refused: pd.DataFrame, spine: pd.DataFrame
) -> pd.DataFrame:
    """Decisions the spine contradicts, and why: accepted pairs whose two records (both in this
    run) ended in different children, rejected pairs that other links put in one child."""
    left, right = children_of(decisions, spine)
    present = pd.notna(left) & pd.notna(right)
    accepted = (decisions["decision"] == ACCEPT).to_numpy() & present & (left != right)
    rejected = (decisions["decision"] == REJECT).to_numpy() & present & (left == right)
    unapplied = decisions[accepted]
    reasons = np.where(matching_pairs(unapplied, pairs), NOT_ONE_TO_ONE, NOT_SCORED).astype(object)
    for reason in refused["reason"].unique():
        reasons[matching_pairs(unapplied, refused[refused["reason"] == reason])] = reason
    conflicts = pd.concat(
        [unapplied.assign(reason=reasons), decisions[rejected].assign(reason=JOINED_ANYWAY)],
        ignore_index=True,
    )
    conflicts["pair_id"] = pair_ids(conflicts)
    for row in conflicts.itertuples(index=False):
        log.warning("clerical decision on pair %s not honoured: %s", row.pair_id, row.reason)
    return conflicts.reindex(columns=list(CONFLICT_COLUMNS)).reset_index(drop=True)


def record_linkage(
    scored: list[ScoredPairs], links: pd.DataFrame, spine: pd.DataFrame
) -> pd.DataFrame:
    """Per record and other agency: candidate pairs, match mass, whether its child holds a record
    of the other agency (for duplicates: another record of its own), and the weight and
    probability of its strongest kept link to that agency (null when linked only through others).

    Records are matched to the spine once and then handled as spine rows (integers), so a
    million records per agency cost no string joins."""
    base = pd.concat([s.records for s in scored], ignore_index=True)
    agencies = len(AGENCIES)
    record = record_rows(spine, base["agency"], base["person_token"])
    if (record < 0).any():
        raise ValueError(f"{int((record < 0).sum())} scored records are not in the spine")
    other = agency_codes(base["other_agency"])
    key = record * agencies + other
    first = np.sort(np.unique(key, return_index=True)[1])  # each record and other agency once
    base, record, other, key = base.iloc[first], record[first], other[first], key[first]
    ends = link_ends(
        links,
        link_weight=links["match_weight"].to_numpy(float),
        link_probability=links["match_probability"].to_numpy(float),
    )
    weight, probability = strongest_link(ends, spine, key)
    child = pd.factorize(spine["child_id"])[0]
    held = np.bincount(
        child * agencies + agency_codes(spine["agency"]),
        minlength=(child.max(initial=-1) + 1) * agencies,
    )
    own = (agency_codes(base["agency"]) == other).astype(int)
    return pd.DataFrame(
        {
            "agency": base["agency"].to_numpy(),
            "person_token": base["person_token"].to_numpy(),
            "other_agency": base["other_agency"].to_numpy(),
            "candidates": base["candidates"].to_numpy(),
            "match_mass": base["match_mass"].to_numpy(),
            "linked": held[child[record] * agencies + other] - own > 0,
            "link_weight": weight,
            "link_probability": probability,
        }
    )


def strongest_link(
    ends: pd.DataFrame, spine: pd.DataFrame, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and probability of the strongest link end (`link_ends`) of each key (spine row x
    number of agencies + other agency's code); NaN where a key has none."""
    weight, probability = np.full(len(keys), np.nan), np.full(len(keys), np.nan)
    if not len(ends):
        return weight, probability
    end_keys = record_rows(spine, ends["agency"], ends["person_token"]) * len(AGENCIES)  # all in
    end_keys += agency_codes(ends["other_agency"])
    strongest = np.argsort(-ends["link_weight"].to_numpy(float), kind="stable")
    linked_keys, first = np.unique(end_keys[strongest], return_index=True)
    best = strongest[first]
    at = np.minimum(np.searchsorted(linked_keys, keys), len(linked_keys) - 1)
    found = linked_keys[at] == keys
    weight[found] = ends["link_weight"].to_numpy(float)[best[at[found]]]
    probability[found] = ends["link_probability"].to_numpy(float)[best[at[found]]]
    return weight, probability


def agency_codes(agencies: pd.Series) -> np.ndarray:
    """Each agency's position in AGENCIES."""
    codes = pd.Categorical(agencies, categories=list(AGENCIES)).codes.astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"unknown agencies: {sorted(set(agencies) - set(AGENCIES))}")
    return codes


def write_link_result(result: LinkResult, out_dir: Path, registry: Path | None = None) -> None:
    """links.parquet, spine.parquet, record_linkage.parquet, model.json, review.csv,
    conflicts.csv and identifier_conflicts.csv in out_dir; then, when registry (a directory)
    is given, the updated id registry and history there, last, so a failed run never moves
    the ids."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.links.to_parquet(out_dir / "links.parquet", index=False)
    result.spine.to_parquet(out_dir / "spine.parquet", index=False)
    result.record_linkage.to_parquet(out_dir / "record_linkage.parquet", index=False)
    document = {
        "period": result.period,
        "models": result.model,
        "candidate_pairs": result.candidate_pairs,
        "thresholds": result.thresholds,
    }
    (out_dir / "model.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    write_review_file(result.review, out_dir / "review.csv")
    write_atomically(out_dir / "conflicts.csv", result.conflicts.to_csv)
    write_atomically(out_dir / "identifier_conflicts.csv", result.identifier_conflicts.to_csv)
    if registry is not None:
        write_id_state(result.ids, registry)
