"""The corpus of bad deliveries in tests/bad_inputs: each file ends exactly as cases.json says
(rejected with its reason, or its rows quarantined under the named rules), and no row is lost."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from joinedup.pipeline import check_extract

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
PERIOD = "2024-25"


def test_the_corpus_holds_at_least_thirty_kinds_of_bad_input():
    assert len(CASES) >= 30
    assert len({case["file"] for case in CASES}) == len(CASES)
    for case in CASES:
        assert (CORPUS / case["file"]).exists(), case["file"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_each_bad_input_ends_as_expected_and_loses_no_row(case):
    path = CORPUS / case["file"]
    delivery, quarantine = check_extract(path, case["agency"], PERIOD, case["extract"])
    if case["status"] == "rejected":
        assert delivery.status == "rejected", delivery
        assert path.name in delivery.reason
        assert re.search(case["reason"], delivery.reason), delivery.reason
        return
    assert delivery.status == case["status"], delivery.reason
    if "reason" in case:
        assert re.search(case["reason"], delivery.reason), delivery.reason
    assert delivery.rows_received == case["rows_received"]
    found = sorted(
        [int(row), rule] for row, rule in zip(quarantine.row, quarantine.rule, strict=True)
    )
    assert found == sorted(case["quarantined"])
    assert delivery.rows_quarantined == len({row for row, _ in case["quarantined"]})
    assert delivery.rows_accepted + delivery.rows_quarantined == delivery.rows_received


def test_quarantine_names_file_row_rule_and_value_but_never_a_token():
    delivery, quarantine = check_extract(
        CORPUS / "malformed_token.csv", "health", PERIOD, "health_referrals"
    )
    entry = quarantine.iloc[0]
    assert (entry.file, entry.row, entry.rule) == ("malformed_token.csv", 5, "token:person_token")
    assert entry.value == "<redacted>"
    assert entry.quarantined_at
    delivery, quarantine = check_extract(
        CORPUS / "code_outside_list.csv", "health", PERIOD, "health_referrals"
    )
    assert list(quarantine.value) == ["SALT"]
