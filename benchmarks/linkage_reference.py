"""Cleartext reference linkers for the linkage benchmark, and the pairwise accuracy measure.

Both reference tools see the identifiable records (`ClearData`): one table of all records with
`record_id` and `source` (the file or agency), the fields named in its `FieldRoles`, and link
them with the same blocking rules (`blocking_rules`, the cleartext twins of joinedup's own
rules: identifiers; date of birth with the surname's or the forename's Soundex, the postcode
district or the address; birth month with both Soundex codes; birth year with both names;
postcode with forename or birth year; forename, surname Soundex and address):

- `link_recordlinkage`: the standard recordlinkage 0.16 recipe, binary comparison features
  (Jaro-Winkler >= 0.85 for names and address text, exact for the rest) and the unsupervised
  `ECMClassifier`, once per pair of sources and once within each source when duplicates count;
- `link_splink`: Splink 5 on DuckDB: names with Jaro-Winkler levels and term frequencies, date
  of birth with Splink's date comparison, UK postcodes at full, sector and district level,
  identifiers exact or one edit apart; the prior from deterministic rules, u from random
  sampling, m by EM in the two sessions Splink's tutorials use (names, date of birth),
  predict and cluster at 0.9.

Each returns a `Linked`: clusters (record_id, cluster) and the pairs it matched (for
recordlinkage per pair of sources, out of how many candidates). `pairwise_accuracy` scores
clusters against the truth over all record pairs, so a tool that links A-B and B-C but not A-C
is judged by its clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from typing import Any

import numpy as np
import pandas as pd

from joinedup.pseudonymise import normalise_name, phonetic_code

MATCH_PROBABILITY = 0.9  # both reference tools and joinedup link at or above this
JARO_WINKLER = 0.85  # recordlinkage's usual binary threshold for names and address text
SPLINK_U_PAIRS = 5e6
SPLINK_PRIOR_RECALL = 0.7

RECORD_ID, SOURCE, CLUSTER, TRUE_ID = "record_id", "source", "cluster", "true_id"
DERIVED = ("birth_ym", "birth_year", "forename_sdx", "surname_sdx", "postcode_district")
# The cleartext twins of joinedup's rules (joinedup.link.blocking.BLOCKING_RULES), each tight
# enough for a million records per source: a date of birth, a birth month or a postcode alone
# would give blocks of hundreds of records there (the first version blocked on date of birth
# alone and on birth month with one name's Soundex, and Splink ran out of memory at 1M). Address
# text stands in for joinedup's address Bloom bands (exact here); identifiers are exact only.
BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("nhs_number",),
    ("upn",),
    ("dob", "surname_sdx"),
    ("dob", "forename_sdx"),
    ("dob", "postcode_district"),
    ("dob", "address"),
    ("birth_ym", "forename_sdx", "surname_sdx"),
    ("birth_year", "forename", "surname"),
    ("postcode", "forename"),
    ("postcode", "birth_year"),
    ("forename", "surname_sdx", "address"),
)


@dataclass(frozen=True)
class FieldRoles:
    """What each cleartext column is, so both reference tools build the same kind of model."""

    names: tuple[str, ...] = ("forename", "surname")
    dob: str = "dob"
    identifiers: tuple[str, ...] = ("nhs_number", "upn")
    text: tuple[str, ...] = ("address",)
    uk_postcode: str | None = "postcode"
    exact: tuple[str, ...] = ("sex",)
    exact_with_frequencies: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FieldRoles:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class ClearData:
    """All records of a dataset in clear, with the roles of their columns."""

    records: pd.DataFrame  # record_id, source, and the columns FieldRoles names
    roles: FieldRoles
    link_type: str  # "link_only" (no duplicates within a source) or "link_and_dedupe"
    sources: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Linked:
    """A reference tool's clusters and its matched pairs, as text for the report."""

    clusters: pd.DataFrame  # record_id, cluster
    matches: str


# --- cleaning and blocking keys (part of each tool's timed run) -----------------------------


def _mapped(values: pd.Series, function: Any) -> pd.Series:
    """function applied once per distinct non-null value."""
    distinct = values.dropna().unique()
    lookup = dict(zip(distinct, map(function, distinct), strict=True))
    return values.map(lookup)


def clean_records(records: pd.DataFrame, roles: FieldRoles) -> pd.DataFrame:
    """Names as A-Z, identifiers and postcodes compacted, plus the derived blocking keys."""
    frame = records.copy()
    for name in roles.names:
        frame[name] = _mapped(frame[name], normalise_name)
    for column in (*roles.identifiers, roles.uk_postcode):
        if column in frame:
            frame[column] = frame[column].str.replace(r"\s+", "", regex=True).str.upper()
    if roles.uk_postcode in frame:  # Splink's postcode comparison wants "LS6 2AB"
        code = frame[roles.uk_postcode]
        frame[roles.uk_postcode] = code.str.slice(0, -3) + " " + code.str.slice(-3)
        frame["postcode_district"] = code.str.slice(0, -3)
    frame["birth_ym"] = frame[roles.dob].str.slice(0, 7)
    frame["birth_year"] = frame[roles.dob].str.slice(0, 4)
    forename, surname = roles.names
    frame["forename_sdx"] = _mapped(frame[forename], phonetic_code)
    frame["surname_sdx"] = _mapped(frame[surname], phonetic_code)
    return frame.replace({np.nan: None})


def blocking_rules(records: pd.DataFrame) -> list[tuple[str, ...]]:
    """The rules whose columns the dataset holds (a column of nulls only is not held)."""
    held = {c for c in records.columns if records[c].notna().any()}
    return [rule for rule in BLOCKING_RULES if held.issuperset(rule)]


# --- recordlinkage ECM ----------------------------------------------------------------------


def source_pairs(sources: Sequence[str], link_type: str) -> list[tuple[str, str]]:
    """The (left, right) sources to link: every pair, and each source with itself for dedupe."""
    pairs = combinations_with_replacement(sources, 2)
    return [(a, b) for a, b in pairs if a != b or link_type == "link_and_dedupe"]


def recordlinkage_features(
    left: pd.DataFrame, right: pd.DataFrame | None, roles: FieldRoles, rules: list
) -> pd.DataFrame:
    """Binary comparison features of the blocked pairs of two sources (or one, deduplicated)."""
    import recordlinkage

    indexer = recordlinkage.Index()
    for rule in rules:
        indexer.block(list(rule))
    pairs = indexer.index(left) if right is None else indexer.index(left, right)
    compare = recordlinkage.Compare()
    for column in (*roles.names, *roles.text):
        compare.string(column, column, method="jarowinkler", threshold=JARO_WINKLER, label=column)
    exact = (roles.dob, *roles.identifiers, roles.uk_postcode, *roles.exact)
    for column in (*exact, *roles.exact_with_frequencies):
        if column and left[column].notna().any():
            compare.exact(column, column, label=column)
    return compare.compute(pairs, left, left if right is None else right)


def link_recordlinkage(data: ClearData) -> Linked:
    """Clusters of the records from ECM matches, per pair of sources."""
    from recordlinkage import ECMClassifier

    records = clean_records(data.records, data.roles).set_index(RECORD_ID)
    rules = blocking_rules(records)
    matches, counts = [], []
    for a, b in source_pairs(data.sources, data.link_type):
        left = records[records[SOURCE] == a]
        right = None if a == b else records[records[SOURCE] == b]
        features = recordlinkage_features(left, right, data.roles, rules)
        if len(features):
            found = ECMClassifier(binarize=None).fit_predict(features)
            matches.append(found.to_frame(index=False).set_axis(["l", "r"], axis=1))
        counts.append(f"{a}-{b} {len(matches[-1]) if len(features) else 0:,} of {len(features):,}")
    links = pd.concat([pd.DataFrame(columns=["l", "r"]), *matches], ignore_index=True)
    clusters = clusters_of_links(records.index.to_numpy(), links["l"], links["r"])
    return Linked(clusters, "ECM matches of candidate pairs: " + ", ".join(counts))


def clusters_of_links(ids: np.ndarray, left: pd.Series, right: pd.Series) -> pd.DataFrame:
    """(record_id, cluster): connected components of the links over all records."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    position = pd.Series(np.arange(len(ids)), index=ids)
    rows, cols = position[left].to_numpy(), position[right].to_numpy()
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    return pd.DataFrame({RECORD_ID: ids, CLUSTER: labels})


# --- Splink 5 on DuckDB ---------------------------------------------------------------------


def splink_settings(roles: FieldRoles, records: pd.DataFrame, link_type: str) -> Any:
    """A Splink model of the fields the dataset holds, blocking on `blocking_rules`."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons = [
        cl.NameComparison(name).configure(term_frequency_adjustments=True) for name in roles.names
    ]
    comparisons.append(cl.DateOfBirthComparison(roles.dob, input_is_string=True))
    held = {c for c in records.columns if records[c].notna().any()}
    comparisons += [
        cl.DamerauLevenshteinAtThresholds(c, [1]) for c in roles.identifiers if c in held
    ]
    comparisons += [cl.JaroWinklerAtThresholds(c, [0.95, 0.88]) for c in roles.text if c in held]
    if roles.uk_postcode in held:
        comparisons.append(cl.PostcodeComparison(roles.uk_postcode))
    comparisons += [cl.ExactMatch(c) for c in roles.exact if c in held]
    comparisons += [
        cl.ExactMatch(c).configure(term_frequency_adjustments=True)
        for c in roles.exact_with_frequencies
        if c in held
    ]
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name=RECORD_ID,
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=[
            block_on(*rule) for rule in blocking_rules(records)
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def link_splink(
    data: ClearData, memory_limit: str | None = None, spill_dir: str | None = None
) -> Linked:
    """Clusters of the records from Splink's predictions at MATCH_PROBABILITY; DuckDB kept
    within memory_limit, spilling to spill_dir."""
    import duckdb
    from splink import DuckDBAPI, Linker, block_on

    records = clean_records(data.records, data.roles)
    connection = duckdb.connect()
    if memory_limit:
        connection.execute(f"SET memory_limit = '{memory_limit}'")
    if spill_dir:
        connection.execute(f"SET temp_directory = '{spill_dir}'")
    db_api = DuckDBAPI(connection)
    tables = [
        db_api.register(records[records[SOURCE] == s].drop(columns=[SOURCE]), table_name=s)
        for s in data.sources
    ]
    settings = splink_settings(data.roles, records, data.link_type)
    linker = Linker(tables, settings, log_level=None)
    forename, surname = data.roles.names
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on(forename, surname, data.roles.dob)], recall=SPLINK_PRIOR_RECALL
    )
    training.estimate_u_using_random_sampling(max_pairs=SPLINK_U_PAIRS, seed=1)
    training.estimate_parameters_using_expectation_maximisation(block_on(forename, surname))
    training.estimate_parameters_using_expectation_maximisation(block_on(data.roles.dob))
    predictions = linker.inference.predict(threshold_match_probability=MATCH_PROBABILITY)
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, MATCH_PROBABILITY
    ).as_pandas_dataframe()
    predicted = predictions.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0]
    clusters = clustered[[RECORD_ID, "cluster_id"]].rename(columns={"cluster_id": CLUSTER})
    return Linked(clusters, f"pairs predicted >= {MATCH_PROBABILITY}: {predicted:,}")


# --- accuracy -------------------------------------------------------------------------------


def pairs_within(sizes: pd.Series) -> int:
    """Record pairs inside groups of these sizes."""
    n = sizes.to_numpy(np.int64)
    return int((n * (n - 1) // 2).sum())


def pairwise_accuracy(clusters: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Precision, recall and F1 over all record pairs: a pair is predicted when its records
    share a cluster and true when they share a true_id. Records without a cluster are alone."""
    joined = clustered_truth(clusters, truth)
    true_pairs = pairs_within(joined.groupby(TRUE_ID).size())
    predicted = pairs_within(joined.groupby(CLUSTER).size())
    hits = pairs_within(joined.groupby([CLUSTER, TRUE_ID]).size())
    return accuracy(true_pairs, predicted, hits)


def clustered_truth(clusters: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The truth with each record's cluster; a record without one is a cluster of its own."""
    joined = truth.merge(
        clusters[[RECORD_ID, CLUSTER]].drop_duplicates(RECORD_ID), on=RECORD_ID, how="left"
    )
    alone = joined[CLUSTER].isna()
    joined[CLUSTER] = joined[CLUSTER].astype(object)
    joined.loc[alone, CLUSTER] = "alone:" + joined.loc[alone, RECORD_ID].astype(str)
    joined[CLUSTER] = joined[CLUSTER].astype(str)
    return joined


def accuracy(true_pairs: int, predicted: int, hits: int) -> dict[str, float]:
    precision = hits / predicted if predicted else 1.0
    recall = hits / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_pairs": true_pairs,
        "predicted_pairs": predicted,
        "true_positives": hits,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def pairs_between(joined: pd.DataFrame, by: list[str], a: str, b: str, source: str) -> int:
    """Record pairs, one of source a and one of b (two of a when a == b), in the same group."""
    counts = joined.groupby([*by, source]).size().unstack(fill_value=0)
    left = counts[a] if a in counts else pd.Series(0, index=counts.index)
    right = counts[b] if b in counts else pd.Series(0, index=counts.index)
    pairs = left * (left - 1) // 2 if a == b else left * right
    return int(pairs.sum())


def accuracy_by_source_pair(
    clusters: pd.DataFrame, truth: pd.DataFrame, source: str = "agency"
) -> dict[str, dict[str, float]]:
    """pairwise_accuracy per pair of sources ('education-health', 'health-health', ...)."""
    joined = clustered_truth(clusters, truth)
    sources = sorted(joined[source].unique(), key=list(joined[source].unique()).index)
    out = {}
    for i, a in enumerate(sources):
        for b in sources[i:]:
            out[f"{a}-{b}"] = accuracy(
                pairs_between(joined, [TRUE_ID], a, b, source),
                pairs_between(joined, [CLUSTER], a, b, source),
                pairs_between(joined, [CLUSTER, TRUE_ID], a, b, source),
            )
    return out


def missed_within_source(
    clusters: pd.DataFrame, truth: pd.DataFrame, source: str = "agency", limit: int = 5
) -> dict[str, list[str]]:
    """Per source with at most `limit` missed duplicate pairs (two records of one child in one
    source, not put in one cluster), those pairs as 'record_id + record_id', so the tools'
    misses can be compared pair by pair."""
    joined = clustered_truth(clusters, truth)
    out = {}
    for name, records in joined.groupby(source, sort=False):
        pairs = records.merge(records, on=TRUE_ID, suffixes=("_a", "_b"))
        missed = pairs[
            (pairs[f"{RECORD_ID}_a"] < pairs[f"{RECORD_ID}_b"])
            & (pairs[f"{CLUSTER}_a"] != pairs[f"{CLUSTER}_b"])
        ]
        if len(missed) <= limit:
            ends = zip(missed[f"{RECORD_ID}_a"], missed[f"{RECORD_ID}_b"], strict=True)
            out[f"{name}-{name}"] = sorted(f"{a} + {b}" for a, b in ends)
    return out


def recall_by_group(
    clusters: pd.DataFrame, truth: pd.DataFrame, group: str
) -> dict[str, dict[str, float]]:
    """Per group, the true record pairs of its children and the share of them that share a
    cluster (recall). A child's group is the one most of its records give (truth[group], null
    where a record gives none); children whose records give none are left out."""
    joined = clustered_truth(clusters, truth)
    counts = joined.dropna(subset=[group]).groupby([TRUE_ID, group]).size()
    commonest = counts.sort_values(ascending=False, kind="stable").reset_index()
    child_group = commonest.drop_duplicates(TRUE_ID).set_index(TRUE_ID)[group]
    joined["child_group"] = joined[TRUE_ID].map(child_group)
    out = {}
    for value, part in joined.dropna(subset=["child_group"]).groupby("child_group"):
        true_pairs = pairs_within(part.groupby(TRUE_ID).size())
        hits = pairs_within(part.groupby([CLUSTER, TRUE_ID]).size())
        out[str(value)] = {
            "true_pairs": true_pairs,
            "recall": hits / true_pairs if true_pairs else 1.0,
        }
    return out
