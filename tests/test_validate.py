"""Tests of joinedup.validate: generated suites, and GX validation of pseudonymised extracts."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
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
    if col.encoding == "near_tokens":
        return _token(col.name, row)[:16] * 10  # 16 hex digits per masked position
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
    assert report.row_failures.empty
    total = len(validate.build_suite(contract(name))["expectations"])
    assert report.evaluated + len(report.skipped) == total
    assert report.rows == ROWS


def test_completeness_is_checked_only_from_the_minimum_row_count() -> None:
    spec = contract("care_cin")
    small = validate.validate_frame(valid_frame(spec), spec.name, PERIOD)
    assert small.skipped == ["completeness:nhs_token", "completeness:upn_token"]
    enough = valid_frame(spec, validate.COMPLETENESS_MIN_ROWS)
    report = validate.validate_frame(enough, spec.name, PERIOD)
    assert report.success and report.skipped == []
    assert report.evaluated == len(validate.build_suite(spec)["expectations"])


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
            first_attended_contact_date=None,
            discharge_date=None,
        ),
        "not_after_period_end:referral_received_date",
        [4],
    ),
    "future_discharge_date": (
        "health_referrals",
        _set(2, discharge_date=PERIOD.end + timedelta(days=1)),
        "not_after_period_end:discharge_date",
        [2],
    ),
    "future_reinstatement_date": (
        "education_exclusions",
        _set(5, reinstatement_date=PERIOD.end + timedelta(days=1)),
        "not_after_period_end:reinstatement_date",
        [5],
    ),
    "born_too_early_to_be_25_in_the_period": (
        "health_referrals",
        _set(2, birth_ym="1998-08"),
        "age_0_25:birth_ym",
        [2],
    ),
    "born_after_the_period": (
        "care_lac",
        _set(3, birth_ym="2025-09"),
        "age_0_25:birth_ym",
        [3],
    ),
    "plan_before_assessment_outcome": (
        "education_sen2",
        _set(3, assessment_outcome_date=PERIOD.start + timedelta(days=30)),
        "order:assessment_outcome_date<=plan_start_date",
        [3],
    ),
    "duplicate_single_column_key": (
        "education_census",
        _set(3, person_token=_token("person_token", 0)),
        "key:person_token",
        [1, 3],
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


def test_date_order_failures_show_the_earlier_column_first() -> None:
    df = valid_frame(contract("health_referrals"))
    _set(2, referral_received_date=PERIOD.start + timedelta(days=30))(df)
    report = validate.validate_frame(df, "health_referrals", PERIOD)
    found = failure(report, "order:referral_received_date<=first_attended_contact_date")
    assert found.columns == ["referral_received_date", "first_attended_contact_date"]
    assert found.values == [
        {"referral_received_date": "2024-10-01", "first_attended_contact_date": "2024-09-02"}
    ]
    assert "referral_received_date after first_attended_contact_date" in found.describe()
    assert report.row_failures.value.tolist() == [
        "referral_received_date=2024-10-01; first_attended_contact_date=2024-09-02"
    ]


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


def _severities(name: str) -> dict[str, str]:
    return {
        e["meta"]["rule"]: e["meta"]["severity"]
        for e in validate.build_suite(contract(name))["expectations"]
    }


def test_file_level_rules_hold_the_batch_and_value_rules_quarantine_rows() -> None:
    severities = _severities("education_exclusions")
    assert set(severities.values()) <= set(validate.SEVERITIES)
    for rule in ("columns", "volume:rows", "completeness:upn_token"):
        assert severities[rule] == validate.BATCH
    for rule in (
        "key:person_token,start_date,category",
        "codes:category",
        "null_if:reinstatement_date",
        "in_period:start_date",
        "not_after_period_end:reinstatement_date",
        "age_0_25:birth_ym",
        "order:start_date<=reinstatement_date",
    ):
        assert severities[rule] == validate.ROW
    assert _severities("care_cin")["completeness:nhs_token"] == validate.BATCH


def test_duplicate_key_failure_says_so_and_quarantines_every_copy() -> None:
    df = valid_frame(contract("education_exclusions"))
    _duplicate_key(df)
    report = validate.validate_frame(df, "education_exclusions", PERIOD)
    key = failure(report, "key:person_token,start_date,category")
    assert "duplicate record key (person_token, start_date, category)" in key.describe()
    assert not report.held
    assert sorted(report.row_failures.position) == [1, 3]
    assert set(report.row_failures.value) == {
        f"person_token={validate.REDACTED}; start_date={df.loc[1, 'start_date']}; category=SUSP"
    }


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


def _write(tmp_path: Path, spec: Contract, df: pd.DataFrame) -> Path:
    path = tmp_path / f"{spec.name}.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=spec.pseudonymised_schema()), path)
    return path


def test_raise_for_failures_ignores_row_and_warn_failures() -> None:
    df = valid_frame(contract("education_census"))
    _set(2, sen_provision="K", primary_need=None)(df)
    row_only = validate.validate_frame(df, "education_census", PERIOD)
    assert failed_rules(row_only) == {"required_if:primary_need"}
    warned = replace(row_only, failed=[_census_plan_warning()])
    validate.raise_for_failures([row_only, warned])


def test_raise_for_failures_names_file_batch_rule_and_counts(tmp_path: Path) -> None:
    spec = contract("education_census")
    df = valid_frame(spec)
    _set(2, sen_provision="K", primary_need=None)(df)
    path = _write(tmp_path, spec, df)
    bad = validate.validate_file(path, spec.name, PERIOD, tmp_path, previous_rows=20)
    good = validate.validate_frame(valid_frame(contract("care_lac")), "care_lac", PERIOD)
    with pytest.raises(validate.ValidationFailed) as raised:
        validate.raise_for_failures([good, bad])
    message = str(raised.value)
    assert str(path) in message
    assert "volume:rows [batch]" in message
    assert f"{ROWS} (allowed 10 to 40)" in message
    assert "required_if:primary_need" not in message
    assert "1 of 2 extract(s) held" in message
    assert raised.value.reports == [bad]


def test_datetime64_dates_are_compared_with_the_period() -> None:
    spec = contract("health_referrals")
    df = valid_frame(spec)
    dates = [c.name for c in spec.pseudonymised_columns if c.type == "date"]
    df[dates] = df[dates].apply(pd.to_datetime)
    df.loc[0, dates] = pd.Timestamp(PERIOD.end + timedelta(days=1))
    df.loc[1, "first_attended_contact_date"] = pd.NaT
    report = validate.validate_frame(df, spec.name, PERIOD)
    assert failed_rules(report) == {f"not_after_period_end:{name}" for name in dates}
    assert all(failure(report, f"not_after_period_end:{name}").rows == [1] for name in dates)


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
    assert {"columns", "volume:rows", "age_0_25:birth_ym"} <= set(rules)
    for col in spec.pseudonymised_columns:
        if col.type == "date":
            bounds = {f"not_after_period_end:{col.name}", f"in_period:{col.name}"}
            assert len(bounds & set(rules)) == 1, col.name
    completeness = {r for r in rules if r.startswith("completeness:")}
    assert completeness == {f"completeness:{c}" for c in validate.identifier_completeness(spec)}
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


def test_birth_months_span_everyone_aged_0_to_25_during_the_period() -> None:
    months = validate.birth_months(PERIOD)
    assert months[0] == "1998-09"  # 25 on 1 September 2024 when born after 1 September 1998
    assert months[-1] == "2025-08"
    assert len(months) == len(set(months)) == 27 * 12
    df = valid_frame(contract("health_referrals"))
    _set(1, birth_ym="1998-09")(df)
    _set(2, birth_ym="2025-08")(df)
    assert validate.validate_frame(df, "health_referrals", PERIOD).success


def test_volume_bounds_are_half_to_double_the_previous_delivery() -> None:
    assert validate.volume_parameters(7) == {"min_rows": 4, "max_rows": 14}
    assert validate.volume_parameters(None) == {"min_rows": 0, "max_rows": None}
    spec = contract("health_referrals")
    for previous, held in ((None, False), (ROWS, False), (2 * ROWS, False), (11, True), (2, True)):
        report = validate.validate_frame(valid_frame(spec), spec.name, PERIOD, previous)
        assert report.held == held, previous
        assert failed_rules(report) == ({"volume:rows"} if held else set())
    volume = failure(
        validate.validate_frame(valid_frame(spec), spec.name, PERIOD, 2), "volume:rows"
    )
    assert volume.severity == validate.BATCH
    assert volume.values == [f"{ROWS} (allowed 1 to 4)"]


def test_a_broken_export_without_identifier_tokens_holds_the_batch() -> None:
    spec = contract("care_cin")
    df = valid_frame(spec, validate.COMPLETENESS_MIN_ROWS)
    df.loc[: validate.COMPLETENESS_MIN_ROWS * 7 // 10 - 1, "nhs_token"] = None
    report = validate.validate_frame(df, spec.name, PERIOD)
    assert failed_rules(report) == {"completeness:nhs_token"}
    found = failure(report, "completeness:nhs_token")
    assert found.severity == validate.BATCH and report.held
    assert found.values == ["30.0% present, at least 40% required"]
    assert report.row_failures.empty


def test_every_identifier_token_of_a_contract_has_a_completeness_threshold() -> None:
    for spec in contracts().values():
        tokens = {
            c.name for c in spec.pseudonymised_columns if c.name in ("nhs_token", "upn_token")
        }
        assert set(validate.identifier_completeness(spec)) == tokens, spec.name


def _census_plan_warning() -> validate.FailedExpectation:
    census = valid_frame(contract("education_census"))
    census.loc[0, "sen_provision"] = "E"
    return validate.cross_extract_failures(
        {
            "education_census": census,
            "education_sen2": valid_frame(contract("education_sen2")).iloc[1:],
        }
    )[0]


def test_census_ehc_pupils_without_a_plan_record_are_a_warning() -> None:
    census = valid_frame(contract("education_census"))
    sen2 = valid_frame(contract("education_sen2"))  # row i has census row i's person_token
    census.loc[[1, 2, 3, 4], "sen_provision"] = "E"
    census.loc[4, "person_token"] = None  # quarantined by required:person_token, not warned
    sen2.loc[1, "assessment_outcome"] = None  # a plan start date alone is a plan record
    sen2.loc[3, ["assessment_outcome", "plan_start_date"]] = ["N", None]
    found = validate.cross_extract_failures({"education_census": census, "education_sen2": sen2})
    assert [(f.rule, f.severity, f.rows, f.unexpected_count) for f in found] == [
        ("cross:census_E_has_plan", validate.WARN, [4], 1)
    ]
    assert not found[0].holds_batch
    assert validate.cross_extract_failures({"education_census": census}) == []
    assert _census_plan_warning().rows == [1]


def test_row_failures_list_every_failing_row_once_per_rule() -> None:
    spec = contract("health_referrals")
    df = valid_frame(spec, 30)
    df.loc[:24, "service"] = "XRAY"
    df.loc[0, "la_code"] = "W06000001"
    df.loc[29, "person_token"] = "not a token"
    df.loc[29, "contacts_dna"] = 2000
    report = validate.validate_frame(df, spec.name, PERIOD)
    service = failure(report, "codes:service")
    assert service.unexpected_count == 25 and len(service.rows) == validate.SAMPLE_ROWS
    failures = report.row_failures
    assert list(failures.columns) == ["position", "rule", "severity", "column", "value"]
    by_rule = failures.groupby("rule").position.apply(sorted).to_dict()
    assert by_rule == {
        "codes:service": list(range(25)),
        "pattern:la_code": [0],
        "token:person_token": [29],
        "range:contacts_dna": [29],
    }
    assert set(failures.severity) == {validate.ROW}
    shown = failures.set_index("rule")
    assert shown.loc["pattern:la_code", "value"] == "W06000001"
    assert shown.loc["token:person_token", "value"] == validate.REDACTED
    assert shown.loc["range:contacts_dna", "value"] == "2000"
    assert shown.loc["range:contacts_dna", "column"] == "contacts_dna"


def test_data_docs_are_built_from_redacted_results_only(tmp_path: Path) -> None:
    committed = {p.name: p.read_bytes() for p in Settings().expectations_dir.glob("*.json")}
    spec = contract("education_exclusions")
    df = valid_frame(spec)
    _duplicate_key(df)
    df.loc[0, "surname_token"] = "Z" * 64
    df.loc[4, "reason"] = "<script>alert(1)</script>"
    docs = tmp_path / "gx"
    validate.validate_file(_write(tmp_path, spec, df), spec.name, PERIOD, tmp_path, docs_dir=docs)
    validate.validate_frame(
        valid_frame(contract("care_lac")), "care_lac", PERIOD, docs_dir=docs, docs_label="lac"
    )
    index = validate.build_data_docs(docs)
    assert index == validate.data_docs_index(docs)
    assert index.name == "index.html" and index.is_file()
    pages = list(index.parent.glob("validations/**/*.html"))
    assert {p.parts[len(index.parent.parts) + 1] for p in pages} == {spec.name, "care_lac"}
    stored = [p for p in docs.rglob("*") if p.is_file() and p.suffix in (".html", ".json")]
    text = "".join(p.read_text(encoding="utf-8") for p in stored)
    assert "key:person_token,start_date,category" in text
    assert "&lt;redacted&gt;" in text  # failing token values are shown, redacted
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # delivered values are escaped
    for secret in ("Z" * 64, df.loc[1, "person_token"], df.loc[2, "forename_bloom"], "alert(1)<"):
        assert secret not in text
    assert {p.name: p.read_bytes() for p in Settings().expectations_dir.glob("*.json")} == committed


def test_importing_validate_does_not_import_great_expectations() -> None:
    code = "import sys, joinedup.validate; print('great_expectations' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_great_expectations_loggers_are_quiet_below_warning() -> None:
    validate.validate_frame(valid_frame(contract("care_lac")), "care_lac", PERIOD)
    gx_loggers = [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]
    assert gx_loggers
    assert all(logging.getLogger(n).getEffectiveLevel() >= logging.WARNING for n in gx_loggers)
