"""Precision and recall of a spine against the synthetic ground truth."""

from __future__ import annotations

import logging

import pandas as pd

from joinedup.link.records import AGENCY_PAIRS, RECORD_KEY, pair_name
from joinedup.pseudonymise import person_token
from joinedup.settings import AGENCIES

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# 8. Evaluation against synthetic ground truth
# ----------------------------------------------------------------------------------------------

TRUTH_PAIRS_FILE = "truth_pairs.parquet"  # beside the synthetic truth of each period


def record_pairs_within(groups: pd.DataFrame, group: str, left: str, right: str) -> pd.DataFrame:
    """(person_token_l, person_token_r) of records of two agencies in the same group; for one
    agency with itself, its duplicate records (token_l < token_r)."""
    a = groups.loc[groups["agency"] == left, ["person_token", group]]
    b = groups.loc[groups["agency"] == right, ["person_token", group]]
    pairs = a.merge(b, on=group, suffixes=("_l", "_r"))
    if left == right:
        pairs = pairs[pairs["person_token_l"] < pairs["person_token_r"]]
    return pairs[["person_token_l", "person_token_r"]].drop_duplicates()


def truth_tokens(truth_records: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Truth records (agency, local_id, true_id) with each record's person token."""
    truth = truth_records[["agency", "local_id", "true_id"]].copy()
    truth["person_token"] = [
        person_token(key, a, str(i))
        for a, i in zip(truth["agency"], truth["local_id"], strict=True)
    ]
    return truth


def truth_pairs(truth_records: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Every pair of records that are truly one child: agency_l, person_token_l, agency_r,
    person_token_r.

    Pairs of two agencies are oriented as in AGENCY_PAIRS (education-health, education-care,
    health-care); pairs within one agency's extract (duplicates: one child under two local ids)
    have agency_l == agency_r and person_token_l < person_token_r. Written beside the links as
    truth_pairs.parquet on synthetic data, where transforms/70_linkage_qa.sql measures the true
    precision and recall of the links from it.
    """
    truth = truth_tokens(truth_records, key).drop_duplicates(list(RECORD_KEY))
    frames = []
    for left, right in (*AGENCY_PAIRS, *((agency, agency) for agency in AGENCIES)):
        pairs = record_pairs_within(truth, "true_id", left, right)
        if left == right:
            pairs = pairs[pairs["person_token_l"] < pairs["person_token_r"]]
        frames.append(pairs.assign(agency_l=left, agency_r=right))
    columns = ["agency_l", "person_token_l", "agency_r", "person_token_r"]
    return pd.concat(frames, ignore_index=True)[columns]


def evaluate(spine: pd.DataFrame, truth_records: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Per agency pair, then per agency's duplicates ('health-health'): true pairs, predicted
    pairs, true positives, precision, recall, F1.

    Truth records (agency, local_id, true_id) are mapped to person tokens with the key; only
    records present in the spine count, so this measures linkage, not delivery or validation.
    """
    truth = (
        truth_tokens(truth_records, key)
        .merge(spine[list(RECORD_KEY)], on=list(RECORD_KEY))
        .drop_duplicates(list(RECORD_KEY))
    )
    rows = []
    for left, right in (*AGENCY_PAIRS, *((a, a) for a in AGENCIES)):
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
