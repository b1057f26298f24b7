"""Tests of joinedup.link.records: finding records by their key."""

from __future__ import annotations

import pandas as pd

from joinedup.link.records import record_rows


def test_record_rows_finds_each_key_by_agency_and_token_and_minus_one_when_absent() -> None:
    """The same token under two agencies is two records; a key not held, or of an agency with
    no records, gets -1."""
    records = pd.DataFrame(
        {"agency": ["health", "care", "health"], "person_token": ["t1", "t1", "t2"]}
    )
    agency = pd.Series(["care", "health", "health", "care", "education"])
    token = pd.Series(["t1", "t2", "t1", "t2", "t1"])
    assert record_rows(records, agency, token).tolist() == [1, 2, 0, -1, -1]
