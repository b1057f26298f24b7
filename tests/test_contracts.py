"""The contracts in schemas/ are complete, consistent, and keep identifiers out of the
pseudonymised form."""

from __future__ import annotations

import pytest

from joinedup.contracts import (
    Period,
    agency_contracts,
    code_lists,
    contract,
    contracts,
    identity_columns,
)
from joinedup.settings import AGENCIES

EXTRACTS = {
    "education_census",
    "education_exclusions",
    "education_sen2",
    "health_referrals",
    "care_cin",
    "care_lac",
}


def test_every_agency_delivers_its_extracts():
    assert set(contracts()) == EXTRACTS
    for agency in AGENCIES:
        assert agency_contracts(agency)
        assert all(c.agency == agency for c in agency_contracts(agency))
    with pytest.raises(ValueError, match="unknown agency"):
        agency_contracts("police")


@pytest.mark.parametrize("name", sorted(EXTRACTS))
def test_no_direct_identifier_column_survives_into_the_pseudonymised_form(name):
    spec = contract(name)
    raw_identifiers = {c.name for c in spec.raw_columns if c.direct_identifier}
    assert {"local_id", "forename", "surname", "dob"} <= raw_identifiers
    assert not raw_identifiers & set(spec.pseudonymised_schema().names)


@pytest.mark.parametrize("name", sorted(EXTRACTS))
def test_every_pseudonymised_identity_column_derives_from_a_field_the_agency_holds(name):
    spec = contract(name)
    ident = [c for c in spec.pseudonymised_columns if c.source]
    assert {c.source for c in ident} == set(spec.identity)
    assert spec.pseudonymised_schema().names[0] == "person_token"


@pytest.mark.parametrize("name", sorted(EXTRACTS))
def test_every_extract_holds_the_address_and_lands_only_its_bloom_filter_and_tokens(name):
    spec = contract(name)
    assert "address" in [c.name for c in spec.raw_columns]
    from_address = [c for c in spec.pseudonymised_columns if c.source == "address"]
    assert [(c.name, c.encoding, c.token) for c in from_address] == [
        ("address_bloom", "bloom", False),
        ("premises_token", None, True),
        ("street_token", None, True),
    ]


def test_every_code_list_a_contract_names_exists():
    lists = code_lists()
    for spec in contracts().values():
        for column in (*spec.raw_columns, *spec.pseudonymised_columns):
            if column.codes:
                assert column.codes in lists, (spec.name, column.name)


def test_every_key_and_rule_names_a_column_of_its_contract():
    for spec in contracts().values():
        names = set(spec.pseudonymised_schema().names)
        assert set(spec.key) <= names, spec.name
        for rule in (*spec.row_rules, *spec.date_rules):
            columns = rule.get("columns") or [rule["column"]]
            assert set(columns) <= names, (spec.name, rule)


def test_identity_block_names_each_raw_field_once():
    raw = [c.name for c in identity_columns("raw")]
    assert len(raw) == len(set(raw))
    assert {c.source for c in identity_columns("pseudonymised")} == set(raw)


def test_period_is_an_academic_year():
    period = Period("2024-25")
    assert (period.start.isoformat(), period.end.isoformat()) == ("2024-09-01", "2025-08-31")
    for bad in ("2024", "2024-26", "24-25", "2024/25"):
        with pytest.raises(ValueError):
            Period(bad)


def test_column_mismatch_names_missing_and_unexpected_columns_or_nothing():
    from joinedup.contracts import column_mismatch

    assert column_mismatch("x", ["a", "b"], ["b", "a"]) is None
    message = column_mismatch("x", ["a", "b"], ["a", "c"])
    assert message == "columns do not match contract x: missing ['b'], unexpected ['c']"
