"""One-to-one links and the child spine: clusters of records that are one child."""

from __future__ import annotations

import hashlib
import logging

import pandas as pd

from joinedup.link.records import RECORD_KEY
from joinedup.settings import AGENCIES

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# 5. One-to-one links per agency pair
# ----------------------------------------------------------------------------------------------


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
