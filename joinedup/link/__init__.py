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

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from joinedup.link.blocking import candidate_pairs
from joinedup.link.compare import Side, agreement_patterns, comparison_levels, prepare_side
from joinedup.link.evaluate import evaluate
from joinedup.link.model import (
    FSModel,
    estimate_u,
    fit_model,
    score_pairs,
    term_frequency_adjustment,
    twin_guard,
)
from joinedup.link.records import AGENCY_PAIRS, pair_name, person_records
from joinedup.link.spine import cluster_links, one_to_one
from joinedup.settings import AGENCIES, Settings

log = logging.getLogger(__name__)

__all__ = [
    "LinkResult",
    "evaluate",
    "link",
    "link_records",
    "person_records",
    "write_link_result",
]

# ----------------------------------------------------------------------------------------------
# 7. Public API
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


@dataclass(frozen=True)
class LinkResult:
    """Links kept in the spine, the spine itself, the fitted models and candidate counts."""

    links: pd.DataFrame
    spine: pd.DataFrame
    model: dict
    candidate_pairs: dict[str, int]


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
