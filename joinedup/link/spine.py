"""One-to-one links, the child spine (constrained clusters) and its stable child ids.

Clustering (`cluster_records`). Records become children in two passes of a union-find, each
taking its links strongest first (descending match weight, ties in a fixed order of the keys):

1. duplicate links (two records of one agency) form *agency persons*: the groups of one
   agency's records that are one person to that agency;
2. cross-agency links join agency persons into children.

A link is refused when the union would give a child two different NHS number tokens or two
different UPN tokens, or (in pass 2) two different agency persons of one agency. Because every
link already in a cluster is at least as strong, a refused link is always the weakest link on
the path that would have broken the constraint. One exception: numbers are mistyped, and a
record can carry another child's valid number. When each side holds one number and the link's
own two records hold them, the model has already weighed that disagreement (a large negative
Bayes factor) and the link still cleared the threshold on names, date of birth and address:
the link is kept and listed in `identifier_conflicts.csv` for the agency to correct. A duplicate
link (two records of one agency) is kept over its own two numbers only where its records say
one child whatever else disagrees (`one_child`, `model.records_say_one_child`): the other number
agrees or is a keying error of it, or forename, date of birth and home agree (twins differ in
forename). The agency then registered one child twice, one number mistyped or not traced.
Elsewhere the agency's two numbers say two children: look-alikes (one name and birthday at two
addresses) are common in a large area, and the other agencies' records, which link to both
through the names, cannot tell them from one child. A third number, or two numbers meeting only
through other links, is always refused. Twins never reach this stage as a link: the twin guard
drops forename-disagreeing pairs that agree on no identifier before clustering.

Stable ids (`assign_child_ids`). A persistent registry (settings.data_dir/spine/registry.parquet)
holds the child_id last given to every record (agency, person_token) with the first and last
period it was seen, and an id history (id_history.parquet) records each retired id with the id
it was merged into and the period. Each run:

1. every cluster votes for the prior ids of its members (one vote per member that had one);
2. ids are handed out greedily by votes, most first (ties: the id first seen in the oldest
   period, then the smallest id, then the cluster with the smallest record key): a cluster keeps
   the id most of its members held, and an id goes to at most one cluster. When children merge,
   the id of the larger part survives and the others are retired into it (written to the
   history). When a child splits, the part holding most of its members keeps the id; the other
   parts take another prior id of their members if one is free, else a new id;
3. a cluster without a prior id gets 'C' + the first 16 hex digits of sha256 of its smallest
   'agency|person_token', salted ('|1', '|2', ...) if that id was ever used before.

Ids depend only on the clusters and the registry, never on row order, so rerunning a period
with the same inputs gives identical ids, and adding next period's extracts keeps the id of
every child already linked (new records join it and vote for nothing). The registry is written
atomically (temporary file, then os.replace) after the run's other outputs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from joinedup.link.records import RECORD_KEY, distinct, record_rows
from joinedup.settings import Settings

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.parquet"
HISTORY_FILE = "id_history.parquet"
REGISTRY_COLUMNS = ("agency", "person_token", "child_id", "first_seen_period", "last_seen_period")
HISTORY_COLUMNS = ("retired_id", "child_id", "period")
NHS_CONFLICT = "two NHS number tokens in one child"
UPN_CONFLICT = "two UPN tokens in one child"
AGENCY_CONFLICT = "two persons of one agency in one child"

# ----------------------------------------------------------------------------------------------
# 5. One-to-one links per agency pair
# ----------------------------------------------------------------------------------------------


def by_descending_weight(links: pd.DataFrame) -> pd.DataFrame:
    """Links strongest first; ties in a fixed order of the record keys (index labels kept)."""
    keys = ["agency_l", "person_token_l", "agency_r", "person_token_r"]
    order = [("match_weight", "descending"), *((c, "ascending") for c in keys)]
    return links.take(arrow_order(links, order))


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
# 6. Child spine: constrained clustering
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clusters:
    """Each record's cluster number (records in RECORD_KEY order), the links the clusters kept
    and the links they refused with the reason."""

    records: pd.DataFrame  # agency, person_token, cluster
    kept: pd.DataFrame
    refused: pd.DataFrame  # the refused links plus a 'reason' column
    identifier_conflicts: pd.DataFrame  # links kept over two numbers, plus a 'reason' column


class ConstrainedUnionFind:
    """Union-find over records whose clusters carry one NHS token, one UPN token and one agency
    person per agency, except where a link's own records hold the two numbers (see
    `identifier_conflict`)."""

    def __init__(self, agencies: list[str], nhs: list, upn: list) -> None:
        self.parent = list(range(len(agencies)))
        self.record_tokens = {
            "nhs": [None if pd.isna(t) else t for t in nhs],
            "upn": [None if pd.isna(t) else t for t in upn],
        }
        self.tokens = {
            name: [set() if t is None else {t} for t in values]
            for name, values in self.record_tokens.items()
        }
        self.persons: list[dict[str, int]] = [{a: i} for i, a in enumerate(agencies)]

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def identifier_conflict(self, name: str, a: int, b: int, left: int, right: int) -> str | None:
        """'conflict' when roots a and b each hold a number of this identifier the other lacks and
        the link
        (records left, right) did not compare them itself; 'kept' when it did: each side holds
        one number, the link's own two records hold them, and the model weighed that
        disagreement in the link's weight (a mistyped or wrong number on one record, as in the
        README); None when the numbers agree or one side has none."""
        held_a, held_b = self.tokens[name][a], self.tokens[name][b]
        if not held_a or not held_b or held_a <= held_b or held_b <= held_a:
            return None
        own = self.record_tokens[name]
        direct = len(held_a) == len(held_b) == 1
        direct = direct and {own[left]} == held_a and {own[right]} == held_b
        return "kept" if direct else "conflict"

    def conflict(
        self, a: int, b: int, same_person: bool, left: int, right: int, surely_one: bool = False
    ) -> tuple[str | None, str | None]:
        """(why roots a and b may not join or None, the identifier conflict a join keeps or
        None). same_person: the link is a duplicate link, which makes two agency persons one;
        surely_one: its own records say one child (`surely_one_child`)."""
        kept = None
        for name, refusal in (("nhs", NHS_CONFLICT), ("upn", UPN_CONFLICT)):
            found = self.identifier_conflict(name, a, b, left, right)
            if found == "conflict" or (found and same_person and not surely_one):
                return refusal, None
            if found == "kept":
                kept = refusal
        shared = self.persons[a].keys() & self.persons[b].keys()
        if not same_person and any(self.persons[a][g] != self.persons[b][g] for g in shared):
            return AGENCY_CONFLICT, None
        return None, kept

    def union(self, a: int, b: int) -> None:
        """Join roots a and b (the smaller root survives); their agency persons merge."""
        low, high = sorted((a, b))
        self.parent[high] = low
        for held in self.tokens.values():
            held[low] = held[low] | held[high]
        persons = dict(self.persons[high])
        for agency, person in self.persons[low].items():
            persons[agency] = min(person, persons.get(agency, person))
        self.persons[low] = persons

    def add_links(
        self, links: pd.DataFrame, node: dict, same_person: bool
    ) -> tuple[list, list, list]:
        """Add links strongest first; returns the kept indices, (index, reason) refusals and
        (index, conflict) for links kept over an identifier conflict."""
        kept, refused, conflicting = [], [], []
        ordered = by_descending_weight(links)
        columns = ["agency_l", "person_token_l", "agency_r", "person_token_r"]
        sure = surely_one_child(ordered)
        for index, al, tl, ar, tr, one in zip(
            ordered.index, *(ordered[c] for c in columns), sure, strict=True
        ):
            left, right = node[(al, tl)], node[(ar, tr)]
            a, b = self.root(left), self.root(right)
            reason, over = (
                (None, None) if a == b else self.conflict(a, b, same_person, left, right, one)
            )
            if reason is None:
                if a != b:
                    self.union(a, b)
                kept.append(index)
                if over:
                    conflicting.append((index, over))
            else:
                refused.append((index, reason))
        return kept, refused, conflicting


def surely_one_child(links: pd.DataFrame) -> np.ndarray:
    """Per link, whether its own records say one child (the scored pairs' `one_child`; False
    where not known)."""
    if "one_child" not in links:
        return np.zeros(len(links), dtype=bool)
    return links["one_child"].fillna(False).to_numpy(bool)


def cluster_records(
    records: pd.DataFrame, duplicate_links: pd.DataFrame, cross_links: pd.DataFrame
) -> Clusters:
    """Clusters of records under the spine's constraints (see the module docstring).

    records: agency, person_token, nhs_token, upn_token (one row per record). Links: agency_l,
    person_token_l, agency_r, person_token_r, match_weight, and any further columns.

    A connected component of all links whose records hold at most one NHS number token, one UPN
    token and, per agency, one group of duplicate-linked records can break no constraint: all
    its links are kept and it is one cluster (the union-find's root is always its smallest
    record). Only the other components go through `ConstrainedUnionFind`, link by link, which
    gives what one union-find over every record would (components never interact).
    """
    keys = records_in_key_order(records)
    duplicates = by_descending_weight(duplicate_links).reset_index(drop=True)
    cross = by_descending_weight(cross_links).reset_index(drop=True)
    ends_dup, ends_cross = link_nodes(keys, duplicates), link_nodes(keys, cross)
    component = components(len(keys), np.concatenate([ends_dup, ends_cross]))
    risky = may_conflict(keys, component, components(len(keys), ends_dup))
    subset = np.flatnonzero(risky[component])
    forest = ConstrainedUnionFind(
        keys["agency"].to_numpy(object)[subset].tolist(),
        keys["nhs_token"].to_numpy(object)[subset].tolist(),
        keys["upn_token"].to_numpy(object)[subset].tolist(),
    )
    agencies, tokens = keys["agency"].to_numpy(object), keys["person_token"].to_numpy(object)
    node = {(agencies[i], tokens[i]): local for local, i in enumerate(subset)}
    outcomes = []
    for links, ends, same_person in ((duplicates, ends_dup, True), (cross, ends_cross, False)):
        checked = risky[component[ends[:, 0]]] if len(ends) else np.zeros(0, dtype=bool)
        kept, refused, over = forest.add_links(links[checked], node, same_person)
        keep = ~checked
        keep[kept] = True  # positions: links are numbered 0..n-1 in weight order
        outcomes.append((links[keep], refusals(links, refused), refusals(links, over)))
    cluster = subset_roots(component, subset, forest)
    return Clusters(
        records=keys[list(RECORD_KEY)].assign(cluster=cluster),
        kept=concat_rows([o[0] for o in outcomes]),
        refused=concat_rows([o[1] for o in outcomes]),
        identifier_conflicts=concat_rows([o[2] for o in outcomes]),
    )


def link_nodes(keys: pd.DataFrame, links: pd.DataFrame) -> np.ndarray:
    """(left, right) row of each link's records in keys, shape (n links, 2); KeyError for a
    record not in keys."""
    ends = [
        record_rows(keys, links[f"agency_{side}"], links[f"person_token_{side}"])
        for side in ("l", "r")
    ]
    nodes = np.column_stack(ends).astype(np.int64) if ends[0].size else np.empty((0, 2), np.int64)
    if (nodes < 0).any():
        raise KeyError("a link names a record that is not among the records")
    return nodes


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected component number of each of n nodes under the (n edges, 2) edges."""
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def several_per_group(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group number, True when its members hold more than one distinct value (>= 0)."""
    present = values >= 0
    width = np.int64(values.max() + 1) if present.any() else np.int64(1)
    pairs = distinct(groups[present].astype(np.int64) * width + values[present])
    return np.bincount(pairs // width, minlength=n_groups) > 1


def may_conflict(keys: pd.DataFrame, component: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Per component, True when its records hold two NHS number tokens, two UPN tokens, or two
    groups of duplicate-linked records (`person`) of one agency."""
    n = int(component.max()) + 1 if len(component) else 0
    risky = np.zeros(n, dtype=bool)
    for column in ("nhs_token", "upn_token"):
        codes = pd.factorize(keys[column].to_numpy(object), use_na_sentinel=True)[0]
        risky |= several_per_group(component, codes, n)
    agency, names = pd.factorize(keys["agency"].to_numpy(object))
    width = max(len(names), 1)
    by_agency = several_per_group(component * width + agency, person, width * n)
    return risky | by_agency.reshape(n, width).any(axis=1)


def subset_roots(
    component: np.ndarray, subset: np.ndarray, forest: ConstrainedUnionFind
) -> np.ndarray:
    """Each record's cluster: its component's smallest record, or for records run through the
    forest (subset, in ascending order) the record at its root."""
    smallest = np.full(int(component.max()) + 1 if len(component) else 0, len(component))
    np.minimum.at(smallest, component, np.arange(len(component)))
    cluster = smallest[component]
    cluster[subset] = subset[[forest.root(i) for i in range(len(subset))]]
    return cluster


def records_in_key_order(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record, sorted by (agency, person_token), with its identifier tokens."""
    columns = [*RECORD_KEY, "nhs_token", "upn_token"]
    frame = records.reindex(columns=columns).drop_duplicates(list(RECORD_KEY))
    return frame.take(key_order(frame)).reset_index(drop=True)


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows one after another (the first frame's columns when all are empty)."""
    filled = [f for f in frames if len(f)]
    return pd.concat(filled or frames[:1], ignore_index=True)


def refusals(links: pd.DataFrame, refused: list[tuple[int, str]]) -> pd.DataFrame:
    """The refused rows of links with their reason."""
    index = [i for i, _ in refused]
    return links.loc[index].assign(reason=[reason for _, reason in refused])


# ----------------------------------------------------------------------------------------------
# 7. Stable child ids
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdState:
    """The persistent id registry (one row per record ever linked) and the id history."""

    registry: pd.DataFrame
    history: pd.DataFrame

    def used_ids(self) -> set[str]:
        """Every id ever given out: held by a record, retired, or merged into."""
        return (
            set(self.registry["child_id"])
            | set(self.history["retired_id"])
            | set(self.history["child_id"])
        )


def registry_dir(settings: Settings) -> Path:
    """Where the id registry and history persist across runs and periods."""
    return settings.data_dir / "spine"


def empty_id_state() -> IdState:
    return IdState(
        registry=pd.DataFrame({c: pd.Series(dtype=object) for c in REGISTRY_COLUMNS}),
        history=pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS}),
    )


def read_id_state(directory: Path) -> IdState:
    """The registry and history in directory (empty when there are none yet)."""
    empty = empty_id_state()
    registry, history = directory / REGISTRY_FILE, directory / HISTORY_FILE
    return IdState(
        registry=pd.read_parquet(registry) if registry.exists() else empty.registry,
        history=pd.read_parquet(history) if history.exists() else empty.history,
    )


def write_id_state(state: IdState, directory: Path) -> None:
    """Write the registry and history, each atomically (temporary file, then os.replace)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / HISTORY_FILE, state.history.to_parquet)
    write_atomically(directory / REGISTRY_FILE, state.registry.to_parquet)


def write_atomically(path: Path, write: Callable[..., object]) -> None:
    """Call write(temporary_path, index=False) next to path, then move the result over path."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temporary, index=False)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def child_id_of(agency: str, token: str, salt: int = 0) -> str:
    """'C' + the first 16 hex digits of sha256 of 'agency|person_token' (then '|salt')."""
    text = f"{agency}|{token}" + (f"|{salt}" if salt else "")
    return "C" + hashlib.sha256(text.encode()).hexdigest()[:16]


def fresh_child_id(agency: str, token: str, used: set[str]) -> str:
    """The cluster's own id, salted until it is one never used before."""
    salt = 0
    while (candidate := child_id_of(agency, token, salt)) in used:
        salt += 1
    return candidate


def fresh_child_ids(keys: pd.Series, used: set[str]) -> dict[int, str]:
    """A fresh id for each cluster of keys (cluster -> smallest key, in key order), handed out
    in key order, each one never used before nor given to an earlier cluster."""
    first_tries = [child_id_of(*key.split("|", 1)) for key in keys]
    if used.isdisjoint(first_tries) and len(set(first_tries)) == len(first_tries):
        return dict(zip(keys.index, first_tries, strict=True))  # the common case, all at once
    given = {}
    for cluster, key in keys.items():
        agency, token = key.split("|", 1)
        given[cluster] = fresh_child_id(agency, token, used)
        used.add(given[cluster])
    return given


LAST_PERIOD = "~"  # sorts after every period label: an id with no known period is the youngest


def id_votes(clusters: pd.DataFrame, keys: pd.Series, state: IdState) -> pd.DataFrame:
    """Per (cluster, prior id): members holding it, the id's first period, the cluster's key
    (keys: `cluster_keys`); in the order ids are handed out."""
    prior = clusters.merge(
        state.registry[[*RECORD_KEY, "child_id"]], on=list(RECORD_KEY), how="inner"
    )
    votes = prior.groupby(["cluster", "child_id"]).size().rename("votes").reset_index()
    first_seen = state.registry.groupby("child_id")["first_seen_period"].min()
    votes["first_seen"] = votes["child_id"].map(first_seen).fillna(LAST_PERIOD)
    votes["cluster_key"] = votes["cluster"].map(keys)
    return votes.sort_values(
        ["votes", "first_seen", "child_id", "cluster_key"],
        ascending=[False, True, True, True],
        kind="mergesort",
    )


def cluster_keys(clusters: pd.DataFrame) -> pd.Series:
    """Each cluster's smallest 'agency|person_token' (index: cluster), in order of the keys."""
    keys = (clusters["agency"].astype(str) + "|" + clusters["person_token"].astype(str)).to_numpy()
    order = pc.sort_indices(pa.array(keys, pa.string())).to_numpy()
    cluster = clusters["cluster"].to_numpy()[order]
    first = ~pd.Series(cluster).duplicated().to_numpy()
    return pd.Series(keys[order][first], index=cluster[first], dtype=object)


def assign_child_ids(
    clusters: pd.DataFrame, state: IdState, period: str | None
) -> tuple[pd.Series, IdState]:
    """A child_id for every record of clusters (agency, person_token, cluster), by the rule of
    the module docstring, and the registry and history updated with them."""
    keys = cluster_keys(clusters)
    votes = id_votes(clusters, keys, state)
    given: dict[int, str] = {}
    taken: set[str] = set()
    for cluster, child_id in zip(votes["cluster"], votes["child_id"], strict=True):
        if cluster not in given and child_id not in taken:
            given[cluster] = child_id
            taken.add(child_id)
    given.update(fresh_child_ids(keys[~keys.index.isin(list(given))], state.used_ids() | taken))
    child_ids = clusters["cluster"].map(given).rename("child_id")
    retired = retired_ids(votes, given, period)
    return child_ids, updated_id_state(state, clusters.assign(child_id=child_ids), retired, period)


def retired_ids(votes: pd.DataFrame, given: dict[int, str], period: str | None) -> pd.DataFrame:
    """Prior ids no cluster kept, each with the id of the cluster most of its members joined."""
    lost = votes[~votes["child_id"].isin(set(given.values()))]
    best = lost.drop_duplicates("child_id", keep="first")  # votes are in hand-out order
    return pd.DataFrame(
        {
            "retired_id": best["child_id"].to_numpy(),
            "child_id": best["cluster"].map(given).to_numpy(),
            "period": period,
        },
        columns=list(HISTORY_COLUMNS),
    ).astype(object)


def updated_id_state(
    state: IdState, assigned: pd.DataFrame, retired: pd.DataFrame, period: str | None
) -> IdState:
    """Registry rows of this run's records replaced (first seen kept, last seen advanced); rows
    of absent records kept, with retired ids pointed at the id they were merged into."""
    merged_into = dict(zip(retired["retired_id"], retired["child_id"], strict=True))
    before = state.registry.reset_index(drop=True)
    now = assigned[[*RECORD_KEY, "child_id"]].reset_index(drop=True)
    rows = record_rows(before, now["agency"], now["person_token"])
    old_first, old_last = (
        pd.Series(column_at(before, column, rows), dtype=object)
        for column in ("first_seen_period", "last_seen_period")
    )
    now["first_seen_period"] = old_first.where(old_first.notna(), period)
    now["last_seen_period"] = latest_period(old_last, period)
    absent = np.ones(len(before), dtype=bool)
    absent[rows[rows >= 0]] = False
    kept = before[absent].assign(child_id=before["child_id"][absent].replace(merged_into))
    registry = concat_rows([now.iloc[:0], kept, now]).reindex(columns=list(REGISTRY_COLUMNS))
    registry = registry.take(key_order(registry)).reset_index(drop=True)
    history = pd.concat([state.history, retired], ignore_index=True)
    return IdState(registry=registry.astype(object), history=history.astype(object))


def column_at(frame: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    """frame[column] at each row (object), None where the row is -1 (`record_rows`: not found)."""
    found = rows >= 0
    values = np.full(len(rows), None, dtype=object)
    values[found] = frame[column].to_numpy(object)[rows[found]]
    return values


def key_order(records: pd.DataFrame) -> np.ndarray:
    """Row order by (agency, person_token)."""
    return arrow_order(records, [(c, "ascending") for c in RECORD_KEY])


def arrow_order(frame: pd.DataFrame, sort_keys: list[tuple[str, str]]) -> np.ndarray:
    """Stable row order of frame by sort_keys ((column, 'ascending' | 'descending')), sorted in
    Arrow: text columns as strings, with no Python string comparisons."""
    columns = {}
    for column, _ in sort_keys:
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values)
        columns[column] = pa.array(values.to_numpy() if numeric else values.astype(str).to_numpy())
    return pc.sort_indices(pa.table(columns), sort_keys=sort_keys).to_numpy()


def latest_period(previous: pd.Series, period: str | None) -> pd.Series:
    """The later of each previous last-seen period and this run's period (None: unchanged)."""
    if period is None:
        return previous
    text = previous.astype("string")
    later = (text.isna() | (text < period)).to_numpy(dtype=bool)
    values = np.where(later, period, previous.to_numpy(dtype=object))
    return pd.Series(values.astype(object), index=previous.index)
