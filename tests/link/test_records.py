"""Tests of joinedup.link.records: finding records by their key."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup.link.records import distinct, record_rows


def test_record_rows_finds_each_key_by_agency_and_token_and_minus_one_when_absent() -> None:
    """The same token under two agencies is two records; a key not held, or of an agency with
    no records, gets -1."""
    records = pd.DataFrame(
        {"agency": ["health", "care", "health"], "person_token": ["t1", "t1", "t2"]}
    )
    agency = pd.Series(["care", "health", "health", "care", "education"])
    token = pd.Series(["t1", "t2", "t1", "t2", "t1"])
    assert record_rows(records, agency, token).tolist() == [1, 2, 0, -1, -1]


def test_distinct_gives_each_value_once_ascending() -> None:
    """distinct is np.unique by sorting: repeats dropped, order ascending, empty stays empty."""
    values = np.array([5, 3, 5, -1, 3, 9], dtype=np.int64)
    assert distinct(values).tolist() == [-1, 3, 5, 9]
    assert distinct(np.empty(0, np.int64)).tolist() == []
