"""Tests of joinedup.link.review: the review file, decisions and their validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from joinedup.cli import main
from joinedup.link.review import (
    REVIEW_COLUMNS,
    ReviewFileError,
    current_decisions,
    decisions_path,
    in_review_band,
    matching_pairs,
    pair_id,
    read_decisions,
    record_decisions,
    review_rows,
)
from joinedup.settings import Settings

PERIOD = "2024-25"


def pairs(*rows: tuple[str, str, str, str, float, bool]) -> pd.DataFrame:
    """ScoredPairs-shaped pairs: keys, probability and may_link (weight from probability)."""
    frame = pd.DataFrame(
        list(rows),
        columns=[
            "agency_l",
            "person_token_l",
            "agency_r",
            "person_token_r",
            "match_probability",
            "may_link",
        ],
    )
    return frame.assign(match_weight=1.0, agreement="nhs:missing", identifier_agrees=False)


PAIRS = pairs(
    ("education", "e1", "health", "h1", 0.95, True),  # links outright
    ("education", "e2", "health", "h2", 0.70, True),  # review
    ("education", "e3", "health", "h3", 0.50, True),  # review (band includes its lower end)
    ("education", "e4", "health", "h4", 0.70, False),  # twin guard: never reviewed
    ("health", "h5", "health", "h6", 0.60, True),  # duplicate pair: review
    ("education", "e5", "care", "c5", 0.40, True),  # below the band
)
RECORDS = pd.DataFrame(
    {
        "agency": ["education", "health"],
        "person_token": ["e2", "h2"],
        "birth_ym": ["2012-03", "2012-03"],
        "sex": ["F", "F"],
        "postcode_district": ["LS6", "LS7"],
        "la_code": ["E08000035", "E08000035"],
        "forename_token": ["secret-f", "secret-f"],
    }
)


def test_pair_id_names_the_two_records_in_either_order() -> None:
    assert pair_id("education", "e1", "health", "h1") == pair_id("health", "h1", "education", "e1")
    assert pair_id("education", "e1", "health", "h1") != pair_id("education", "e1", "health", "h2")
    assert pair_id("education", "e1", "health", "h1").startswith("P")


def test_review_band_is_between_the_thresholds_and_respects_the_twin_guard() -> None:
    band = PAIRS[in_review_band(PAIRS, Settings())]
    assert list(band.person_token_l) == ["e2", "e3", "h5"]


def test_review_rows_carry_context_but_no_identifier() -> None:
    rows = review_rows(PAIRS.iloc[[1]], RECORDS)
    assert list(rows.columns) == list(REVIEW_COLUMNS)
    row = rows.iloc[0]
    assert row.pair_id == pair_id("education", "e2", "health", "h2")
    assert (row.postcode_district_l, row.postcode_district_r) == ("LS6", "LS7")
    assert (row.decision, row.reviewer, row.note) == ("", "", "")
    assert "secret-f" not in rows.to_csv()


def reviewed_file(path: Path, decisions: dict[str, str], reviewer: str = "ann") -> Path:
    """The review file of PAIRS' band with decisions {person_token_l: decision} filled in."""
    rows = review_rows(PAIRS[in_review_band(PAIRS, Settings())], RECORDS)
    rows["decision"] = rows.person_token_l.map(decisions).fillna("")
    rows["reviewer"] = [reviewer if d else "" for d in rows.decision]
    rows.to_csv(path, index=False)
    return path


def test_decisions_are_kept_and_a_later_one_replaces_the_earlier(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = reviewed_file(tmp_path / "first.csv", {"e2": "accept", "h5": "Reject "})
    assert len(record_decisions(first, settings, PERIOD, decided_at="t1")) == 2
    second = reviewed_file(tmp_path / "second.csv", {"e2": "reject", "h5": "reject"})
    assert len(record_decisions(second, settings, PERIOD, decided_at="t2")) == 1  # h5 unchanged
    history = read_decisions(decisions_path(settings))
    assert list(history.decision) == ["accept", "reject", "reject"]
    current = current_decisions(history).set_index("person_token_l")
    assert current.loc["e2", "decision"] == "reject"
    assert current.loc["e2", "decided_at"] == "t2"
    assert current.loc["h5", "decision"] == "reject"
    assert set(history.period) == {PERIOD}


def test_matching_pairs_finds_decided_pairs_in_either_orientation() -> None:
    decided = pairs(("health", "h2", "education", "e2", 0.7, True))
    assert list(matching_pairs(PAIRS, decided)) == [False, True, False, False, False, False]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda f: f.assign(decision="maybe"), "line 2: decision 'maybe' is not one of"),
        (lambda f: f.assign(reviewer=""), "line 2: a decision without a reviewer"),
        (lambda f: f.assign(pair_id="P0"), "line 2: pair_id 'P0' does not match"),
        (lambda f: f.assign(agency_r="police"), "line 2: agency_r 'police' is not one of"),
        (lambda f: f.drop(columns="decision"), "missing column(s) decision"),
        (
            lambda f: pd.concat([f, f.assign(decision="reject")]),
            "lines 2, 3: pair P",
        ),
    ],
)
def test_a_bad_review_file_is_refused_naming_file_line_and_problem(
    tmp_path: Path, edit, problem: str
) -> None:
    path = reviewed_file(tmp_path / "reviewed.csv", {"e2": "accept"})
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame[frame.decision != ""]).to_csv(path, index=False)
    with pytest.raises(ReviewFileError) as error:
        record_decisions(path, Settings(data_dir=tmp_path), PERIOD)
    assert str(path) in str(error.value)
    assert problem in str(error.value)
    assert not decisions_path(Settings(data_dir=tmp_path)).exists()


def test_cli_review_reports_a_bad_file_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("JOINEDUP_DATA_DIR", str(tmp_path))
    path = reviewed_file(tmp_path / "reviewed.csv", {"e2": "yes"})
    assert main(["review", "--period", PERIOD, "--file", str(path)]) == 2
    assert f"{path}: 1 problem(s)" in capsys.readouterr().err


def test_cli_review_fills_a_blank_reviewer_and_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("JOINEDUP_DATA_DIR", str(tmp_path))
    path = reviewed_file(tmp_path / "reviewed.csv", {"e3": "accept"}, reviewer="")
    argv = ["review", "--period", PERIOD, "--file", str(path), "--reviewer", "bo"]
    assert main(argv) == 0
    assert "1 new decision(s) (1 accept, 0 reject)" in capsys.readouterr().out
    settings = replace(Settings(), data_dir=tmp_path)
    assert list(read_decisions(decisions_path(settings)).reviewer) == ["bo"]
