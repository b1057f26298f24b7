"""Precision and recall of a spine against the synthetic ground truth."""

from __future__ import annotations

import logging

import pandas as pd

from joinedup.link.records import AGENCY_PAIRS, RECORD_KEY, pair_name
from joinedup.pseudonymise import person_token

log = logging.getLogger(__name__)

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
