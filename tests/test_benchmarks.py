"""The linkage benchmark: its accuracy measure, its reference linkers and its FEBRL4 path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import linkage_reference as ref  # noqa: E402
from linkage_reference import (  # noqa: E402
    FieldRoles,
    clean_records,
    clusters_of_links,
    pairwise_accuracy,
    source_pairs,
)


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_pairwise_accuracy_counts_every_record_pair_of_clusters_against_truth() -> None:
    """Truth {a,b,c} {d,e}; predicted {a,b} {c,d} {e}: 1 of 2 predicted pairs right, 1 of 4
    true pairs found."""
    truth = frame(record_id=list("abcde"), true_id=[1, 1, 1, 2, 2])
    clusters = frame(record_id=list("abcde"), cluster=["x", "x", "y", "y", "z"])
    scores = pairwise_accuracy(clusters, truth)
    assert (scores["true_pairs"], scores["predicted_pairs"], scores["true_positives"]) == (
        4,
        2,
        1,
    )
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(0.25)
    assert scores["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def test_pairwise_accuracy_treats_records_without_a_cluster_as_alone() -> None:
    """Records missing from the clusters form no pairs, even with other missing records."""
    truth = frame(record_id=list("abcd"), true_id=[1, 1, 2, 2])
    clusters = frame(record_id=["a", "b"], cluster=[7, 7])
    scores = pairwise_accuracy(clusters, truth)
    assert (scores["predicted_pairs"], scores["true_positives"]) == (1, 1)
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(0.5)


def test_recall_by_group_counts_each_childs_pairs_under_its_commonest_group() -> None:
    """Child 1 (records say A, A, B: group A) has 3 pairs, 1 found; child 2 (B, unrecorded) has
    1 pair, found; child 3 records no group and is left out."""
    truth = frame(
        record_id=list("abcdefg"),
        true_id=[1, 1, 1, 2, 2, 3, 3],
        group=["A", "A", "B", "B", None, None, None],
    )
    clusters = frame(record_id=list("abcdefg"), cluster=["x", "x", "y", "z", "z", "u", "v"])
    by_group = ref.recall_by_group(clusters, truth, "group")
    assert by_group == {
        "A": {"true_pairs": 3, "recall": pytest.approx(1 / 3)},
        "B": {"true_pairs": 1, "recall": 1.0},
    }


def test_clusters_of_links_joins_chains_and_keeps_unlinked_records_apart() -> None:
    """a-b and b-c make one cluster; d stays alone."""
    clusters = clusters_of_links(
        pd.Index(list("abcd")).to_numpy(), pd.Series(["a", "b"]), pd.Series(["b", "c"])
    )
    label = dict(zip(clusters["record_id"], clusters["cluster"], strict=True))
    assert label["a"] == label["b"] == label["c"] != label["d"]


def test_source_pairs_adds_each_source_with_itself_only_when_deduplicating() -> None:
    assert source_pairs(["a", "b"], "link_only") == [("a", "b")]
    assert source_pairs(["a", "b"], "link_and_dedupe") == [("a", "a"), ("a", "b"), ("b", "b")]


def test_clean_records_normalises_fields_and_derives_blocking_keys() -> None:
    """Names A-Z, postcodes spaced as Splink expects, birth month and Soundex keys."""
    records = frame(
        record_id=["x"],
        source=["education"],
        forename=["Zoë-Ann"],
        surname=["o'neil"],
        dob=["2012-03-04"],
        nhs_number=[" 943 476 5919"],
        upn=[None],
        postcode=["ls62ab"],
        address=["1 High St"],
        sex=["F"],
    )
    cleaned = clean_records(records, FieldRoles()).iloc[0]
    assert (cleaned["forename"], cleaned["surname"]) == ("ZOEANN", "ONEIL")
    assert (cleaned["postcode"], cleaned["nhs_number"]) == ("LS6 2AB", "9434765919")
    assert (cleaned["birth_ym"], cleaned["birth_year"]) == ("2012-03", "2012")
    assert (cleaned["forename_sdx"], cleaned["surname_sdx"]) == ("Z500", "O540")


def test_febrl4_benchmark_runs_every_tool_end_to_end_and_prints_the_figures(
    tmp_path: Path,
) -> None:
    """On 100 FEBRL4 people the three tools finish in their own processes, the table shows
    each one's precision, recall, F1, seconds and peak memory (the cleartext references link
    FEBRL4 almost perfectly; joinedup's own accuracy target is the benchmark's business, not
    this test's), and RESULTS.md gains the linkage section without losing what was there."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Ingest and validation throughput\n\nkept\n", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "linkage.py"),
            "--datasets",
            "febrl4",
            "--febrl-people",
            "100",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(results),
            "--keys",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| febrl4 |")]
    assert [row.split("|")[4].strip() for row in rows] == ["joinedup", "recordlinkage", "splink"]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")]
        precision, recall, f1 = (float(cells[i]) for i in (5, 6, 7))
        assert cells[-2] == "ok", row
        assert 0 < f1 <= 1 and min(precision, recall) <= f1 <= max(precision, recall)
        assert f1 >= 0.95 or cells[4] == "joinedup", row
        assert float(cells[8]) > 0 and float(cells[11]) > 0  # seconds, peak GB
    assert "soc_sec_id -> nhs_number" in done.stdout
    written = results.read_text(encoding="utf-8")
    assert written.startswith("# Ingest and validation throughput\n\nkept\n")
    assert "# Linkage: joinedup on pseudonyms against cleartext linkers" in written
    assert all(row in written for row in rows)
    spread = [line for line in done.stdout.splitlines() if "joinedup over 2 keys" in line]
    assert spread[0].startswith("- febrl4, joinedup over 2 keys, all pairs: precision ")
    assert "- febrl4, joinedup over 2 keys, education-health: precision " in done.stdout
    assert all(line in written for line in spread)


def test_key_spread_gives_the_lowest_and_highest_figures_of_the_runs_that_finished() -> None:
    """Over the keys joinedup ran under: min-max precision and recall, in all and per agency
    pair; a run that failed is left out, and a dataset run under one key has no spread."""
    import linkage

    def run(precision: float, recall: float, pair_precision: float, pair_recall: float) -> dict:
        pair = {"precision": pair_precision, "recall": pair_recall, "true_pairs": 10}
        return {"status": "ok", "precision": precision, "recall": recall,
                "by_agency_pair": {"care-care": pair}}  # fmt: skip

    failed = {"status": "out of memory after 5 s"}
    runs = [run(1.0, 0.99, 0.998, 0.995), failed, run(0.9999, 0.995, 1.0, 0.99)]
    figures = {
        "10k": {"joinedup": {**runs[0], "key_runs": runs}, "splink": run(0.9, 0.9, 0.9, 0.9)},
        "100k": {"joinedup": run(1.0, 1.0, 1.0, 1.0)},
    }
    assert linkage.key_spread_lines(figures) == [
        "- 10k, joinedup over 2 keys, all pairs: precision 0.9999-1.0000, recall 0.9900-0.9950",
        "- 10k, joinedup over 2 keys, care-care: precision 0.9980-1.0000, recall 0.9900-0.9950",
    ]


def test_missed_lines_put_the_tools_misses_of_one_agency_side_by_side() -> None:
    """One line per agency with true duplicate pairs: each tool's missed pairs, 'none', or
    'more than 5' where the tool missed too many to list; cross-agency pairs and agencies
    without duplicates get no line."""
    import linkage

    def tool(missed: dict[str, list[str]]) -> dict:
        by_pair = {"care-care": {"true_pairs": 9}, "health-health": {"true_pairs": 0},
                   "health-care": {"true_pairs": 50}}  # fmt: skip
        return {"by_agency_pair": by_pair, "missed_duplicates": missed}

    tools = {
        "joinedup": tool({"care-care": ["c1 + c2"], "health-health": []}),
        "recordlinkage": tool({"care-care": [], "health-health": []}),
        "splink": tool({"health-health": []}),
    }
    assert linkage.missed_lines("10k", tools) == [
        "- 10k, care-care, duplicate pairs missed: joinedup: c1 + c2; recordlinkage: none; "
        "splink: more than 5"
    ]


def test_accuracy_by_source_pair_counts_cross_and_within_pairs_separately() -> None:
    """Per pair of sources, only pairs with one record from each source count (two of one
    source for a within-source pair), so a missed duplicate lowers only that source's recall."""
    truth = pd.DataFrame(
        {
            ref.RECORD_ID: ["e1", "h1", "h2", "e2", "h3"],
            ref.TRUE_ID: ["A", "A", "A", "B", "C"],
            "agency": ["education", "health", "health", "education", "health"],
        }
    )
    clusters = pd.DataFrame(
        {ref.RECORD_ID: ["e1", "h1", "h2", "e2", "h3"], ref.CLUSTER: [1, 1, 2, 3, 3]}
    )
    by_pair = ref.accuracy_by_source_pair(clusters, truth)
    cross = by_pair["education-health"]
    assert (cross["true_pairs"], cross["predicted_pairs"], cross["true_positives"]) == (2, 2, 1)
    within = by_pair["health-health"]
    assert (within["true_pairs"], within["predicted_pairs"], within["true_positives"]) == (1, 0, 0)
    assert by_pair["education-education"]["true_pairs"] == 0


def test_missed_duplicates_are_listed_per_source_only_when_few() -> None:
    """A duplicate pair (two records of one child in one source) in two clusters is listed by
    its record ids; a source with more misses than the limit is left out, one with none is an
    empty list, and pairs across sources are never listed."""
    truth = pd.DataFrame(
        {
            ref.RECORD_ID: ["h1", "h2", "e1", "c1", "c2", "c3", "c4"],
            ref.TRUE_ID: ["A", "A", "A", "B", "B", "C", "C"],
            "agency": ["health", "health", "education", "care", "care", "care", "care"],
        }
    )
    clusters = pd.DataFrame(
        {
            ref.RECORD_ID: ["h1", "h2", "e1", "c1", "c2", "c3", "c4"],
            ref.CLUSTER: [1, 2, 3, 4, 5, 6, 7],
        }
    )
    assert ref.missed_within_source(clusters, truth, limit=1) == {
        "health-health": ["h1 + h2"],
        "education-education": [],
    }
    clusters.loc[clusters[ref.RECORD_ID] == "h2", ref.CLUSTER] = 1
    assert ref.missed_within_source(clusters, truth, limit=2) == {
        "health-health": [],
        "education-education": [],
        "care-care": ["c1 + c2", "c3 + c4"],
    }


def test_a_benchmark_replaces_only_its_own_section_of_results(tmp_path: Path) -> None:
    """Rerunning one benchmark must not delete another benchmark's figures."""
    from results import replace_section

    target = tmp_path / "RESULTS.md"
    target.write_text("# Ingest\n\nold ingest\n\n# Linkage\n\nold linkage\n", encoding="utf-8")
    replace_section(target, "# Ingest", ["# Ingest", "", "new ingest", ""])
    replace_section(target, "# Other", ["# Other", "", "appended", ""])
    text = target.read_text(encoding="utf-8")
    assert "new ingest" in text and "old ingest" not in text
    assert "old linkage" in text and text.rstrip().endswith("appended")
