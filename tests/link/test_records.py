"""Tests of joinedup.link.records: finding records by their key, reading links from both ends."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup.link.records import distinct, link_ends, record_rows


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


def test_link_ends_reads_each_link_from_both_records_with_its_values() -> None:
    """A link is two ends: from its left record to the right one and back, each carrying the
    link's own values."""
    links = pd.DataFrame(
        {
            "agency_l": ["education", "health"],
            "person_token_l": ["e1", "h1"],
            "agency_r": ["health", "care"],
            "person_token_r": ["h1", "c1"],
        }
    )
    ends = link_ends(links, weight=np.array([5.0, 7.0]))
    assert ends.to_dict("records") == [
        {
            "agency": "education",
            "person_token": "e1",
            "other_agency": "health",
            "other_token": "h1",
            "weight": 5.0,
        },
        {
            "agency": "health",
            "person_token": "h1",
            "other_agency": "care",
            "other_token": "c1",
            "weight": 7.0,
        },
        {
            "agency": "health",
            "person_token": "h1",
            "other_agency": "education",
            "other_token": "e1",
            "weight": 5.0,
        },
        {
            "agency": "care",
            "person_token": "c1",
            "other_agency": "health",
            "other_token": "h1",
            "weight": 7.0,
        },
    ]
