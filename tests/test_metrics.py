"""Tests of joinedup.metrics and transforms/*.sql: a tiny warehouse is built from hand-written
pseudonymised extracts whose metrics are computed by hand below.

The fixture builders here (`write_fixture_inputs`, `build_fixture_warehouse`) are imported by
tests/test_publish.py and tests/test_report.py.

The fixture, period 2024-25 unless said otherwise (A = Riverside, B = Shirehampton):
- School census A: 20 pupils c01-c20: N c01-c12, K c13-c17, E c18-c20; 300 sessions possible
  each except c12 (0). Persistently absent (>= 30 sessions): c01 (exactly 30), c03, c13, c14,
  c18, c20; c02 misses 29. Census B: b01-b03, all N, none persistently absent.
- Exclusions A: SUSP c13 x2, c18, c06, c07, c99 (c99 not on the census); LNCH c05; PERM c14.
- SEN2 A: plans issued in 2024-25: c18 (254 days after request, an exception to the 20-week
  limit applies), c19 (exactly 140 days); c20 pending; c17 refused. 2023-24: c16 (75 days),
  reported again in the 2024-25 delivery. Requests received in 2023-24: c16, c18 (both agreed);
  in 2024-25: c19, c20 (agreed), c17 (not agreed).
- Health referrals A with first attended contact, days waited: c13 14, c14 28, c18 70, c19 35,
  c01 7, h01 21, h02 42, h03 56, h04 49; h05 not yet seen; c02 received 2024-08-01 (2023-24),
  seen after 40 days per the 2024-25 delivery (not yet seen in the 2023-24 delivery).
  Health B: k01, not yet seen; c03, seen after 28 days (c03's area is A, education's).
- Care A: CIN c13, c18, h01, k01; LAC c18. (k01's area is B: health comes before care.)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from joinedup.contracts import contract, contracts
from joinedup.metrics import (
    CATALOGUE_DIR,
    CATALOGUE_THEMES,
    PUBLISHED_TABLES,
    PUBLISHED_VIEWS,
    SourceFile,
    build_warehouse,
    catalogue_files,
    read_catalogue,
    source_columns,
    transform_files,
)
from joinedup.settings import AGENCIES, Settings

A = "E09000099"
B = "E10000099"
P = "2024-25"
PREV = "2023-24"

# Identity attributes kept in clear, per person (defaults below).
PEOPLE: dict[str, dict[str, str]] = {
    "c18": {"birth_ym": "2012-08", "ethnicity": "BAFR", "sex": "M"},
    "c19": {"birth_ym": "2012-09", "ethnicity": "AIND"},
}
DEFAULT_PERSON = {"birth_ym": "2013-03", "sex": "F", "ethnicity": "WBRI"}

PAYLOAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "education_census": {"ncyear": 7, "fsm_eligible": False, "school_urn": "100001"},
    "education_exclusions": {"reason": "DB", "sessions": 2},
    "education_sen2": {"request_source": "PAR", "request_outcome": "A", "week20_exception": False},
    "health_referrals": {
        "dataset": "CSDS",
        "referral_source": "GP",
        "contacts_attended": 1,
        "contacts_dna": 0,
    },
    "care_cin": {"referral_source": "2A", "primary_need_code": "N1"},
    "care_lac": {"rne": "S", "legal_status": "C2", "placement": "U4"},
}


def token(*parts: str) -> str:
    """A stand-in for an HMAC token: 64 hex characters."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def person_token(agency: str, person: str) -> str:
    return token("person", agency, person)


def child_id(person: str) -> str:
    return f"child-{person}"


def identity_values(extract: str, person: str, column: str) -> Any:
    """The value of one pseudonymised identity column for a fabricated person."""
    agency = contract(extract).agency
    attributes = DEFAULT_PERSON | PEOPLE.get(person, {})
    if column == "person_token":
        return person_token(agency, person)
    if column in attributes:
        # Health records c18's ethnicity differently: education's must win in dim_child.
        if column == "ethnicity" and person == "c18" and agency == "health":
            return "WBRI"
        return attributes[column]
    if column.endswith("_status"):
        return "valid"
    if column == "postcode_district":
        return "LS6"
    return token(column, person)


def extract_table(extract: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of one extract (each with a 'person') as a table of its pseudonymised schema."""
    schema = contract(extract).pseudonymised_schema()
    identity = {c.name for c in contract(extract).pseudonymised_columns} - {
        c.name for c in contract(extract).payload
    }
    full = []
    for row in rows:
        values = PAYLOAD_DEFAULTS[extract] | {k: v for k, v in row.items() if k != "person"}
        values |= {name: identity_values(extract, row["person"], name) for name in identity}
        full.append(values)
    return pa.Table.from_pylist(full, schema=schema)


def pupils(la_code: str) -> list[dict[str, Any]]:
    """Census rows: (person, SEN provision, sessions possible, authorised, unauthorised)."""
    if la_code == B:
        spec = [(f"b0{i}", "N", 300, 5, 0) for i in (1, 2, 3)]
    else:
        absence = {
            "c01": (20, 10),
            "c02": (29, 0),
            "c03": (20, 20),
            "c13": (50, 0),
            "c14": (15, 15),
            "c15": (10, 0),
            "c18": (60, 40),
            "c19": (0, 0),
            "c20": (31, 0),
        }
        spec = []
        for i in range(1, 21):
            person = f"c{i:02d}"
            sen = "N" if i <= 12 else "K" if i <= 17 else "E"
            possible = 0 if person == "c12" else 300
            auth, unauth = (0, 0) if possible == 0 else absence.get(person, (5, 0))
            spec.append((person, sen, possible, auth, unauth))
    return [
        {
            "person": person,
            "la_code": la_code,
            "sen_provision": sen,
            "primary_need": None if sen == "N" else "MLD",
            "sessions_possible": possible,
            "sessions_authorised": auth,
            "sessions_unauthorised": unauth,
        }
        for person, sen, possible, auth, unauth in spec
    ]


def exclusions() -> list[dict[str, Any]]:
    spec = [
        ("c13", "2024-10-01", "SUSP", "K"),
        ("c13", "2025-01-15", "SUSP", "K"),
        ("c18", "2024-11-05", "SUSP", "E"),
        ("c06", "2025-02-03", "SUSP", "N"),
        ("c07", "2025-02-04", "SUSP", "N"),
        ("c99", "2025-04-01", "SUSP", "N"),
        ("c05", "2025-03-03", "LNCH", "N"),
        ("c14", "2025-03-01", "PERM", "K"),
    ]
    return [
        {
            "person": person,
            "la_code": A,
            "start_date": date.fromisoformat(start),
            "category": category,
            "sen_provision": sen,
        }
        for person, start, category, sen in spec
    ]


def sen2_request(
    person: str,
    received: str,
    outcome: str = "A",
    plan_after_days: int | None = None,
    exception: bool = False,
) -> dict[str, Any]:
    received_date = date.fromisoformat(received)
    plan = None if plan_after_days is None else received_date + timedelta(days=plan_after_days)
    return {
        "person": person,
        "la_code": A,
        "received_date": received_date,
        "request_outcome": outcome,
        "assessment_outcome": None if outcome != "A" else ("I" if plan else "P"),
        "plan_start_date": plan,
        "primary_need": "ASD" if plan else None,
        "week20_exception": exception,
    }


def sen2(period: str) -> list[dict[str, Any]]:
    c16 = sen2_request("c16", "2024-06-01", plan_after_days=75)
    if period == PREV:
        return [c16, sen2_request("c18", "2024-01-10")]
    return [
        c16,
        sen2_request("c18", "2024-01-10", plan_after_days=254, exception=True),
        sen2_request("c19", "2024-10-01", plan_after_days=140),
        sen2_request("c20", "2025-03-01"),
        sen2_request("c17", "2024-11-01", outcome="N"),
    ]


def referral(
    person: str, la_code: str, service: str, received: str, wait_days: int | None
) -> dict[str, Any]:
    received_date = date.fromisoformat(received)
    first = None if wait_days is None else received_date + timedelta(days=wait_days)
    return {
        "person": person,
        "la_code": la_code,
        "service": service,
        "referral_received_date": received_date,
        "first_attended_contact_date": first,
    }


def referrals(period: str, la_code: str) -> list[dict[str, Any]]:
    if period == PREV:
        return [referral("c02", A, "SLT", "2024-08-01", None)]
    if la_code == B:
        # k01's area is B (health before care); c03's referral is recorded in B, but c03 counts
        # in A, its education area.
        return [
            referral("k01", B, "OT", "2025-01-10", None),
            referral("c03", B, "SLT", "2024-10-07", 28),
        ]
    spec = [
        ("c13", "SLT", "2024-09-10", 14),
        ("c14", "OT", "2024-10-01", 28),
        ("c18", "PAEDS", "2024-11-01", 70),
        ("c19", "CAMHS", "2024-12-02", 35),
        ("c01", "SLT", "2025-01-06", 7),
        ("h01", "PHYSIO", "2025-02-03", 21),
        ("h02", "SLT", "2025-02-10", 42),
        ("h03", "OT", "2025-03-03", 56),
        ("h04", "CAMHS", "2025-03-10", 49),
        ("h05", "SLT", "2025-05-01", None),
        ("c02", "SLT", "2024-08-01", 40),
    ]
    return [referral(p, A, service, received, wait) for p, service, received, wait in spec]


def cin() -> list[dict[str, Any]]:
    return [
        {"person": person, "la_code": A, "cin_referral_date": date(2024, 5, 1)}
        for person in ("c13", "c18", "h01", "k01")
    ]


def lac() -> list[dict[str, Any]]:
    return [{"person": "c18", "la_code": A, "decom": date(2024, 12, 1)}]


# (extract, period, area) -> rows of that delivery.
DELIVERIES: dict[tuple[str, str, str], list[dict[str, Any]]] = {
    ("education_census", P, A): pupils(A),
    ("education_census", P, B): pupils(B),
    ("education_exclusions", P, A): exclusions(),
    ("education_sen2", PREV, A): sen2(PREV),
    ("education_sen2", P, A): sen2(P),
    ("health_referrals", PREV, A): referrals(PREV, A),
    ("health_referrals", P, A): referrals(P, A),
    ("health_referrals", P, B): referrals(P, B),
    ("care_cin", P, A): cin(),
    ("care_lac", P, A): lac(),
}

LINKAGE_QUALITY = [
    {
        "agency_pair": "education-health",
        "la_code": A,
        "period": P,
        "records_l": 21,
        "records_r": 10,
        "links": 5,
        "precision": 0.98,
        "recall": 0.95,
    }
]


# The fixture's links (each joins two records of one child of the spine): (left agency,
# person, right agency, person, weight, probability, decided_by). Education c18 is linked to
# care c18 only through health c18, health c13 to care c13 only through education c13.
LINKS = [
    ("education", "c13", "health", "c13", 15.2, 0.999, "model"),
    ("education", "c18", "health", "c18", 12.0, 0.998, "model"),
    ("education", "c14", "health", "c14", 9.0, 0.99, "model"),
    ("education", "c19", "health", "c19", 5.0, 0.97, "clerical"),
    ("education", "c01", "health", "c01", -3.0, 0.01, "clerical"),
    ("education", "c02", "health", "c02", 10.5, 0.995, "model"),
    ("education", "c03", "health", "c03", 7.0, 0.98, "model"),
    ("education", "c13", "care", "c13", 14.0, 0.999, "model"),
    ("health", "c18", "care", "c18", 11.0, 0.998, "model"),
    ("health", "h01", "care", "h01", 8.0, 0.996, "model"),
    ("health", "k01", "care", "k01", 6.5, 0.95, "model"),
]
AGREEMENT = "nhs:missing|forename:agree|surname:agree|dob:agree"
# The truth: one person's records in two agencies are one child, except education c03 and
# health c03 (a false link); besides, education c04 and health h02 are one child, and so are
# health h03 and h04 (duplicates): both missed. A true pair with a record the linker never saw
# (c05-zz9) must not count.
FALSE_PAIRS = [("education", "c03", "health", "c03")]
MISSED_PAIRS = [("education", "c04", "health", "h02"), ("health", "h03", "health", "h04")]
UNSEEN_PAIRS = [("education", "c05", "health", "zz9")]
FIXTURE_AGENCIES = ("education", "health", "care")


def link_rows() -> list[dict[str, Any]]:
    return [
        {
            "agency_l": agency_l,
            "person_token_l": person_token(agency_l, left),
            "agency_r": agency_r,
            "person_token_r": person_token(agency_r, right),
            "match_weight": weight,
            "match_probability": probability,
            "agreement": AGREEMENT,
            "decided_by": decided_by,
        }
        for agency_l, left, agency_r, right, weight, probability, decided_by in LINKS
    ]


def record_linkage_rows(records: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """record_linkage.parquet: one row per record and agency (its own included); linked when
    the record's child (its person) holds a record of the other agency, with the weight and
    probability of its direct link in LINKS; arbitrary candidate counts and match masses (at
    least the link's probability, some above 1: capped in SQL)."""
    rng = np.random.default_rng(4)
    ends = {}
    for agency_l, left, agency_r, right, weight, probability, _ in LINKS:
        ends[(agency_l, left, agency_r)] = (weight, probability)
        ends[(agency_r, right, agency_l)] = (weight, probability)
    held = set(records)
    rows = []
    for agency, person in records:
        for other in FIXTURE_AGENCIES:
            weight, probability = ends.get((agency, person, other), (None, None))
            rows.append(
                {
                    "agency": agency,
                    "person_token": person_token(agency, person),
                    "other_agency": other,
                    "candidates": int(rng.integers(0, 6)),
                    "match_mass": (probability or 0.0) + float(rng.uniform(0.0, 0.7)),
                    "linked": other != agency and (other, person) in held,
                    "link_weight": weight,
                    "link_probability": probability,
                }
            )
    return rows


def truth_pair_rows(records: list[tuple[str, str]]) -> list[dict[str, str]]:
    """truth_pairs.parquet: one person's records in two agencies, less FALSE_PAIRS, plus
    MISSED_PAIRS and UNSEEN_PAIRS."""
    people: dict[str, list[str]] = {}
    for agency, person in records:
        people.setdefault(person, []).append(agency)
    same_person = [
        (agency_l, person, agency_r, person)
        for person, agencies in people.items()
        for agency_l, agency_r in itertools.combinations(
            sorted(agencies, key=FIXTURE_AGENCIES.index), 2
        )
    ]
    pairs = [p for p in same_person if p not in FALSE_PAIRS] + MISSED_PAIRS + UNSEEN_PAIRS
    return [
        {
            "agency_l": agency_l,
            "person_token_l": person_token(agency_l, left),
            "agency_r": agency_r,
            "person_token_r": person_token(agency_r, right),
        }
        for agency_l, left, agency_r, right in pairs
    ]


@dataclass(frozen=True)
class FixtureInputs:
    sources: dict[str, list[SourceFile]]
    spine: Path
    links: Path
    record_linkage: Path
    truth_pairs: Path


def write_fixture_inputs(
    root: Path, deliveries: dict[tuple[str, str, str], list[dict[str, Any]]] = DELIVERIES
) -> FixtureInputs:
    """Write the fixture's extracts (DELIVERIES unless given), spine and links as Parquet
    under root."""
    sources: dict[str, list[SourceFile]] = {}
    records: set[tuple[str, str]] = set()
    for (extract, period, la_code), rows in deliveries.items():
        path = root / "store" / extract / period / la_code / f"{extract}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(extract_table(extract, rows), path)
        delivery = f"{extract}-{period}-{la_code}"
        sources.setdefault(extract, []).append(SourceFile(path, period, la_code, delivery))
        records |= {(contract(extract).agency, row["person"]) for row in rows}
    spine = root / "spine.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"agency": a, "person_token": person_token(a, p), "child_id": child_id(p)}
                for a, p in sorted(records)
            ]
        ),
        spine,
    )
    links = root / "links.parquet"
    pq.write_table(pa.Table.from_pylist(link_rows()), links)
    record_linkage = root / "record_linkage.parquet"
    pq.write_table(pa.Table.from_pylist(record_linkage_rows(sorted(records))), record_linkage)
    truth_pairs = root / "truth_pairs.parquet"
    pq.write_table(pa.Table.from_pylist(truth_pair_rows(sorted(records))), truth_pairs)
    return FixtureInputs(sources, spine, links, record_linkage, truth_pairs)


def build_fixture_warehouse(
    db_path: Path,
    root: Path,
    settings: Settings | None = None,
    run_id: str = "run-1",
    deliveries: dict[tuple[str, str, str], list[dict[str, Any]]] = DELIVERIES,
    timings: dict[str, float] | None = None,
) -> dict[str, int]:
    """Build the fixture warehouse at db_path from inputs written under root."""
    inputs = write_fixture_inputs(root, deliveries)
    return build_warehouse(
        db_path,
        inputs.sources,
        inputs.spine,
        inputs.links,
        run_id,
        linkage_quality=LINKAGE_QUALITY,
        settings=settings,
        record_linkage=inputs.record_linkage,
        truth_pairs=inputs.truth_pairs,
        timings=timings,
    )


@dataclass(frozen=True)
class Built:
    path: Path
    counts: dict[str, int]
    seconds: float
    timings: dict[str, float]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("warehouse")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    counts = build_fixture_warehouse(root / "build.duckdb", root, timings=timings)
    seconds = time.perf_counter() - start
    print(f"\nfixture warehouse built in {seconds:.2f} s")
    return Built(root / "build.duckdb", counts, seconds, timings)


@pytest.mark.parametrize("name", sorted(contracts()))
def test_build_loads_no_match_key_but_the_record_key(name: str) -> None:
    """The warehouse reads an extract without the tokens and Bloom encodings only the linker
    compares, but with person_token (the spine's key), the identifier statuses and every
    payload column, in the contract's order."""
    extract = contract(name)
    columns = source_columns(extract)
    assert "person_token" in columns
    assert not set(columns) & (extract.sensitive_columns - {"person_token"})
    assert {c.name for c in extract.payload} <= set(columns)
    assert {"birth_ym", "sex", "la_code"} <= set(columns)
    assert {"nhs_status", "upn_status"} & set(columns)
    assert columns == [n for n in extract.pseudonymised_schema().names if n in columns]


def test_build_times_every_step_it_runs(built: Built) -> None:
    """build_warehouse's profile names the loading steps, every transform file and the Python
    step, in the order they ran, and its seconds add up to no more than the whole build."""
    files = [path.name for path in transform_files(Settings().transforms_dir)]
    steps = list(built.timings)
    assert steps[:2] == ["load reference tables", "load sources"]
    assert [step for step in steps if step.endswith(".sql")] == files
    assert "suppressed_counts (after 49_disclosure_counts.sql)" in steps
    assert steps[-1] == "comments, manifest, checkpoint"
    assert all(seconds >= 0 for seconds in built.timings.values())
    assert sum(built.timings.values()) <= built.seconds


@pytest.fixture
def con(built: Built) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(built.path), read_only=True)
    yield connection
    connection.close()


def cell(
    con,
    table: str,
    metric: str,
    period: str,
    la_code: str,
    cohort_value: str,
    cohort: str = "sen_status",
) -> tuple:
    columns = (
        "numerator, denominator, value"
        if table == "metric_values"
        else "published_numerator, published_denominator, published_value, suppressed"
    )
    rows = con.execute(
        f"SELECT {columns} FROM {table} WHERE metric_id = ? AND period = ? AND la_code = ? "
        "AND cohort = ? AND cohort_value = ?",
        [metric, period, la_code, cohort, cohort_value],
    ).fetchall()
    assert len(rows) == 1, (metric, period, la_code, cohort, cohort_value, rows)
    return rows[0]


FY = "FY2024-25"

# metric, period, area, cohort value -> (numerator, denominator, value), computed by hand.
EXPECTED_VALUES = [
    ("ehcp_issued_within_20_weeks", P, A, "all", (1, 2, 50.0)),
    ("ehcp_issued_within_20_weeks", PREV, A, "all", (1, 1, 100.0)),
    ("ehcp_issued_within_20_weeks", P, A, "E", (1, 2, 50.0)),  # c18, c19: E on the census
    ("ehcp_issued_within_20_weeks", P, A, "N", (0, 0, None)),
    ("ehcp_issued_within_20_weeks_excluding_exceptions", P, A, "all", (1, 1, 100.0)),
    ("ehcp_issued_within_20_weeks_excluding_exceptions", PREV, A, "all", (1, 1, 100.0)),
    ("ehcp_weeks_request_to_plan_median", P, A, "all", (None, 2, (254 / 7 + 20) / 2)),
    ("ehcp_weeks_request_to_plan_median", PREV, A, "all", (None, 1, 75 / 7)),
    ("ehcp_requests_agreed_to_assess", PREV, A, "all", (2, 2, 100.0)),
    ("ehcp_requests_agreed_to_assess", P, A, "all", (2, 3, 100 * 2 / 3)),
    ("ehcp_requests_agreed_to_assess", P, A, "K", (0, 1, 0.0)),  # c17
    ("persistent_absence", P, A, "N", (2, 11, 100 * 2 / 11)),
    ("persistent_absence", P, A, "K", (2, 5, 40.0)),
    ("persistent_absence", P, A, "E", (2, 3, 100 * 2 / 3)),
    ("persistent_absence", P, A, "all", (6, 19, 100 * 6 / 19)),
    ("persistent_absence", P, A, "X", (0, 0, None)),
    ("persistent_absence", P, B, "N", (0, 3, 0.0)),
    ("persistent_absence", P, B, "E", (0, 0, None)),
    ("overall_absence", P, A, "all", (370, 5700, 100 * 370 / 5700)),
    ("overall_absence", P, A, "N", (139, 3300, 100 * 139 / 3300)),
    ("overall_absence", P, A, "K", (100, 1500, 100 * 100 / 1500)),
    ("overall_absence", P, A, "E", (131, 900, 100 * 131 / 900)),
    ("overall_absence", P, B, "all", (15, 900, 100 * 15 / 900)),
    ("suspension_rate", P, A, "N", (2, 12, 100 * 2 / 12)),
    ("suspension_rate", P, A, "K", (2, 5, 40.0)),
    ("suspension_rate", P, A, "E", (1, 3, 100 / 3)),
    ("suspension_rate", P, A, "all", (5, 20, 25.0)),
    ("suspension_rate", P, B, "all", (0, 3, 0.0)),
    ("suspension_ratio_to_no_sen", P, A, "K", (40.0, 100 * 2 / 12, 2.4)),
    ("suspension_ratio_to_no_sen", P, A, "E", (100 / 3, 100 * 2 / 12, 2.0)),
    ("suspension_ratio_to_no_sen", P, A, "SEN", (37.5, 100 * 2 / 12, 2.25)),
    ("suspension_ratio_to_no_sen", P, B, "K", (None, 0.0, None)),
    ("permanent_exclusion_rate", P, A, "K", (1, 5, 20.0)),  # c14; c05's LNCH is not one
    ("permanent_exclusion_rate", P, A, "all", (1, 20, 5.0)),
    ("permanent_exclusion_rate", P, A, "N", (0, 12, 0.0)),
    ("permanent_exclusion_ratio_to_no_sen", P, A, "K", (20.0, 0.0, None)),
    ("permanent_exclusion_ratio_to_no_sen", P, A, "SEN", (12.5, 0.0, None)),
    ("referral_to_first_contact_weeks_median", P, A, "all", (None, 10, 4.5)),
    ("referral_to_first_contact_weeks_median", P, A, "N", (None, 2, 2.5)),
    ("referral_to_first_contact_weeks_median", P, A, "K", (None, 2, 3.0)),
    ("referral_to_first_contact_weeks_median", P, A, "E", (None, 2, 7.5)),
    ("referral_to_first_contact_weeks_median", P, A, "X", (None, 4, 6.5)),
    ("referral_to_first_contact_weeks_median", PREV, A, "X", (None, 1, 40 / 7)),
    ("referral_to_first_contact_weeks_median", P, B, "all", (None, 0, None)),
    # Financial year April 2024 - March 2025: the 2024-25 waits and c02's (August 2024), in
    # days 7 14 21 28 28 35 40 42 49 56 70; c02 is N on the 2024-25 census but X in 2023-24,
    # the academic year of its referral, whose attributes it takes.
    ("referral_to_first_contact_weeks_median", FY, A, "all", (None, 11, 5.0)),
    ("referral_to_first_contact_weeks_median", FY, A, "X", (None, 5, 6.0)),
    ("known_to_services_1", P, A, "all", (18, 26, 100 * 18 / 26)),
    ("known_to_services_2", P, A, "all", (6, 26, 100 * 6 / 26)),
    ("known_to_services_3", P, A, "all", (2, 26, 100 * 2 / 26)),
    ("known_to_services_1", P, A, "N", (9, 12, 75.0)),
    ("known_to_services_3", P, A, "N", (0, 12, 0.0)),
    ("known_to_services_1", P, A, "K", (3, 5, 60.0)),
    ("known_to_services_3", P, A, "E", (1, 3, 100 / 3)),
    ("known_to_services_1", P, A, "X", (5, 6, 100 * 5 / 6)),
    ("known_to_services_2", P, B, "X", (1, 1, 100.0)),
    ("known_to_services_1", P, B, "all", (3, 4, 75.0)),
    ("known_to_services_1", PREV, A, "all", (3, 3, 100.0)),
]


@pytest.mark.parametrize(
    ("metric", "period", "la_code", "cohort_value", "expected"),
    EXPECTED_VALUES,
    ids=[f"{m}-{p}-{a}-{c}" for m, p, a, c, _ in EXPECTED_VALUES],
)
def test_metric_values_match_hand_computed_figures(
    con, metric, period, la_code, cohort_value, expected
):
    """Each metric's unrounded numerator, denominator and value equal the hand computation."""
    actual = cell(con, "metric_values", metric, period, la_code, cohort_value)
    assert actual == pytest.approx(expected, nan_ok=False)


# metric, period, area, cohort, cohort value -> (numerator, denominator, value), by hand.
# All fixture people are F except c18 (M); ethnicity White except c18 (Black), c19 (Asian);
# all 11 or 12 on 31 August 2024; census K and E pupils have primary need MLD, c20's plan ASD.
EXPECTED_COHORT_VALUES = [
    ("persistent_absence", P, A, "sex", "M", (1, 1, 100.0)),
    ("persistent_absence", P, A, "sex", "F", (5, 18, 100 * 5 / 18)),
    ("persistent_absence", P, A, "sex", "U", (0, 0, None)),
    ("persistent_absence", P, A, "ethnicity_group", "White", (5, 17, 100 * 5 / 17)),
    ("persistent_absence", P, A, "ethnicity_group", "Asian", (0, 1, 0.0)),
    ("persistent_absence", P, A, "ethnicity_group", "Unknown", (0, 0, None)),
    ("persistent_absence", P, A, "age_band", "11-15", (6, 19, 100 * 6 / 19)),
    ("persistent_absence", P, A, "age_band", "5-10", (0, 0, None)),
    ("persistent_absence", P, A, "fsm", "not eligible", (6, 19, 100 * 6 / 19)),
    ("persistent_absence", P, A, "fsm", "eligible", (0, 0, None)),
    ("persistent_absence", P, A, "primary_need", "MLD", (4, 8, 50.0)),
    ("persistent_absence", P, A, "primary_need", "none", (2, 11, 100 * 2 / 11)),
    ("persistent_absence", P, A, "primary_need", "all", (6, 19, 100 * 6 / 19)),
    # the plans' own need (ASD), not the census need (MLD) of c18
    ("ehcp_issued_within_20_weeks", P, A, "primary_need", "ASD", (1, 2, 50.0)),
    ("ehcp_issued_within_20_weeks", P, A, "primary_need", "MLD", (0, 0, None)),
    # health-only children are X and of unknown need and FSM
    ("known_to_services_1", P, A, "primary_need", "unknown", (5, 6, 100 * 5 / 6)),
    ("known_to_services_1", P, A, "fsm", "unknown", (5, 6, 100 * 5 / 6)),
    ("suspension_rate", P, A, "sex", "M", (1, 1, 100.0)),
]


@pytest.mark.parametrize(
    ("metric", "period", "la_code", "cohort", "cohort_value", "expected"),
    EXPECTED_COHORT_VALUES,
    ids=[f"{m}-{p}-{a}-{d}-{c}" for m, p, a, d, c, _ in EXPECTED_COHORT_VALUES],
)
def test_metric_values_by_other_cohort_dimensions_match_hand_computed_figures(
    con, metric, period, la_code, cohort, cohort_value, expected
):
    """Cells by sex, ethnicity group, age band, FSM and primary need equal the hand figures."""
    actual = cell(con, "metric_values", metric, period, la_code, cohort_value, cohort)
    assert actual == pytest.approx(expected, nan_ok=False)


def catalogue_dimensions(con) -> dict[str, list[str]]:
    return dict(con.execute("SELECT id, cohort_dimensions FROM metric_catalogue").fetchall())


def test_metric_cells_cover_each_delivered_area_period_and_cohort(con):
    """Cells exist for every period and area with the metric's extract, and nowhere else;
    financial-year cells only where the two academic years it overlaps were both delivered."""
    got = {
        (metric, period, la_code, tuple(cohorts))
        for metric, period, la_code, cohorts in con.execute(
            "SELECT metric_id, period, la_code, list(cohort_value ORDER BY cohort_value) "
            "FROM metric_values WHERE cohort = 'sen_status' GROUP BY ALL"
        ).fetchall()
    }
    nkex_all = ("E", "K", "N", "X", "all")
    groups = ("E", "K", "SEN")
    sen2 = (
        "ehcp_issued_within_20_weeks",
        "ehcp_issued_within_20_weeks_excluding_exceptions",
        "ehcp_weeks_request_to_plan_median",
        "ehcp_requests_agreed_to_assess",
    )
    census = ("persistent_absence", "overall_absence", "suspension_rate")
    census += ("permanent_exclusion_rate",)
    ratios = ("suspension_ratio_to_no_sen", "permanent_exclusion_ratio_to_no_sen")
    wait = "referral_to_first_contact_weeks_median"
    expected = {(m, period, A, nkex_all) for m in sen2 for period in (PREV, P)}
    expected |= {(wait, PREV, A, nkex_all), (wait, FY, A, nkex_all)}
    for la_code in (A, B):
        expected |= {(m, P, la_code, nkex_all) for m in census}
        expected |= {(m, P, la_code, groups) for m in ratios}
        expected |= {(wait, P, la_code, nkex_all)}
        expected |= {(f"known_to_services_{k}", P, la_code, nkex_all) for k in (1, 2, 3)}
    expected |= {(f"known_to_services_{k}", PREV, A, nkex_all) for k in (1, 2, 3)}
    # The measures of tests/test_metric_measures.py are checked there.
    assert {cell for cell in got if cell[0] in {m for m, *_ in expected}} == expected


def test_every_listed_cohort_dimension_has_every_value_in_every_cell_frame(con):
    """Each metric (but ratios) has, per period and area, a cell for each of its catalogue
    dimensions and each value of ref_cohort_value, plus 'all' where the dimension's values
    partition it, and no other cell."""
    values = {}
    for cohort, value, partitions in con.execute(
        "SELECT cohort, cohort_value, partitions FROM ref_cohort_value"
    ).fetchall():
        values.setdefault(cohort, {"all"} if partitions else set()).add(value)
    assert {"sen_status", "primary_need", "age_band", "sex", "ethnicity_group", "fsm"} <= set(
        values
    )
    assert "all" not in values["identifier"] | values["agency_pair"]
    ratios = {
        r[0]
        for r in con.execute("SELECT id FROM metric_catalogue WHERE statistic = 'ratio'").fetchall()
    }
    cells = con.execute(
        "SELECT metric_id, period, la_code, cohort, list(cohort_value) FROM metric_values "
        "GROUP BY ALL"
    ).fetchall()
    dimensions = catalogue_dimensions(con)
    frames = {(m, p, a) for m, p, a, _, _ in cells if m not in ratios}
    found = {(m, p, a, c): sorted(v) for m, p, a, c, v in cells if m not in ratios}
    expected = {(m, p, a, c): sorted(values[c]) for m, p, a in frames for c in dimensions[m]}
    assert found == expected


def test_every_dimension_partitions_the_all_cell(con):
    """Within one metric, period, area and partitioning dimension, the values' numerators and
    denominators add up to the 'all' cell's (ratios excepted): no unit is dropped or counted
    twice. A dimension that does not partition has no 'all' cell at all."""
    bad = con.execute(
        "SELECT v.metric_id, v.period, v.la_code, v.cohort, "
        "sum(v.numerator) FILTER (WHERE v.cohort_value <> 'all') AS parts_numerator, "
        "any_value(v.numerator) FILTER (WHERE v.cohort_value = 'all') AS all_numerator, "
        "sum(v.denominator) FILTER (WHERE v.cohort_value <> 'all') AS parts_denominator, "
        "any_value(v.denominator) FILTER (WHERE v.cohort_value = 'all') AS all_denominator "
        "FROM metric_values AS v JOIN metric_catalogue AS m ON m.id = v.metric_id "
        "SEMI JOIN ref_cohort_value AS r ON r.cohort = v.cohort AND r.partitions "
        "WHERE m.statistic <> 'ratio' GROUP BY ALL "
        "HAVING parts_numerator IS DISTINCT FROM all_numerator "
        "OR parts_denominator IS DISTINCT FROM all_denominator"
    ).fetchall()
    assert bad == []
    unpartitioned_totals = con.execute(
        "SELECT count(*) FROM metric_values AS v "
        "SEMI JOIN ref_cohort_value AS r ON r.cohort = v.cohort AND NOT r.partitions "
        "WHERE v.cohort_value = 'all'"
    ).fetchone()[0]
    assert unpartitioned_totals == 0
    listed = (
        "SELECT count(DISTINCT d) "
        "FROM (SELECT unnest(cohort_dimensions) AS d FROM metric_catalogue)"
    )
    used = con.execute("SELECT count(DISTINCT cohort) FROM metric_values").fetchone()[0]
    assert used == con.execute(listed).fetchone()[0] > 6


def test_known_to_services_shares_sum_to_100_in_every_cell(con):
    """Exactly 1, 2 or 3 agencies: the three numerators add up to the denominator."""
    bad = con.execute(
        "SELECT period, la_code, cohort, cohort_value, sum(numerator), any_value(denominator) "
        "FROM metric_values WHERE metric_id LIKE 'known_to_services_%' GROUP BY ALL "
        "HAVING sum(numerator) <> any_value(denominator) OR count(DISTINCT denominator) > 1"
    ).fetchall()
    assert bad == []


NEXT = "2025-26"
# A later year's deliveries: c01 and c13 (now E) stay on A's census, n01 joins; two referrals
# received and seen in 2025-26. Nothing repeats a record of an earlier year.
NEXT_DELIVERIES = {
    ("education_census", NEXT, A): [
        {**row, "sen_provision": "E" if row["person"] == "c13" else row["sen_provision"]}
        for row in pupils(A)
        if row["person"] in ("c01", "c13")
    ]
    + [{**pupils(A)[0], "person": "n01"}],
    ("health_referrals", NEXT, A): [
        referral("n01", A, "SLT", "2025-10-01", 21),
        referral("c13", A, "OT", "2026-01-05", 35),
    ],
}


def test_building_with_a_new_period_leaves_the_other_periods_identical(tmp_path, con):
    """A build with 2025-26 added has the same metric_values for 2023-24, 2024-25 and
    FY2024-25 as the build without it, and adds FY2025-26 (2024-25 and 2025-26 delivered)."""
    target = tmp_path / "next.duckdb"
    build_fixture_warehouse(target, tmp_path, deliveries=DELIVERIES | NEXT_DELIVERIES)
    keys = ["metric_id", "period", "la_code", "cohort", "cohort_value"]
    before = con.sql("SELECT * FROM metric_values").df().sort_values(keys).reset_index(drop=True)
    with duckdb.connect(str(target), read_only=True) as connection:
        after = connection.sql("SELECT * FROM metric_values").df()
        kinds = dict(connection.execute("SELECT period, kind FROM ref_period").fetchall())
    assert kinds == {
        PREV: "academic_year",
        P: "academic_year",
        NEXT: "academic_year",
        FY: "financial_year",
        "FY2025-26": "financial_year",
    }
    assert set(after.period) == {PREV, P, NEXT, FY, "FY2025-26"}
    old = after[after.period.isin(set(before.period))].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(old, before)
    waits = after[
        (after.metric_id == "referral_to_first_contact_weeks_median")
        & (after.period == "FY2025-26")
        & (after.cohort_value == "all")
    ]
    # April 2025 - March 2026 in A: h05 is never seen; n01 3 weeks, c13 5 weeks.
    assert set(waits.la_code) == {A}
    assert waits.denominator.tolist() == [2.0] * 7 and waits.value.tolist() == [4.0] * 7


def test_financial_years_need_both_academic_years_and_only_listed_metrics_have_them(con):
    """FY2024-25 cells exist only for metrics whose catalogue lists financial years, and only
    in A (B's health referrals were delivered for 2024-25 only)."""
    found = con.execute(
        "SELECT DISTINCT v.metric_id, v.la_code FROM metric_values AS v "
        "JOIN ref_period AS p USING (period) WHERE p.kind = 'financial_year'"
    ).fetchall()
    listed = {
        r[0]
        for r in con.execute(
            "SELECT id FROM metric_catalogue WHERE list_contains(period_kinds, 'financial_year')"
        ).fetchall()
    }
    assert "referral_to_first_contact_weeks_median" in {m for m, _ in found}
    assert {m for m, _ in found} <= listed
    assert {a for _, a in found} == {A}


def write_theme(directory: Path, theme: str, entries: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{theme}.json").write_text(json.dumps(entries), encoding="utf-8")


def test_catalogue_is_read_from_its_theme_files_in_a_fixed_order():
    """The repository's catalogue: every theme file's entries, themes in CATALOGUE_THEMES order,
    ids unique across all files."""
    directory = Settings.from_env().transforms_dir / CATALOGUE_DIR
    entries = read_catalogue(directory)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    files = catalogue_files(directory)
    assert [f.stem for f in files] == [t for t in CATALOGUE_THEMES if t in {f.stem for f in files}]
    in_order = [e["id"] for f in files for e in json.loads(f.read_text(encoding="utf-8"))]
    assert ids == in_order


def test_an_id_repeated_in_two_theme_files_is_refused(tmp_path):
    entry = json.loads(
        (Settings.from_env().transforms_dir / CATALOGUE_DIR / "education.json").read_text(
            encoding="utf-8"
        )
    )[0]
    write_theme(tmp_path, "education", [entry])
    write_theme(tmp_path, "health", [entry])
    with pytest.raises(ValueError, match=f"metric ids repeat: \\['{entry['id']}'\\]"):
        read_catalogue(tmp_path)


def test_a_catalogue_entry_missing_a_required_field_is_refused(tmp_path):
    entry = json.loads(
        (Settings.from_env().transforms_dir / CATALOGUE_DIR / "education.json").read_text(
            encoding="utf-8"
        )
    )[0]
    write_theme(tmp_path, "care", [{k: v for k, v in entry.items() if k != "period_kinds"}])
    with pytest.raises(ValueError, match="lacks \\['period_kinds'\\]"):
        read_catalogue(tmp_path)


def test_metric_values_unit_comes_from_the_catalogue(con):
    units = dict(con.execute("SELECT DISTINCT metric_id, unit FROM metric_values").fetchall())
    assert units["persistent_absence"] == "percent"
    assert units["suspension_rate"] == "per 100"
    assert units["suspension_ratio_to_no_sen"] == "ratio"
    assert units["referral_to_first_contact_weeks_median"] == "weeks"


# metric, period, area, cohort value -> (numerator, denominator, value, suppressed) as published.
EXPECTED_PUBLISHED = [
    # health (nhs): 3 -> '*', 12 -> '10', percentages from rounded counts.
    ("known_to_services_1", P, A, "K", ("*", "*", "*", True)),
    # Secondary suppression: known to 2 services, N, is 3 ('*'); shown beside 1 service (9 ->
    # 10), 3 services (0) and their denominator (12 -> 10) it would be 12 - 9 - 0 +- 4, i.e.
    # 1-4, narrower than 1-7: known to 1 service, N, is hidden as its complement.
    ("known_to_services_1", P, A, "N", ("*", "10", "*", True)),
    # Known to 3 services, all, is 2 ('*'): beside 1 service (18) and 2 services ('*') it
    # would be within 2-5 of the shared denominator (26, shown 25): known to 1 service and
    # then the denominator are hidden as complements (no other count is left in that sum).
    ("known_to_services_1", P, A, "all", ("*", "*", "*", True)),
    ("known_to_services_3", P, A, "N", ("0", "10", "0.0", False)),
    ("known_to_services_2", P, A, "all", ("*", "*", "*", True)),
    ("known_to_services_1", P, B, "K", ("0", "0", "z", False)),
    ("referral_to_first_contact_weeks_median", P, A, "all", (None, "10", "4.5", False)),
    ("referral_to_first_contact_weeks_median", P, A, "X", (None, "*", "*", True)),
    ("referral_to_first_contact_weeks_median", P, B, "all", (None, "0", "z", False)),
    # education (dfe): 1-4 -> 'c' with the rate, zero -> '0', undefined -> 'z'.
    ("persistent_absence", P, A, "N", ("c", "11", "c", True)),
    ("persistent_absence", P, A, "all", ("6", "19", "31.6", False)),
    ("persistent_absence", P, B, "N", ("0", "c", "c", True)),
    ("persistent_absence", P, B, "E", ("0", "0", "z", False)),
    ("suspension_rate", P, A, "all", ("5", "20", "25.00", False)),
    # Secondary suppression: pupils E (3, 'c') = all 20 - N 12 - K 5, so K's 5 (the smallest
    # sibling) is hidden too; the total stays shown.
    ("suspension_rate", P, A, "K", ("c", "c", "c", True)),
    ("persistent_absence", P, A, "K", ("c", "c", "c", True)),
    ("ehcp_issued_within_20_weeks", P, A, "all", ("c", "c", "c", True)),
    ("suspension_ratio_to_no_sen", P, A, "SEN", ("c", "c", "c", True)),
    ("suspension_ratio_to_no_sen", P, B, "K", ("z", "c", "z", True)),
]


@pytest.mark.parametrize(
    ("metric", "period", "la_code", "cohort_value", "expected"),
    EXPECTED_PUBLISHED,
    ids=[f"{m}-{p}-{a}-{c}" for m, p, a, c, _ in EXPECTED_PUBLISHED],
)
def test_published_metrics_apply_disclosure_rules(
    con, metric, period, la_code, cohort_value, expected
):
    """Published figures follow the NHS (health) and DfE (education) conventions."""
    assert cell(con, "published_metrics", metric, period, la_code, cohort_value) == expected


def test_published_metrics_carry_each_metrics_disclosure_rule(con):
    rules = dict(
        con.execute("SELECT DISTINCT metric_id, disclosure_rule FROM published_metrics").fetchall()
    )
    health = {m for m in rules if m.startswith("known_to") or m.startswith("referral")}
    assert {rules[m] for m in health} == {"nhs"}
    education = {m for m in rules if m.startswith(("ehcp_issued", "ehcp_weeks", "ehcp_requests"))}
    education |= {m for m in rules if m.startswith(("persistent", "overall", "susp", "perm"))}
    assert {rules[m] for m in education} == {"dfe"}


def test_no_published_count_is_small_or_unrounded_for_health(con):
    """No published health count lies in 1-7, and every shown one is a multiple of 5."""
    shown = con.execute(
        "SELECT published_numerator, published_denominator FROM published_metrics "
        "WHERE disclosure_rule = 'nhs'"
    ).fetchall()
    counts = [int(v) for row in shown for v in row if v is not None and v.isdigit()]
    assert counts and all(c % 5 == 0 for c in counts)


def test_warehouse_holds_no_tokens_bloom_encodings_or_source_tables(con, built):
    """Analysts get child_id only: no *_token / *_bloom column, no src_/stg_/int_ table."""
    columns = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database()"
    ).fetchall()
    leaks = [(t, c) for t, c in columns if c.endswith("_token") or c.endswith("_bloom")]
    assert leaks == []
    tables = {t for t, _ in columns}
    assert tables == PUBLISHED_TABLES | PUBLISHED_VIEWS
    assert not [t for t in tables if t.startswith(("src_", "stg_", "int_"))]


def test_warehouse_file_contains_no_token_bytes(built):
    """The source tokens never reach the file, not even in freed blocks."""
    content = built.path.read_bytes()
    tokens = [person_token("education", "c01"), person_token("health", "h01")]
    tokens += [token("surname_token", "c01"), token("forename_bloom", "h01")]
    assert [t for t in tokens if t.encode() in content] == []


def test_returned_counts_are_the_tables_row_counts(con, built):
    assert set(built.counts) == PUBLISHED_TABLES
    for table, rows in built.counts.items():
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows
    assert built.counts["fct_attendance"] == 23
    assert built.counts["manifest"] == 1


def test_manifest_records_run_periods_and_row_counts(con, built):
    run_id, periods, table_rows, built_at = con.execute(
        "SELECT run_id, periods, table_rows, built_at FROM manifest"
    ).fetchone()
    assert run_id == "run-1"
    assert periods == [PREV, P]
    assert table_rows == built.counts
    assert built_at is not None


def test_dim_child_takes_education_attributes_and_derives_age_and_group(con):
    """Education's ethnicity wins over health's; group from codes.json; age at 31 August."""
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT child_id, birth_ym, sex, ethnicity, ethnicity_group, la_code FROM dim_child"
        ).fetchall()
    }
    assert rows[child_id("c18")] == ("2012-08", "M", "BAFR", "Black", A)
    assert rows[child_id("c19")][3] == "Asian"
    assert rows[child_id("k01")][4] == B  # health's area before care's
    ages = dict(
        con.execute(
            "SELECT child_id, age_at_31_aug FROM dim_child_period WHERE period = ?", [P]
        ).fetchall()
    )
    assert ages[child_id("c18")] == 12  # born August 2012: 12 on 31 August 2024
    assert ages[child_id("c19")] == 11  # born September 2012: still 11


def test_dim_child_period_has_census_sen_status_or_x(con):
    rows = dict(
        con.execute(
            "SELECT child_id, sen_provision FROM dim_child_period WHERE period = ?", [P]
        ).fetchall()
    )
    assert rows[child_id("c01")] == "N"
    assert rows[child_id("c13")] == "K"
    assert rows[child_id("c18")] == "E"
    assert rows[child_id("c99")] == "X"  # excluded but not on the census
    assert rows[child_id("h01")] == "X"
    assert con.execute("SELECT count(*) FROM dim_child").fetchone()[0] == 30


def test_facts_carry_child_id_and_service_contact_counts_agencies(con):
    agencies = con.execute(
        "SELECT list(agency ORDER BY agency) FROM fct_service_contact "
        "WHERE child_id = ? AND period = ?",
        [child_id("c18"), P],
    ).fetchone()[0]
    assert agencies == ["care", "education", "health"]
    assert con.execute("SELECT count(*) FROM fct_exclusions").fetchone()[0] == 8
    assert con.execute("SELECT count(*) FROM fct_ehc_requests").fetchone()[0] == 7


def test_link_pairs_keep_child_ids_weight_agreement_and_decision(con):
    """Every link carries child ids (no tokens), weight, probability, pattern and decided_by."""
    rows = con.execute(
        "SELECT agency_l, child_id_l, agency_r, child_id_r, match_weight, match_probability, "
        "agreement, decided_by FROM link_pairs"
    ).fetchall()
    expected = [
        (al, child_id(left), ar, child_id(right), weight, probability, AGREEMENT, decided_by)
        for al, left, ar, right, weight, probability, decided_by in LINKS
    ]
    assert sorted(rows) == sorted(expected)


def test_build_fails_when_a_link_lacks_its_decision(tmp_path):
    """A link without decided_by (or weight, pattern) cannot be explained: the build stops."""
    inputs = write_fixture_inputs(tmp_path)
    links = pq.read_table(inputs.links).to_pylist()
    links[0]["decided_by"] = None
    pq.write_table(pa.Table.from_pylist(links), inputs.links)
    with pytest.raises(Exception, match="1 link\\(s\\) lack a match weight"):
        build_warehouse(tmp_path / "b.duckdb", inputs.sources, inputs.spine, inputs.links, "r")
    assert not (tmp_path / "b.duckdb").exists()


def test_linkage_quality_and_reference_tables_are_loaded(con):
    assert con.execute("SELECT links, recall FROM linkage_quality").fetchall() == [(5, 0.95)]
    groups = dict(
        con.execute("SELECT ethnicity, ethnicity_group FROM ref_ethnicity_group").fetchall()
    )
    assert groups["MWBA"] == "Mixed"
    assert con.execute("SELECT count(*) FROM deliveries").fetchone()[0] == len(DELIVERIES)


def test_catalogue_has_one_entry_per_metric_with_benchmarks(con):
    """Every metric has a catalogue entry; the national benchmarks of domain section 4."""
    catalogue = {r[0] for r in con.execute("SELECT id FROM metric_catalogue").fetchall()}
    metrics = {r[0] for r in con.execute("SELECT DISTINCT metric_id FROM metric_values").fetchall()}
    assert catalogue == metrics
    benchmarks = {
        (m, c): (v, y)
        for m, c, v, y in con.execute(
            "SELECT metric_id, cohort_value, value, year FROM metric_benchmarks"
        ).fetchall()
    }
    assert benchmarks == {
        ("ehcp_issued_within_20_weeks", "all"): (45.9, "2024"),
        ("ehcp_issued_within_20_weeks_excluding_exceptions", "all"): (46.4, "2024"),
        ("ehcp_requests_agreed_to_assess", "all"): (65.4, "2024"),
        ("persistent_absence", "E"): (34.6, "2023/24"),
        ("persistent_absence", "K"): (29.9, "2023/24"),
        ("persistent_absence", "N"): (18.2, "2023/24"),
        ("overall_absence", "E"): (12.4, "2023/24"),
        ("overall_absence", "K"): (10.3, "2023/24"),
        ("overall_absence", "N"): (6.1, "2023/24"),
        ("suspension_rate", "all"): (11.31, "2023/24"),
        ("permanent_exclusion_rate", "all"): (0.13, "2023/24"),
        ("permanent_exclusion_ratio_to_no_sen", "E"): (3.6, "2023/24"),
        ("permanent_exclusion_ratio_to_no_sen", "K"): (5.2, "2023/24"),
        ("seen_within_4_weeks", "CAMHS"): (45.0, "2023/24"),
    }


def test_build_refuses_an_existing_path(tmp_path):
    target = tmp_path / "exists.duckdb"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        build_fixture_warehouse(target, tmp_path)
    assert target.read_bytes() == b"keep me"


def test_build_fails_and_cleans_up_when_the_spine_misses_a_record(tmp_path):
    """A record without a child_id would vanish from the metrics: the build stops instead."""
    inputs = write_fixture_inputs(tmp_path)
    spine = pq.read_table(inputs.spine).to_pylist()
    pq.write_table(pa.Table.from_pylist(spine[1:]), inputs.spine)
    target = tmp_path / "build.duckdb"
    with pytest.raises(Exception, match="child spine does not cover 1 extract record"):
        build_warehouse(target, inputs.sources, inputs.spine, inputs.links, "run-x")
    assert not target.exists()


def test_build_refuses_a_file_that_does_not_match_its_contract(tmp_path):
    inputs = write_fixture_inputs(tmp_path)
    census = inputs.sources["education_census"][0].path
    pq.write_table(pq.read_table(census).drop_columns(["sessions_possible"]), census)
    with pytest.raises(ValueError, match="missing \\['sessions_possible'\\]"):
        build_warehouse(tmp_path / "b.duckdb", inputs.sources, inputs.spine, inputs.links, "run-x")
    assert not (tmp_path / "b.duckdb").exists()


def test_build_refuses_two_deliveries_for_one_extract_period_and_area(tmp_path):
    inputs = write_fixture_inputs(tmp_path)
    first = inputs.sources["care_cin"][0]
    sources = inputs.sources | {"care_cin": [first, SourceFile(first.path, P, A, "again")]}
    with pytest.raises(ValueError, match="more than one delivery"):
        build_warehouse(tmp_path / "b.duckdb", sources, inputs.spine, inputs.links, "run-x")


def test_an_extract_without_deliveries_gives_no_cells_for_its_metrics(tmp_path):
    """No SEN2 delivered: the build succeeds and the 20-week metric simply has no cells."""
    inputs = write_fixture_inputs(tmp_path)
    sources = {k: v for k, v in inputs.sources.items() if k != "education_sen2"}
    target = tmp_path / "b.duckdb"
    build_warehouse(target, sources, inputs.spine, inputs.links, "run-x")
    with duckdb.connect(str(target), read_only=True) as connection:
        found = connection.execute(
            "SELECT count(*) FROM metric_values WHERE metric_id = 'ehcp_issued_within_20_weeks'"
        ).fetchone()[0]
    assert found == 0


# --- Linkage QA (transforms/70_linkage_qa.sql) ---------------------------------------------

QA_KEY = ["agency_pair", "agency", "other_agency", "la_code", "period", "group_type", "group_value"]


def fixture_record_periods() -> pd.DataFrame:
    """(agency, person_token, period) of every record the fixture's deliveries hold."""
    held = {
        (contract(extract).agency, person_token(contract(extract).agency, row["person"]), period)
        for (extract, period, _), rows in DELIVERIES.items()
        for row in rows
    }
    return pd.DataFrame(sorted(held), columns=["agency", "person_token", "period"])


def pandas_age_band(age: pd.Series) -> pd.Series:
    bands = pd.cut(age, [-100, 4, 10, 15, 19, 200], labels=QA_AGE_BANDS).astype(object)
    return bands.where(age.notna(), "unknown")


QA_AGE_BANDS = ["under 5", "5-10", "11-15", "16-19", "20 and over"]


def both_ends(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each pair from both records: agency, person_token, other_agency, other_token."""
    columns = ["agency", "person_token", "other_agency", "other_token"]
    forward = pairs[["agency_l", "person_token_l", "agency_r", "person_token_r"]]
    backward = pairs[["agency_r", "person_token_r", "agency_l", "person_token_l"]]
    return pd.concat([forward.set_axis(columns, axis=1), backward.set_axis(columns, axis=1)])


def pandas_linkage_qa(inputs: FixtureInputs, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """linkage_qa recomputed in pandas from the fixture files (children's areas, ages and
    groups from the warehouse's dimension tables, tested above)."""
    from joinedup.link.records import AGENCY_PAIRS, pair_name

    record = ["agency", "person_token", "other_agency"]
    spine = pd.read_parquet(inputs.spine)
    child_pairs = spine.merge(spine, on="child_id", suffixes=("", "_o"))
    child_pairs = child_pairs[child_pairs.person_token != child_pairs.person_token_o]
    child_pairs = child_pairs.rename(
        columns={"agency_o": "other_agency", "person_token_o": "other_token"}
    )[[*record, "other_token"]]
    truth = pd.read_parquet(inputs.truth_pairs)
    seen = set(zip(spine["agency"], spine["person_token"], strict=True))
    truth = truth[
        [
            (al, tl) in seen and (ar, tr) in seen
            for al, tl, ar, tr in truth[
                ["agency_l", "person_token_l", "agency_r", "person_token_r"]
            ].itertuples(index=False)
        ]
    ]
    pairs = child_pairs.merge(both_ends(truth).drop_duplicates(), how="outer", indicator=True)
    per_record = (
        pairs.assign(
            linked_pairs=pairs["_merge"] != "right_only",
            true_pairs=pairs["_merge"] != "left_only",
            true_positive_pairs=pairs["_merge"] == "both",
        )
        .groupby(record)[["linked_pairs", "true_pairs", "true_positive_pairs"]]
        .sum()
    )
    names = {(a, b): pair_name(a, b) for a, b in AGENCY_PAIRS}
    names |= {(b, a): pair_name(a, b) for a, b in AGENCY_PAIRS}
    names |= {(a, a): pair_name(a, a) for a in FIXTURE_AGENCIES}

    rows = pd.read_parquet(inputs.record_linkage)
    rows = rows.merge(spine, on=["agency", "person_token"])
    rows = rows.merge(fixture_record_periods(), on=["agency", "person_token"])
    rows = rows.merge(
        con.sql("SELECT child_id, period, la_code, age_at_31_aug FROM dim_child_period").df(),
        on=["child_id", "period"],
    )
    rows = rows.merge(con.sql("SELECT child_id, sex, ethnicity_group FROM dim_child").df())
    rows = rows.merge(per_record, on=record, how="left").fillna(
        {"linked_pairs": 0, "true_pairs": 0, "true_positive_pairs": 0}
    )
    rows["agency_pair"] = [names[k] for k in zip(rows.agency, rows.other_agency, strict=True)]
    rows["mass"] = rows["match_mass"].clip(upper=1.0)
    groups = {
        "all": pd.Series("all", index=rows.index),
        "ethnicity_group": rows["ethnicity_group"].fillna("Unknown"),
        "sex": rows["sex"].fillna("U"),
        "age_band": pandas_age_band(rows["age_at_31_aug"]),
    }
    grouped = pd.concat(
        [rows.assign(group_type=name, group_value=values) for name, values in groups.items()]
    )
    frames = []
    for key, cell in grouped.groupby(QA_KEY):
        linked = cell[cell["linked"]]
        direct = linked[linked["link_weight"].notna()]
        linked_pairs, true_pairs, hits = (
            cell[c].sum() for c in ("linked_pairs", "true_pairs", "true_positive_pairs")
        )
        frames.append(
            dict(
                zip(QA_KEY, key, strict=True),
                records=len(cell),
                candidate_pairs=cell["candidates"].sum(),
                linked_records=len(linked),
                linkage_rate=len(linked) / len(cell),
                directly_linked_records=len(direct),
                mean_match_weight=direct["link_weight"].mean(),
                median_match_weight=direct["link_weight"].median(),
                expected_matched_records=cell["mass"].sum(),
                precision_estimate=direct["link_probability"].mean(),
                recall_estimate=direct["link_probability"].sum() / cell["mass"].sum(),
                linked_pairs=linked_pairs,
                true_pairs=true_pairs,
                true_positive_pairs=hits,
                true_precision=hits / linked_pairs if linked_pairs else np.nan,
                true_recall=hits / true_pairs if true_pairs else np.nan,
            )
        )
    return pd.DataFrame(frames).sort_values(QA_KEY).reset_index(drop=True)


def test_linkage_qa_equals_an_independent_pandas_computation(con, built):
    """Every linkage_qa row and figure equals the same QA computed in pandas from the files."""
    expected = pandas_linkage_qa(write_fixture_inputs(built.path.parent / "qa-inputs"), con)
    actual = con.sql("SELECT * FROM linkage_qa").df()
    assert list(actual.columns) == list(expected.columns)
    actual = actual.sort_values(QA_KEY).reset_index(drop=True)
    assert len(actual) > 100
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False)


def qa_row(con, pair: str, agency: str, period: str = P, la_code: str = A) -> tuple:
    return con.execute(
        "SELECT records, linked_records, directly_linked_records, linked_pairs, true_pairs, "
        "true_positive_pairs, true_precision, true_recall FROM linkage_qa "
        "WHERE agency_pair = ? AND agency = ? AND period = ? AND la_code = ? "
        "AND group_type = 'all'",
        [pair, agency, period, la_code],
    ).fetchone()


def test_true_precision_and_recall_of_a_hand_checked_case(con):
    """Education A 2024-25: 21 records, 7 linked to health (c01, c02, c03, c13, c14, c18, c19),
    c03 falsely; true partners: those but c03, and c04-h02 (missed): P = R = 6/7. Health's
    side counts its 12 records of children in A. The duplicates h03-h04 are missed: R = 0, P
    undefined. Education c18 reaches care through health: linked, not directly. The truth
    pair with a record outside the spine (c05-zz9) does not count."""
    assert qa_row(con, "education-health", "education") == (21, 7, 7, 7, 7, 6, 6 / 7, 6 / 7)
    assert qa_row(con, "education-health", "health") == (12, 7, 7, 7, 7, 6, 6 / 7, 6 / 7)
    assert qa_row(con, "health-health", "health") == (12, 0, 0, 0, 2, 0, None, 0.0)
    assert qa_row(con, "education-care", "education") == (21, 2, 1, 2, 2, 2, 1.0, 1.0)
    # 2023-24: health holds c02 only, linked to education c02 (held in 2024-25 only).
    assert qa_row(con, "education-health", "health", PREV) == (1, 1, 1, 1, 1, 1, 1.0, 1.0)


def test_published_linkage_qa_applies_the_nhs_rule(con):
    """Counts 1-7 are '*', others rounded to 5; shares resting on small counts are '*';
    undefined shares 'z'; no raw count 1-7 appears."""
    columns = (
        "published_records, published_linked_records, published_linkage_rate, "
        "published_precision_estimate, published_mean_match_weight, published_true_precision"
    )
    where = "period = ? AND la_code = ? AND group_type = 'all' AND agency_pair = ? AND agency = ?"
    row = f"SELECT {columns} FROM published_linkage_qa WHERE {where}"
    found = con.execute(row, [P, A, "education-health", "education"]).fetchone()
    assert found == ("20", "*", "*", "*", "*", "*")
    found = con.execute(row, [P, A, "education-education", "education"]).fetchone()
    assert found == ("20", "0", "0.00", "z", "z", "z")
    counts = con.execute(
        "SELECT published_records, published_candidate_pairs, published_linked_records "
        "FROM published_linkage_qa"
    ).fetchall()
    shown = [int(v) for r in counts for v in r if v.isdigit()]
    assert shown and all(v % 5 == 0 for v in shown)


def test_weight_distribution_bins_links_by_decision(con):
    """Education-health in A 2024-25: weights 15.2, 12, 10.5, 9, 7 (model), 5, -3 (clerical)."""
    rows = con.execute(
        "SELECT weight_from, weight_to, links, model_links, clerical_links "
        "FROM linkage_weight_distribution WHERE agency_pair = 'education-health' "
        "AND period = ? AND la_code = ? ORDER BY weight_from",
        [P, A],
    ).fetchall()
    assert rows == [
        (-4, -2, 1, 0, 1),
        (4, 6, 1, 0, 1),
        (6, 8, 1, 1, 0),
        (8, 10, 1, 1, 0),
        (10, 12, 1, 1, 0),
        (12, 14, 1, 1, 0),
        (14, 16, 1, 1, 0),
    ]


def build_without(tmp_path: Path, **optional: Path | None) -> duckdb.DuckDBPyConnection:
    """Build the fixture with the given optional link outputs; open it read-only."""
    inputs = write_fixture_inputs(tmp_path)
    target = tmp_path / "b.duckdb"
    build_warehouse(target, inputs.sources, inputs.spine, inputs.links, "run-x", **optional)
    return duckdb.connect(str(target), read_only=True)


def test_qa_tables_are_empty_without_record_linkage(con, tmp_path):
    """A link dir from before record_linkage.parquet: the build succeeds, linkage_qa has no
    rows, the weight distribution is still built from the links."""
    distribution = "SELECT * FROM linkage_weight_distribution ORDER BY ALL"
    with build_without(tmp_path, record_linkage=tmp_path / "absent.parquet") as connection:
        counts = [
            connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("linkage_qa", "published_linkage_qa")
        ]
        assert connection.execute(distribution).fetchall() == con.execute(distribution).fetchall()
    assert counts == [0, 0]


def test_true_figures_are_null_without_truth_pairs(tmp_path):
    """Real data has no truth: true figures NULL (not measured), model estimates still there."""
    inputs = write_fixture_inputs(tmp_path / "inputs")
    with build_without(tmp_path, record_linkage=inputs.record_linkage) as connection:
        found = connection.execute(
            "SELECT count(*), count(true_precision), count(true_recall), "
            "count(published_true_recall), count(precision_estimate) FROM linkage_qa "
            "JOIN published_linkage_qa USING (agency_pair, agency, other_agency, la_code, "
            "period, group_type, group_value)"
        ).fetchone()
    assert found[0] > 100 and found[1:4] == (0, 0, 0) and found[4] > 0


def test_build_fails_when_record_linkage_names_a_record_outside_the_spine(tmp_path):
    inputs = write_fixture_inputs(tmp_path)
    rows = pq.read_table(inputs.record_linkage).to_pylist()
    rows[0]["person_token"] = token("unknown")
    pq.write_table(pa.Table.from_pylist(rows), inputs.record_linkage)
    with pytest.raises(Exception, match="record_linkage holds 1 record"):
        build_warehouse(
            tmp_path / "b.duckdb",
            inputs.sources,
            inputs.spine,
            inputs.links,
            "run-x",
            record_linkage=inputs.record_linkage,
        )


def test_agency_pairs_follow_the_linkers_orientation():
    """The warehouse's agency pairs are the linker's AGENCY_PAIRS plus each agency with itself."""
    from joinedup.link.records import AGENCY_PAIRS
    from joinedup.metrics import agency_pair_rows

    pairs = [(r["agency_l"], r["agency_r"]) for r in agency_pair_rows()]
    assert sorted(pairs) == sorted([*AGENCY_PAIRS, *((a, a) for a in AGENCIES)])


def test_truth_pairs_hold_every_pair_of_one_childs_records_incl_duplicates():
    """e1 = h1 = h2 (h2 a duplicate in health), e2 = k1, h3 alone: exactly these true pairs."""
    from joinedup.link.evaluate import truth_pairs
    from joinedup.pseudonymise import person_token as keyed_token

    key = b"k" * 32
    truth = pd.DataFrame(
        [
            ("education", "e1", "T1"),
            ("education", "e2", "T2"),
            ("health", "h1", "T1"),
            ("health", "h2", "T1"),
            ("health", "h3", "T3"),
            ("care", "k1", "T2"),
        ],
        columns=["agency", "local_id", "true_id"],
    )

    def pair(al: str, left: str, ar: str, right: str) -> tuple[str, str, str, str]:
        return (al, keyed_token(key, al, left), ar, keyed_token(key, ar, right))

    h1, h2 = pair("health", "h1", "health", "h2")[1::2]
    expected = {
        pair("education", "e1", "health", "h1"),
        pair("education", "e1", "health", "h2"),
        pair("education", "e2", "care", "k1"),
        ("health", min(h1, h2), "health", max(h1, h2)),
    }
    found = truth_pairs(truth, key)
    assert list(found.columns) == ["agency_l", "person_token_l", "agency_r", "person_token_r"]
    assert set(found.itertuples(index=False, name=None)) == expected
    assert len(found) == len(expected)
