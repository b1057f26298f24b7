"""Validate: check each pseudonymised extract against its Great Expectations suite.

The suites are generated from the contracts (`build_suite`) and committed as
`expectations/<extract>.json` (`write_suites`, or `python -m joinedup.validate`); validation runs
the committed suite, and a test keeps the two equal. Great Expectations 1.x runs on a pandas
frame through an ephemeral context, imported lazily because importing it takes seconds.

Every expectation has a severity (`meta.severity`):

- `row`: a failing row is quarantined (`ValidationReport.row_failures` lists every one);
- `batch`: the whole delivery is held: the period is not published and the last published
  warehouse stays (`ValidationReport.batch_failures`, `raise_for_failures`);
- `warn`: recorded as a data-quality failure, the rows are kept.

Row numbers in reports are 1-based positions in the validated frame, header not counted: row 1
is the first record (in a CSV delivery, row n is line n + 1); `row_failures` gives 0-based
positions. Values of token and Bloom-filter columns never appear in a report, in the kept GX
result or in the Data Docs: they are replaced by `<redacted>` before anything is stored.

Data Docs: pass `docs_dir` to `validate_frame`/`validate_file` to keep each (redacted) result in
a file-based GX context rooted there and update its static site; `build_data_docs(docs_dir)`
rebuilds the whole site and returns its index.html. The committed suites stay the source of
truth: the context holds copies of them.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from joinedup.contracts import Column, Contract, Period, codes, contract, contracts
from joinedup.settings import Settings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import FileDataContext

SETTINGS = Settings.from_env()
ROW = "row"
BATCH = "batch"
WARN = "warn"
SEVERITIES = (ROW, BATCH, WARN)
TOKEN_REGEX = "^[0-9a-f]{64}$"
PERIOD_START = "period_start"
PERIOD_END = "period_end"
BIRTH_MONTHS = "birth_months"
MIN_ROWS = "min_rows"
MAX_ROWS = "max_rows"
SUITE_PARAMETERS = [PERIOD_START, PERIOD_END, BIRTH_MONTHS, MIN_ROWS, MAX_ROWS]
MAX_AGE = 25  # the SEND population is aged 0-25
VOLUME_FACTOR = 2  # a delivery holds between 1/2 and 2x the rows of the previous one
# Completeness is a share: below this many rows chance alone can break a threshold (a looked
# after return of 5 episodes may well lack 3 NHS numbers), so smaller files are not held for it.
COMPLETENESS_MIN_ROWS = 30
COMPLETENESS_PREFIX = "completeness:"
REDACTED = "<redacted>"
SAMPLE_ROWS = 10
SAMPLE_VALUES = 5
MESSAGE_ROWS = 5
KEPT_RESULT_ROWS = 1000  # unexpected rows and values kept per expectation in stored GX results
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": SAMPLE_VALUES,
    "return_unexpected_index_query": False,
}
ROW_FAILURE_COLUMNS = ["position", "rule", "severity", "column", "value"]
CENSUS_PLAN_RULE = "cross:census_E_has_plan"
CENSUS_PLAN_MESSAGE = "EHC plan on the census (sen_provision E) but no plan record in SEN2"
DOCS_SITE = "local_site"


class ValidationFailed(Exception):
    """One or more extracts broke a batch expectation: their deliveries are held."""

    def __init__(self, message: str, reports: list[ValidationReport]) -> None:
        super().__init__(message)
        self.reports = reports


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation an extract did not meet, with a sample of the rows that broke it."""

    rule: str
    severity: str
    type: str
    columns: list[str]
    unexpected_count: int | None
    rows: list[int]
    values: list[Any]
    error: str | None = None
    message: str | None = None

    @property
    def holds_batch(self) -> bool:
        """True when the delivery must be held: a batch rule failed, or a rule could not run."""
        return self.severity == BATCH or self.error is not None

    def describe(self) -> str:
        """One line naming the rule, how many rows failed and the first few row numbers."""
        head = f"{self.rule} [{self.severity}]: " + (f"{self.message}: " if self.message else "")
        if self.error:
            return f"{head}could not be checked: {self.error}"
        if self.unexpected_count is None:
            return f"{head}failed ({_shown(self.values)})"
        rows = ", ".join(str(r) for r in self.rows[:MESSAGE_ROWS])
        more = ", ..." if self.unexpected_count > MESSAGE_ROWS else ""
        line = f"{head}{self.unexpected_count} failing row(s)"
        return f"{line}, rows {rows}{more}; values {_shown(self.values)}"


def empty_row_failures() -> pd.DataFrame:
    """A row-failure table with no rows (see ValidationReport.row_failures)."""
    return pd.DataFrame(
        {
            "position": pd.Series(dtype="int64"),
            **{name: pd.Series(dtype="object") for name in ROW_FAILURE_COLUMNS[1:]},
        }
    )


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one extract for one period.

    `row_failures` has one row per (failing row, row-severity rule): position (0-based in the
    validated frame), rule, severity, column (comma-separated when the rule spans several),
    value as delivered (text; `<redacted>` for token and Bloom columns; None when empty).
    """

    extract: str
    period: str
    success: bool
    evaluated: int
    rows: int
    failed: list[FailedExpectation] = field(default_factory=list)
    source: str | None = None
    skipped: list[str] = field(default_factory=list)
    row_failures: pd.DataFrame = field(
        default_factory=empty_row_failures, repr=False, compare=False
    )

    @property
    def batch_failures(self) -> list[FailedExpectation]:
        """The failures that hold the whole delivery."""
        return [f for f in self.failed if f.holds_batch]

    @property
    def held(self) -> bool:
        return bool(self.batch_failures)

    def describe(self, failures: Iterable[FailedExpectation] | None = None) -> str:
        """A multi-line account of the failures (all, or those given), naming the file."""
        shown = self.failed if failures is None else list(failures)
        where = self.source or "<dataframe>"
        head = (
            f"{where} ({self.extract}, period {self.period}, {self.rows} rows): "
            f"{len(self.failed)} of {self.evaluated} expectations failed"
        )
        return "\n".join([head, *(f"  - {f.describe()}" for f in shown)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, without the row failures (they can be many; see row_failures)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "row_failures"}
        out["failed"] = [asdict(f) for f in self.failed]
        out["skipped"] = list(self.skipped)
        return out


# --- suites, generated from the contracts -------------------------------------------------


def build_suite(contract: Contract) -> dict[str, Any]:
    """The GX expectation suite of a contract, as a plain JSON-able dict without random ids."""
    expectations = [
        _columns_match(contract),
        _volume(),
        *(e for col in contract.pseudonymised_columns for e in _column_expectations(col)),
        _key_unique(contract),
        *(e for rule in contract.date_rules for e in _date_rule_expectations(rule)),
        *(_not_after_period_end(name) for name in _unbounded_date_columns(contract)),
        *_age_expectations(contract),
        *(_completeness(name, share) for name, share in identifier_completeness(contract).items()),
        *(_row_rule_expectation(rule) for rule in contract.row_rules),
    ]
    return {
        "name": contract.name,
        "meta": {
            "generated_by": "joinedup.validate.write_suites",
            "contract": f"schemas/{contract.name}.json",
            "suite_parameters": SUITE_PARAMETERS,
        },
        "expectations": expectations,
    }


def suite_json(contract: Contract) -> str:
    """The committed text of a contract's suite: sorted keys, indent 2, trailing newline."""
    return json.dumps(build_suite(contract), indent=2, sort_keys=True) + "\n"


def write_suites(out_dir: Path = SETTINGS.expectations_dir) -> list[Path]:
    """Write expectations/<extract>.json for every contract; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, spec in sorted(contracts().items()):
        path = out_dir / f"{name}.json"
        path.write_text(suite_json(spec), encoding="utf-8")
        written.append(path)
    return written


def identifier_completeness(contract: Contract) -> dict[str, float]:
    """The contract's minimum share of rows carrying each identifier token (may be empty)."""
    return dict(contract.identifier_completeness)


def _expectation(
    type_: str,
    rule: str,
    severity: str,
    description: str,
    message: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    meta = {"rule": rule, "severity": severity, "description": description}
    if message:
        meta["message"] = message
    return {"type": type_, "kwargs": kwargs, "meta": meta}


def _columns_match(contract: Contract) -> dict[str, Any]:
    names = [c.name for c in contract.pseudonymised_columns]
    return _expectation(
        "expect_table_columns_to_match_set",
        "columns",
        BATCH,
        "The delivery has exactly the columns of the pseudonymised contract.",
        column_set=names,
        exact_match=True,
    )


def _volume() -> dict[str, Any]:
    """Row count within bounds given at validation time (see volume_parameters)."""
    return _expectation(
        "expect_table_row_count_to_be_between",
        "volume:rows",
        BATCH,
        f"The delivery holds between 1/{VOLUME_FACTOR} and {VOLUME_FACTOR}x the rows of the "
        "previous delivery of the same extract and area.",
        "row count out of line with the previous delivery",
        min_value={"$PARAMETER": MIN_ROWS},
        max_value={"$PARAMETER": MAX_ROWS},
    )


def _column_expectations(col: Column) -> Iterator[dict[str, Any]]:
    """Expectations on one column's own values: presence, codes, format and range."""
    if col.required:
        yield _expectation(
            "expect_column_values_to_not_be_null",
            f"required:{col.name}",
            ROW,
            f"{col.name} is required.",
            column=col.name,
        )
    if col.codes and col.multi:
        yield _regex(
            col.name,
            f"codes:{col.name}",
            _multi_code_regex(codes(col.codes), col.multi),
            f"Each {col.multi!r}-separated code in {col.name} is in the {col.codes} list.",
        )
    elif col.codes:
        yield _expectation(
            "expect_column_values_to_be_in_set",
            f"codes:{col.name}",
            ROW,
            f"{col.name} is a code of the {col.codes} list.",
            column=col.name,
            value_set=list(codes(col.codes)),
        )
    if col.pattern:
        yield _regex(col.name, f"pattern:{col.name}", col.pattern, f"{col.name} is well formed.")
    if col.token:
        yield _regex(
            col.name, f"token:{col.name}", TOKEN_REGEX, f"{col.name} is an HMAC-SHA256 in hex."
        )
    if col.encoding == "bloom":
        yield _regex(
            col.name,
            f"bloom:{col.name}",
            bloom_regex(SETTINGS.link.bloom_bits),
            f"{col.name} is a {SETTINGS.link.bloom_bits}-bit Bloom filter in hex.",
        )
    if col.min is not None or col.max is not None:
        yield _expectation(
            "expect_column_values_to_be_between",
            f"range:{col.name}",
            ROW,
            f"{col.name} lies in [{col.min}, {col.max}].",
            column=col.name,
            min_value=col.min,
            max_value=col.max,
        )


def _regex(column: str, rule: str, regex: str, description: str) -> dict[str, Any]:
    return _expectation(
        "expect_column_values_to_match_regex", rule, ROW, description, column=column, regex=regex
    )


def bloom_regex(bits: int) -> str:
    """A Bloom filter of `bits` bits written as lower-case hex (4 bits a character)."""
    return f"^[0-9a-f]{{{bits // 4}}}$"


def _multi_code_regex(code_list: Iterable[str], separator: str) -> str:
    """A regex for one or more codes of a list joined by a separator."""
    one = "(?:" + "|".join(re.escape(c) for c in code_list) + ")"
    return f"^{one}(?:{re.escape(separator)}{one})*$"


def _key_unique(contract: Contract) -> dict[str, Any]:
    """No two rows share the record key; every row of a duplicated key fails (row severity:
    which copy is right cannot be known, so all of them are quarantined)."""
    rule = "key:" + ",".join(contract.key)
    names = ", ".join(contract.key)
    description = f"No two rows share the key ({names})."
    message = f"duplicate record key ({names})"
    if len(contract.key) == 1:
        return _expectation(
            "expect_column_values_to_be_unique",
            rule,
            ROW,
            description,
            message,
            column=contract.key[0],
        )
    return _expectation(
        "expect_compound_columns_to_be_unique",
        rule,
        ROW,
        description,
        message,
        column_list=list(contract.key),
    )


def _date_rule_expectations(rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Expectations of one contract date rule; period bounds are suite parameters."""
    kind = rule["rule"]
    if kind == "order":
        for earlier, later in pairwise(rule["columns"]):
            yield _expectation(
                "expect_column_pair_values_a_to_be_greater_than_b",
                f"order:{earlier}<={later}",
                ROW,
                f"{earlier} is on or before {later} where both are present.",
                f"{earlier} after {later}",
                column_A=later,
                column_B=earlier,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
    elif kind == "not_after_period_end":
        yield _not_after_period_end(rule["column"])
    elif kind == "in_period":
        yield _expectation(
            "expect_column_values_to_be_between",
            f"in_period:{rule['column']}",
            ROW,
            f"{rule['column']} falls within the period.",
            column=rule["column"],
            min_value={"$PARAMETER": PERIOD_START},
            max_value={"$PARAMETER": PERIOD_END},
        )
    else:
        raise ValueError(f"unknown date rule {kind!r}")


def _not_after_period_end(column: str) -> dict[str, Any]:
    return _expectation(
        "expect_column_values_to_be_between",
        f"not_after_period_end:{column}",
        ROW,
        f"{column} is not after the end of the period.",
        "date after the end of the period",
        column=column,
        max_value={"$PARAMETER": PERIOD_END},
    )


def _unbounded_date_columns(contract: Contract) -> list[str]:
    """Date columns no contract rule bounds by the period end: no date may lie in the future."""
    bounded = {
        r["column"]
        for r in contract.date_rules
        if r["rule"] in ("in_period", "not_after_period_end")
    }
    return [
        c.name for c in contract.pseudonymised_columns if c.type == "date" and c.name not in bounded
    ]


def _age_expectations(contract: Contract) -> Iterator[dict[str, Any]]:
    """The birth month is one of a person aged 0-25 at some time in the period."""
    if any(c.name == "birth_ym" for c in contract.pseudonymised_columns):
        yield _expectation(
            "expect_column_values_to_be_in_set",
            "age_0_25:birth_ym",
            ROW,
            f"birth_ym is a month in which someone aged 0-{MAX_AGE} during the period was born.",
            f"birth month outside ages 0-{MAX_AGE} in the period",
            column="birth_ym",
            value_set={"$PARAMETER": BIRTH_MONTHS},
        )


def _completeness(column: str, share: float) -> dict[str, Any]:
    """At least `share` of the rows carry the identifier token (a broken export carries none)."""
    return _expectation(
        "expect_column_values_to_not_be_null",
        f"{COMPLETENESS_PREFIX}{column}",
        BATCH,
        f"At least {share:.0%} of the rows carry {column} (checked from "
        f"{COMPLETENESS_MIN_ROWS} rows).",
        f"too few rows carry {column}",
        column=column,
        mostly=share,
    )


def _row_rule_expectation(rule: dict[str, Any]) -> dict[str, Any]:
    """The expectation of one contract row rule, conditioned on other columns of the row."""
    kind = rule["rule"]
    if kind == "sum_not_above":
        return _sum_not_above(rule["columns"], rule["limit"])
    column = rule["column"]
    when = _describe_condition(rule)
    if kind == "required_if":
        return _expectation(
            "expect_column_values_to_not_be_null",
            f"required_if:{column}",
            ROW,
            f"{column} is required when {when}.",
            column=column,
            row_condition=_row_condition(rule),
        )
    if kind == "null_if":
        return _expectation(
            "expect_column_values_to_be_null",
            f"null_if:{column}",
            ROW,
            f"{column} must be empty when {when}.",
            column=column,
            row_condition=_row_condition(rule),
        )
    raise ValueError(f"unknown row rule {kind!r}")


def _sum_not_above(columns: list[str], limit: str) -> dict[str, Any]:
    """sum(columns) <= limit: no row may satisfy sum > limit.

    GX has no expectation comparing a sum of columns with another column (the multicolumn sum
    expectation tests equality with a constant) and its Condition objects compare a column with
    a literal only, so the rows breaking the rule are selected with a pandas filter (GX's
    pass-through row condition) and the limit column is expected to be empty on them: every
    such row is reported as unexpected, with its limit as the value.
    """
    total = " + ".join(columns)
    return _expectation(
        "expect_column_values_to_be_null",
        f"sum_not_above:{'+'.join(columns)}<={limit}",
        ROW,
        f"{total} is not above {limit}.",
        column=limit,
        row_condition={"type": "pass_through", "pass_through_filter": f"{total} > {limit}"},
    )


def _row_condition(rule: dict[str, Any]) -> dict[str, Any]:
    """A GX Condition (serialised) selecting the rows a required_if/null_if rule applies to."""
    conditions: list[dict[str, Any]] = [
        {"type": "comparison", "column": {"name": name}, "operator": "IN", "parameter": values}
        for name, values in rule.get("when", {}).items()
    ]
    if "when_not_null" in rule:
        conditions.append(
            {"type": "nullity", "column": {"name": rule["when_not_null"]}, "is_null": False}
        )
    if not conditions:
        raise ValueError(f"row rule {rule} has no condition")
    return conditions[0] if len(conditions) == 1 else {"type": "and", "conditions": conditions}


def _describe_condition(rule: dict[str, Any]) -> str:
    when = rule.get("when", {})
    parts = [f"{name} is one of {', '.join(values)}" for name, values in when.items()]
    if "when_not_null" in rule:
        parts.append(f"{rule['when_not_null']} is present")
    return " and ".join(parts)


# --- suite parameters -----------------------------------------------------------------------


def period_parameters(period: Period) -> dict[str, str]:
    """The suite parameters of a period: its first and last day, ISO formatted."""
    return {PERIOD_START: period.start.isoformat(), PERIOD_END: period.end.isoformat()}


def birth_months(period: Period) -> list[str]:
    """Every YYYY-MM in which someone aged 0-MAX_AGE at some time in the period was born.

    Aged at most MAX_AGE on the first day of the period (born less than MAX_AGE + 1 years
    before it), and born by its last day: 1998-09 to 2025-08 for 2024-25.
    """
    first = (period.start.year - MAX_AGE - 1) * 12 + period.start.month - 1
    last = period.end.year * 12 + period.end.month - 1
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(first, last + 1)]


def volume_parameters(previous_rows: int | None) -> dict[str, int | None]:
    """Row-count bounds: 1/VOLUME_FACTOR to VOLUME_FACTOR x the previous delivery, else none."""
    if previous_rows is None:
        return {MIN_ROWS: 0, MAX_ROWS: None}
    return {MIN_ROWS: -(-previous_rows // VOLUME_FACTOR), MAX_ROWS: previous_rows * VOLUME_FACTOR}


def suite_parameters(period: Period, previous_rows: int | None = None) -> dict[str, Any]:
    """Every suite parameter's value for a validation of the period."""
    return {
        **period_parameters(period),
        BIRTH_MONTHS: birth_months(period),
        **volume_parameters(previous_rows),
    }


# --- running the suites ---------------------------------------------------------------------


def validate_frame(
    df: pd.DataFrame,
    contract_name: str,
    period: Period,
    previous_rows: int | None = None,
    *,
    docs_dir: Path | None = None,
    docs_label: str | None = None,
) -> ValidationReport:
    """Validate one pseudonymised extract (a frame in contract form) for a period.

    previous_rows: rows of the previous delivery of the same extract and area, for the volume
    check (None: first delivery, any volume). docs_dir: keep the redacted result in the GX
    context there and update its Data Docs, under the name docs_label (default: the extract).
    """
    spec = contract(contract_name)
    report, result = _validate(df, spec, period, previous_rows)
    if docs_dir is not None:
        _keep_for_docs(result, docs_dir, period, docs_label or spec.name)
    return report


def validate_file(
    path: Path,
    contract_name: str,
    period: Period,
    results_dir: Path,
    previous_rows: int | None = None,
    *,
    docs_dir: Path | None = None,
) -> ValidationReport:
    """Validate a Parquet extract; write results_dir/<extract>.json and GX's <extract>.gx.json
    (and, with docs_dir, update the Data Docs there)."""
    spec = contract(contract_name)
    report, result = _validate(pd.read_parquet(path), spec, period, previous_rows)
    report = replace(report, source=str(path))
    results_dir.mkdir(parents=True, exist_ok=True)
    _write_json(results_dir / f"{spec.name}.json", report.to_dict())
    _write_json(results_dir / f"{spec.name}.gx.json", _without_ids(result.to_json_dict()))
    if docs_dir is not None:
        _keep_for_docs(result, docs_dir, period, _docs_label(path))
    return report


def raise_for_failures(reports: Iterable[ValidationReport]) -> None:
    """Raise ValidationFailed when a batch rule failed, naming each file, rule and count.

    Row failures (quarantined) and warnings (recorded) never raise."""
    reports = list(reports)
    held = [r for r in reports if r.held]
    if not held:
        return
    head = (
        f"{len(held)} of {len(reports)} extract(s) held by a batch rule; the period is not "
        "published (row numbers are 1-based, first record = row 1):"
    )
    lines = [r.describe(r.batch_failures) for r in held]
    raise ValidationFailed("\n".join([head, *lines]), held)


def cross_extract_failures(frames: Mapping[str, pd.DataFrame]) -> list[FailedExpectation]:
    """Warn-severity checks across one area's extracts, by contract name (pandas, not GX).

    cross:census_E_has_plan: every census pupil with an EHC plan (sen_provision E) has a plan
    record in education_sen2 (assessment_outcome I or a plan_start_date) under the same
    person_token; rows are census row numbers (1-based). A pupil without a person_token is
    not reported (required:person_token quarantines the row). Skipped when either extract is
    absent.
    """
    census, sen2 = frames.get("education_census"), frames.get("education_sen2")
    if census is None or sen2 is None:
        return []
    has_plan = (sen2["assessment_outcome"] == "I") | sen2["plan_start_date"].notna()
    planned = sen2.loc[has_plan, "person_token"]
    tokens = census["person_token"]
    missing = (census["sen_provision"] == "E") & tokens.notna() & ~tokens.isin(planned)
    rows = (np.flatnonzero(missing.to_numpy()) + 1).tolist()
    if not rows:
        return []
    return [
        FailedExpectation(
            rule=CENSUS_PLAN_RULE,
            severity=WARN,
            type="cross_extract",
            columns=["sen_provision", "person_token"],
            unexpected_count=len(rows),
            rows=rows[:SAMPLE_ROWS],
            values=[],
            message=CENSUS_PLAN_MESSAGE,
        )
    ]


def build_data_docs(docs_dir: Path) -> Path:
    """Render the suite pages and the index of the Data Docs at docs_dir, listing every result
    kept there (each result's own page is rendered when it is kept); returns the index.html."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    suites = [ExpectationSuiteIdentifier(name=name) for name in sorted(contracts())]
    _docs_context(docs_dir).build_data_docs(site_names=[DOCS_SITE], resource_identifiers=suites)
    return data_docs_index(docs_dir)


def data_docs_index(docs_dir: Path) -> Path:
    """Where the index.html of the Data Docs at docs_dir is (built or not)."""
    urls = _docs_context(docs_dir).get_docs_sites_urls(site_name=DOCS_SITE, only_if_exists=False)
    return Path(unquote(urlparse(urls[0]["site_url"]).path))


def _validate(
    df: pd.DataFrame, spec: Contract, period: Period, previous_rows: int | None
) -> tuple[ValidationReport, ExpectationSuiteValidationResult]:
    """Run the committed suite; returns the report and GX's result (redacted, trimmed)."""
    frame = _numbered_rows(_dates_as_python(df, spec))
    skipped = _skipped_rules(spec, len(frame))
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    with warnings.catch_warnings():
        # GX matches regexes with str.contains, which warns about the contracts' groups.
        warnings.filterwarnings("ignore", "This pattern is interpreted as a regular expression")
        result = batch.validate(
            _committed_suite(spec.name, SETTINGS.expectations_dir, frozenset(skipped)),
            result_format=RESULT_FORMAT,
            expectation_parameters=suite_parameters(period, previous_rows),
        )
    sensitive = spec.sensitive_columns
    row_failures = _row_failures(result, frame, sensitive)
    for item in result.results:
        columns = _expectation_columns(item.expectation_config.kwargs)
        item.result = _trimmed(_redacted(dict(item.result or {}), columns, sensitive))
    outcomes = _without_ids(result.to_json_dict())
    report = ValidationReport(
        extract=spec.name,
        period=period.label,
        success=bool(outcomes["success"]),
        evaluated=int(outcomes["statistics"]["evaluated_expectations"]),
        rows=len(frame),
        failed=[_failed(r) for r in outcomes["results"] if not r["success"]],
        skipped=skipped,
        row_failures=row_failures,
    )
    return report, result


def _skipped_rules(spec: Contract, rows: int) -> list[str]:
    """Rules not checked on a frame this small (completeness needs COMPLETENESS_MIN_ROWS)."""
    if rows >= COMPLETENESS_MIN_ROWS:
        return []
    return [f"{COMPLETENESS_PREFIX}{name}" for name in identifier_completeness(spec)]


def _numbered_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The frame indexed by 1-based row number, so GX reports rows numbered from 1."""
    return df.set_axis(pd.RangeIndex(1, len(df) + 1), axis=0)


def _dates_as_python(df: pd.DataFrame, spec: Contract) -> pd.DataFrame:
    """Date columns as Python dates (as Parquet date32 reads), which GX compares with ISO dates."""
    converted = {
        c.name: df[c.name].dt.date.astype(object).where(df[c.name].notna(), None)
        for c in spec.pseudonymised_columns
        if c.type == "date" and c.name in df and pd.api.types.is_datetime64_any_dtype(df[c.name])
    }
    return df.assign(**converted) if converted else df


def _rule_columns(kwargs: Mapping[str, Any]) -> list[str]:
    """The columns of an expectation as its rule names them (a date pair: earlier first)."""
    columns = _expectation_columns(kwargs)
    return columns[::-1] if "column_A" in kwargs else columns


def _expectation_columns(kwargs: Mapping[str, Any]) -> list[str]:
    """The columns of an expectation in GX's order (that of its unexpected values)."""
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_A" in kwargs:
        return [kwargs["column_A"], kwargs["column_B"]]
    return list(kwargs.get("column_list", []))


def _row_failures(
    result: ExpectationSuiteValidationResult, frame: pd.DataFrame, sensitive: frozenset[str]
) -> pd.DataFrame:
    """Every failing row of every row-severity expectation, one row per (row, rule)."""
    parts = []
    for item in result.results:
        config = item.expectation_config
        rows = (item.result or {}).get("unexpected_index_list") or []
        if item.success or config.meta["severity"] != ROW or not rows:
            continue
        positions = np.asarray(rows, dtype=np.int64) - 1
        columns = [c for c in _rule_columns(config.kwargs) if c in frame]
        parts.append(
            pd.DataFrame(
                {
                    "position": positions,
                    "rule": config.meta["rule"],
                    "severity": ROW,
                    "column": ",".join(columns),
                    "value": _values_as_delivered(frame, positions, columns, sensitive),
                }
            )
        )
    if not parts:
        return empty_row_failures()
    return pd.concat(parts, ignore_index=True)


def _values_as_delivered(
    frame: pd.DataFrame, positions: np.ndarray, columns: list[str], sensitive: frozenset[str]
) -> list[str | None]:
    """The values at the positions as text (None when empty; sensitive ones redacted); a rule
    on several columns gives `column=value` pairs joined by '; '."""
    shown = [_as_text(frame[c].iloc[positions], c in sensitive) for c in columns]
    if len(shown) == 1:
        return shown[0]
    return [
        "; ".join(f"{c}={'' if v is None else v}" for c, v in zip(columns, row, strict=True))
        for row in zip(*shown, strict=True)
    ]


def _as_text(values: pd.Series, sensitive: bool) -> list[str | None]:
    """Values as text; whole numbers pandas holds as floats (int columns with nulls) as ints."""
    present = values.notna().to_numpy()
    if sensitive:
        return [REDACTED if p else None for p in present]
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    text = values.astype(str).tolist()
    return [t if p else None for t, p in zip(text, present, strict=True)]


def _failed(result: dict[str, Any]) -> FailedExpectation:
    """A failed GX expectation result (JSON form, already redacted) as a FailedExpectation."""
    config = result["expectation_config"]
    outcome = result.get("result") or {}
    return FailedExpectation(
        rule=config["meta"]["rule"],
        severity=config["meta"]["severity"],
        type=config["type"],
        columns=_rule_columns(config["kwargs"]),
        unexpected_count=outcome.get("unexpected_count"),
        rows=list(outcome.get("unexpected_index_list", []))[:SAMPLE_ROWS],
        values=_failing_values(config["kwargs"], outcome)[:SAMPLE_VALUES],
        error=_exception_message(result.get("exception_info") or {}),
        message=config["meta"].get("message"),
    )


def _failing_values(kwargs: Mapping[str, Any], outcome: Mapping[str, Any]) -> list[Any]:
    """What a failure shows: mismatched columns, the share present, an observed count against
    its bounds, or a sample of the unexpected values."""
    mismatched = outcome.get("details", {}).get("mismatched")
    if mismatched:
        return [f"{k}: {', '.join(v)}" for k, v in sorted(mismatched.items()) if v]
    if "mostly" in kwargs and "unexpected_percent" in outcome:
        present = 100 - outcome["unexpected_percent"]
        return [f"{present:.1f}% present, at least {kwargs['mostly']:.0%} required"]
    if "observed_value" in outcome:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        return [f"{outcome['observed_value']} (allowed {low} to {'any' if high is None else high})"]
    values = list(outcome.get("partial_unexpected_list", []))
    if "column_A" in kwargs:  # [later, earlier] pairs, shown as the rule reads
        return [{kwargs["column_B"]: b, kwargs["column_A"]: a} for a, b in values]
    return values


def _exception_message(info: dict[str, Any]) -> str | None:
    """The message of an exception GX caught while checking an expectation, if any."""
    if "raised_exception" in info:
        return info["exception_message"] if info["raised_exception"] else None
    messages = [_exception_message(v) for v in info.values() if isinstance(v, dict)]
    return "; ".join(sorted({m for m in messages if m})) or None


def _without_ids(value: Any) -> Any:
    """A GX JSON structure without the random "id" fields GX adds."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _redacted(
    outcome: dict[str, Any], columns: list[str], sensitive: frozenset[str]
) -> dict[str, Any]:
    """One expectation's GX result with every value of a sensitive column replaced."""
    for key in ("partial_unexpected_list", "unexpected_list"):
        if key in outcome:
            outcome[key] = [_redact(v, columns, sensitive) for v in outcome[key]]
    if "partial_unexpected_counts" in outcome:
        outcome["partial_unexpected_counts"] = [
            {**c, "value": _redact(c["value"], columns, sensitive)}
            for c in outcome["partial_unexpected_counts"]
        ]
    return outcome


def _redact(value: Any, columns: list[str], sensitive: frozenset[str]) -> Any:
    """One unexpected value (scalar, per-column list or column->value dict), redacted."""
    if isinstance(value, dict):
        return {k: REDACTED if k in sensitive else v for k, v in value.items()}
    if isinstance(value, list | tuple) and len(columns) > 1 and len(value) == len(columns):
        return [REDACTED if c in sensitive else v for c, v in zip(columns, value, strict=True)]
    return REDACTED if sensitive.intersection(columns) else value


def _trimmed(outcome: dict[str, Any]) -> dict[str, Any]:
    """At most KEPT_RESULT_ROWS unexpected values and row numbers (counts stay whole)."""
    for key in ("unexpected_list", "unexpected_index_list"):
        if key in outcome:
            outcome[key] = list(outcome[key])[:KEPT_RESULT_ROWS]
    return outcome


def _shown(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values[:MESSAGE_ROWS]) or "-"


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", "utf-8")


# --- Data Docs: a file-based GX context holding the redacted results -------------------------


def _keep_for_docs(
    result: ExpectationSuiteValidationResult, docs_dir: Path, period: Period, label: str
) -> None:
    """Store a redacted result in the context at docs_dir and render its page (the index is
    rendered once per run, by build_data_docs: it reads every kept result)."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _docs_context(docs_dir)
    result = copy.deepcopy(result)
    for item in result.results:
        item.result = _html_escaped(item.result)
    suite = ExpectationSuiteIdentifier(name=result.suite_name)
    key = ValidationResultIdentifier(
        expectation_suite_identifier=suite,
        run_id=RunIdentifier(run_name=period.label, run_time=datetime.now(UTC)),
        batch_identifier=re.sub(r"[^A-Za-z0-9_.-]", "_", label),
    )
    context.validation_results_store.store_validation_results(result, key, suite)
    context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[key], build_index=False)


def _html_escaped(value: Any) -> Any:
    """Every string in a GX result HTML-escaped: Data Docs render values unescaped, so a
    delivered value (or column name) could otherwise inject markup into the site."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {k: _html_escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_html_escaped(v) for v in value]
    return value


def _docs_label(path: Path) -> str:
    """A Data Docs name for a validated file: its two parent folders and its name."""
    return "_".join([*path.parent.parts[-2:], path.stem])


@cache
def _docs_context(docs_dir: Path) -> FileDataContext:
    """The file-based GX context at docs_dir (scaffolded on first use), holding copies of the
    committed suites; Great Expectations never writes to expectations/."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", context_root_dir=str(docs_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for name in sorted(contracts()):
        context.suites.add_or_update(_suite_from_file(name, SETTINGS.expectations_dir))
    return context


# --- Great Expectations, imported lazily and set up once per process -----------------------


def _import_gx() -> Any:
    """Import GX with its info-level logging (a flood under Airflow's structlog) silenced."""
    _quiet_gx_loggers()
    import great_expectations as gx

    _quiet_gx_loggers()  # some GX modules set their own logger to INFO when imported
    return gx


def _quiet_gx_loggers() -> None:
    names = ["great_expectations", *logging.root.manager.loggerDict]
    for name in names:
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)


@cache
def _batch_definition() -> BatchDefinition:
    """A whole-dataframe batch definition in an ephemeral context, shared by every call."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("joinedup").add_dataframe_asset("extract")
    return asset.add_batch_definition_whole_dataframe("whole extract")


@cache
def _committed_suite(
    name: str, expectations_dir: Path, without: frozenset[str] = frozenset()
) -> ExpectationSuite:
    """The committed suite of an extract, less the rules `without`, loaded into GX."""
    return _suite_from_file(name, expectations_dir, without)


def _suite_from_file(
    name: str, expectations_dir: Path, without: frozenset[str] = frozenset()
) -> ExpectationSuite:
    """A new GX suite from a committed suite file; refuses one GX cannot fully read."""
    gx = _import_gx()
    path = expectations_dir / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m joinedup.validate`")
    spec = json.loads(path.read_text(encoding="utf-8"))
    kept = [e for e in spec["expectations"] if e["meta"]["rule"] not in without]
    suite = gx.ExpectationSuite(name=spec["name"], expectations=kept, meta=spec["meta"])
    if len(suite.expectations) != len(kept):
        raise ValueError(f"{path}: GX could not load every expectation")
    return suite


if __name__ == "__main__":
    for written in write_suites():
        print(written)
