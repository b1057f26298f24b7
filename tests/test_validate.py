"""Tests of joinedup.validate: generated suites, and GX validation of pseudonymised extracts."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from joinedup import validate
from joinedup.contracts import Column, Contract, Period, codes, contract, contracts
from joinedup.settings import Settings

PERIOD = Period("2024-25")
ROWS = 5
PATTERN_EXAMPLES = {
    "la_code": "E08000035",
    "school_urn": "123456",
    "birth_ym": "2015-03",
    "postcode_district": "LS6",
}


def _token(column: str, row: int) -> str:
    return hashlib.sha256(f"{column}:{row}".encode()).hexdigest()


def _valid_value(col: Column, row: int) -> object:
    """A value meeting every rule of the column; all dates of a row are one day in the period."""
    if col.token:
        return _token(col.name, row)
    if col.encoding == "bloom":
        return "0f" * (Settings().link.bloom_bits // 8)
    if col.codes:
        # The first code of every list satisfies the row rules (N, SUSP, A, valid ...).
        return codes(col.codes)[0]
    if col.pattern:
        return PATTERN_EXAMPLES[col.name]
    if col.type == "date":
        return PERIOD.start + timedelta(days=row)
    if col.type == "int32":
        return col.min or 0
    if col.type == "bool":
        return True
    raise AssertionError(f"no valid value known for {col.name}")


def valid_frame(spec: Contract, rows: int = ROWS) -> pd.DataFrame:
    """A frame exactly in the contract's pseudonymised schema, as pandas reads the Parquet."""
    records = [
        {c.name: _valid_value(c, i) for c in spec.pseudonymised_columns} for i in range(rows)
    ]
    return pa.Table.from_pylist(records, schema=spec.pseudonymised_schema()).to_pandas()


def failed_rules(report: validate.ValidationReport) -> set[str]:
    return {f.rule for f in report.failed}


def failure(report: validate.ValidationReport, rule: str) -> validate.FailedExpectation:
    return next(f for f in report.failed if f.rule == rule)


@pytest.mark.parametrize("name", sorted(contracts()))
def test_valid_frame_passes_every_expectation(name: str) -> None:
    report = validate.validate_frame(valid_frame(contract(name)), name, PERIOD)
    assert report.failed == [], report.describe()
    assert report.success
    assert report.evaluated == len(validate.build_suite(contract(name))["expectations"])
    assert report.rows == ROWS


def _set(row: int, **values: object) -> Callable[[pd.DataFrame], None]:
    """A mutation setting columns of one 1-based row."""

    def mutate(df: pd.DataFrame) -> None:
        for column, value in values.items():
            df.loc[row - 1, column] = value

    return mutate


def _duplicate_key(df: pd.DataFrame) -> None:
    for column in contract("education_exclusions").key:
        df.loc[3, column] = df.loc[1, column]


FAILURES = {
    "code_outside_list": ("health_referrals", _set(3, service="XRAY"), "codes:service", [3]),
    "multi_code_outside_list": (
        "care_cin",
        _set(2, disabilities="MOB WINGS"),
        "codes:disabilities",
        [2],
    ),
    "missing_required_value": (
        "care_lac",
        _set(2, legal_status=None),
        "required:legal_status",
        [2],
    ),
    "date_after_period_end": (
        "health_referrals",
        _set(
            4,
            referral_received_date=PERIOD.end + timedelta(days=1),
            first_attended_contact_date=PERIOD.end + timedelta(days=2),
            discharge_date=PERIOD.end + timedelta(days=3),
        ),
        "not_after_period_end:referral_received_date",
        [4],
    ),
    "date_before_period": (
        "education_exclusions",
        _set(1, start_date=PERIOD.start - timedelta(days=1)),
        "in_period:start_date",
        [1],
    ),
    "referral_after_first_contact": (
        "health_referrals",
        _set(2, referral_received_date=PERIOD.start + timedelta(days=30)),
        "order:referral_received_date<=first_attended_contact_date",
        [2],
    ),
    "duplicate_key": (
        "education_exclusions",
        _duplicate_key,
        "key:person_token,start_date,category",
        [2, 4],
    ),
    "perm_exclusion_with_reinstatement": (
        "education_exclusions",
        _set(3, category="PERM"),
        "null_if:reinstatement_date",
        [3],
    ),
    "invalid_token": ("care_cin", _set(5, nhs_token="AB" * 32), "token:nhs_token", [5]),
    "sen_plan_without_primary_need": (
        "education_census",
        _set(1, sen_provision="E", primary_need=None),
        "required_if:primary_need",
        [1],
    ),
    "episode_ended_without_reason": (
        "care_lac",
        _set(3, rec=None),
        "required_if:rec",
        [3],
    ),
    "absence_above_sessions_possible": (
        "education_census",
        _set(2, sessions_possible=300, sessions_authorised=200, sessions_unauthorised=150),
        "sum_not_above:sessions_authorised+sessions_unauthorised<=sessions_possible",
        [2],
    ),
    "value_out_of_range": ("education_census", _set(4, ncyear=15), "range:ncyear", [4]),
    "malformed_la_code": ("care_cin", _set(1, la_code="W06000001"), "pattern:la_code", [1]),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_each_kind_of_failure_fails_exactly_its_rule_on_its_rows(case: str) -> None:
    name, mutate, rule, rows = FAILURES[case]
    df = valid_frame(contract(name))
    mutate(df)
    report = validate.validate_frame(df, name, PERIOD)
    assert not report.success
    assert failed_rules(report) == {rule}, report.describe()
    found = failure(report, rule)
    assert found.rows == rows
    assert found.unexpected_count == len(rows)


def test_unexpected_and_missing_columns_fail_the_batch() -> None:
    df = valid_frame(contract("education_census")).drop(columns="school_urn").assign(extra="x")
    report = validate.validate_frame(df, "education_census", PERIOD)
    columns = failure(report, "columns")
    assert columns.severity == validate.BATCH
    assert columns.values == ["missing: school_urn", "unexpected: extra"]
    assert "columns [batch]" in report.describe()


def test_key_and_columns_are_batch_rules_and_value_rules_are_row_rules() -> None:
    severities = {
        e["meta"]["rule"]: e["meta"]["severity"]
        for e in validate.build_suite(contract("education_exclusions"))["expectations"]
    }
    assert severities["key:person_token,start_date,category"] == validate.BATCH
    assert severities["columns"] == validate.BATCH
    assert severities["codes:category"] == validate.ROW
    assert severities["null_if:reinstatement_date"] == validate.ROW


def test_token_values_never_appear_in_reports_or_gx_results(tmp_path: Path) -> None:
    spec = contract("education_exclusions")
    df = valid_frame(spec)
    _duplicate_key(df)
    df.loc[0, "surname_token"] = "Z" * 64
    path = tmp_path / "education_exclusions.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=spec.pseudonymised_schema()), path)
    report = validate.validate_file(path, spec.name, PERIOD, tmp_path / "results")
    key = failure(report, "key:person_token,start_date,category")
    assert key.values[0]["person_token"] == validate.REDACTED
    assert key.values[0]["category"] == "SUSP"
    assert failure(report, "token:surname_token").values == [validate.REDACTED]
    written = "".join(p.read_text() for p in (tmp_path / "results").iterdir())
    for secret in ("Z" * 64, df.loc[1, "person_token"]):
        assert secret not in report.describe()
        assert secret not in written


def test_validate_file_writes_report_and_gx_result_without_ids(tmp_path: Path) -> None:
    spec = contract("health_referrals")
    df = valid_frame(spec)
    _set(3, service="XRAY")(df)
    path = tmp_path / "health_referrals.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=spec.pseudonymised_schema()), path)
    report = validate.validate_file(path, spec.name, PERIOD, tmp_path / "results")
    saved = json.loads((tmp_path / "results" / "health_referrals.json").read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert saved["source"] == str(path)
    gx_text = (tmp_path / "results" / "health_referrals.gx.json").read_text()
    gx_result = json.loads(gx_text)
    assert gx_result["success"] is False
    assert '"id"' not in gx_text
    failed = [r for r in gx_result["results"] if not r["success"]]
    assert [r["result"]["unexpected_index_list"] for r in failed] == [[3]]


def test_raise_for_failures_names_file_rule_count_and_rows(tmp_path: Path) -> None:
    spec = contract("education_census")
    df = valid_frame(spec)
    for row in (2, 4):
        _set(row, sen_provision="K", primary_need=None)(df)
    path = tmp_path / "education_census.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=spec.pseudonymised_schema()), path)
    bad = validate.validate_file(path, spec.name, PERIOD, tmp_path)
    good = validate.validate_frame(valid_frame(contract("care_lac")), "care_lac", PERIOD)
    validate.raise_for_failures([good])
    with pytest.raises(validate.ValidationFailed) as raised:
        validate.raise_for_failures([good, bad])
    message = str(raised.value)
    assert str(path) in message
    assert "required_if:primary_need [row]: 2 failing row(s), rows 2, 4" in message
    assert "1 of 2 extract(s) failed" in message
    assert raised.value.reports == [bad]


def test_datetime64_dates_are_compared_with_the_period() -> None:
    spec = contract("health_referrals")
    df = valid_frame(spec)
    dates = [c.name for c in spec.pseudonymised_columns if c.type == "date"]
    df[dates] = df[dates].apply(pd.to_datetime)
    df.loc[0, dates] = pd.Timestamp(PERIOD.end + timedelta(days=1))
    df.loc[1, "first_attended_contact_date"] = pd.NaT
    report = validate.validate_frame(df, spec.name, PERIOD)
    assert failed_rules(report) == {"not_after_period_end:referral_received_date"}
    assert failure(report, "not_after_period_end:referral_received_date").rows == [1]


def test_period_bounds_come_from_the_period_given() -> None:
    df = valid_frame(contract("education_exclusions"))
    report = validate.validate_frame(df, "education_exclusions", Period("2025-26"))
    assert failed_rules(report) == {"in_period:start_date"}
    assert failure(report, "in_period:start_date").unexpected_count == ROWS


@pytest.mark.parametrize("name", sorted(contracts()))
def test_committed_suite_equals_the_suite_built_from_the_contract(name: str) -> None:
    committed = (Settings().expectations_dir / f"{name}.json").read_text(encoding="utf-8")
    assert committed == validate.suite_json(contract(name))


def test_write_suites_writes_one_stable_file_per_contract(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in validate.write_suites(tmp_path)}
    second = {p.name: p.read_bytes() for p in validate.write_suites(tmp_path)}
    assert sorted(first) == sorted(f"{n}.json" for n in contracts())
    assert first == second
    assert all(b'"id"' not in text for text in first.values())


@pytest.mark.parametrize("name", sorted(contracts()))
def test_suite_rules_are_unique_and_cover_every_contract_rule(name: str) -> None:
    spec = contract(name)
    rules = [e["meta"]["rule"] for e in validate.build_suite(spec)["expectations"]]
    assert len(rules) == len(set(rules))
    for col in spec.pseudonymised_columns:
        assert (f"required:{col.name}" in rules) == col.required
        assert (f"codes:{col.name}" in rules) == bool(col.codes)
        assert (f"token:{col.name}" in rules) == col.token
    assert "key:" + ",".join(spec.key) in rules
    row_rules = [r for r in rules if r.split(":")[0] in ("required_if", "null_if", "sum_not_above")]
    assert len(row_rules) == len(spec.row_rules)


def test_bloom_regex_length_follows_bloom_bits() -> None:
    assert validate.bloom_regex(1024) == "^[0-9a-f]{256}$"


def test_multi_code_regex_accepts_only_listed_codes() -> None:
    suite = validate.build_suite(contract("care_cin"))
    regex = next(
        e["kwargs"]["regex"]
        for e in suite["expectations"]
        if e["meta"]["rule"] == "codes:disabilities"
    )
    assert re.match(regex, "MOB HAND AUT")
    assert re.match(regex, "NONE")
    assert not re.match(regex, "MOB  HAND")
    assert not re.match(regex, "MOBX")
    assert not re.match(regex, "")


def test_period_parameters_are_the_first_and_last_day() -> None:
    assert validate.period_parameters(PERIOD) == {
        "period_start": date(2024, 9, 1).isoformat(),
        "period_end": date(2025, 8, 31).isoformat(),
    }


def test_importing_validate_does_not_import_great_expectations() -> None:
    code = "import sys, joinedup.validate; print('great_expectations' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_great_expectations_loggers_are_quiet_below_warning() -> None:
    validate.validate_frame(valid_frame(contract("care_lac")), "care_lac", PERIOD)
    gx_loggers = [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]
    assert gx_loggers
    assert all(logging.getLogger(n).getEffectiveLevel() >= logging.WARNING for n in gx_loggers)
