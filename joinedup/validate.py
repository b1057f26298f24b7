"""Validate: check each pseudonymised extract against its Great Expectations suite.

The suites are generated from the contracts (`build_suite`) and committed as
`expectations/<extract>.json` (`write_suites`, or `python -m joinedup.validate`); validation runs
the committed suite, and a test keeps the two equal. Great Expectations 1.x runs on a pandas
frame through an ephemeral context, imported lazily because importing it takes seconds.

Row numbers in reports are 1-based positions in the delivered file, header not counted: row 1
is the first record (in a CSV delivery, row n is line n + 1). Values of token and Bloom-filter
columns never appear in a report or in the kept GX result: they are replaced by `<redacted>`.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from joinedup.contracts import Column, Contract, Period, codes, contract, contracts
from joinedup.settings import Settings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.batch_definition import BatchDefinition

SETTINGS = Settings.from_env()
ROW = "row"
BATCH = "batch"
TOKEN_REGEX = "^[0-9a-f]{64}$"
PERIOD_START = "period_start"
PERIOD_END = "period_end"
REDACTED = "<redacted>"
SAMPLE_ROWS = 10
SAMPLE_VALUES = 5
MESSAGE_ROWS = 5
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": SAMPLE_VALUES,
    "return_unexpected_index_query": False,
}


class ValidationFailed(Exception):
    """One or more extracts did not meet their expectations."""

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

    def describe(self) -> str:
        """One line naming the rule, how many rows failed and the first few row numbers."""
        if self.error:
            return f"{self.rule} [{self.severity}]: could not be checked: {self.error}"
        if self.unexpected_count is None:
            return f"{self.rule} [{self.severity}]: failed ({_shown(self.values)})"
        rows = ", ".join(str(r) for r in self.rows[:MESSAGE_ROWS])
        more = ", ..." if self.unexpected_count > MESSAGE_ROWS else ""
        line = f"{self.rule} [{self.severity}]: {self.unexpected_count} failing row(s)"
        return f"{line}, rows {rows}{more}; values {_shown(self.values)}"


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one extract for one period."""

    extract: str
    period: str
    success: bool
    evaluated: int
    rows: int
    failed: list[FailedExpectation] = field(default_factory=list)
    source: str | None = None

    def describe(self) -> str:
        """A multi-line account of the failures, naming the file and each broken rule."""
        where = self.source or "<dataframe>"
        head = (
            f"{where} ({self.extract}, period {self.period}, {self.rows} rows): "
            f"{len(self.failed)} of {self.evaluated} expectations failed"
        )
        return "\n".join([head, *(f"  - {f.describe()}" for f in self.failed)])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- suites, generated from the contracts -------------------------------------------------


def build_suite(contract: Contract) -> dict[str, Any]:
    """The GX expectation suite of a contract, as a plain JSON-able dict without random ids."""
    expectations = [
        _columns_match(contract),
        *(e for col in contract.pseudonymised_columns for e in _column_expectations(col)),
        _key_unique(contract),
        *(e for rule in contract.date_rules for e in _date_rule_expectations(rule)),
        *(_row_rule_expectation(rule) for rule in contract.row_rules),
    ]
    return {
        "name": contract.name,
        "meta": {
            "generated_by": "joinedup.validate.write_suites",
            "contract": f"schemas/{contract.name}.json",
            "suite_parameters": [PERIOD_START, PERIOD_END],
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


def _expectation(
    type_: str, rule: str, severity: str, description: str, **kwargs: Any
) -> dict[str, Any]:
    return {
        "type": type_,
        "kwargs": kwargs,
        "meta": {"rule": rule, "severity": severity, "description": description},
    }


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
    rule = "key:" + ",".join(contract.key)
    description = f"No two rows share the key ({', '.join(contract.key)})."
    if len(contract.key) == 1:
        return _expectation(
            "expect_column_values_to_be_unique", rule, BATCH, description, column=contract.key[0]
        )
    return _expectation(
        "expect_compound_columns_to_be_unique",
        rule,
        BATCH,
        description,
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
                column_A=later,
                column_B=earlier,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
    elif kind == "not_after_period_end":
        yield _expectation(
            "expect_column_values_to_be_between",
            f"not_after_period_end:{rule['column']}",
            ROW,
            f"{rule['column']} is not after the end of the period.",
            column=rule["column"],
            max_value={"$PARAMETER": PERIOD_END},
        )
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


# --- running the suites ---------------------------------------------------------------------


def validate_frame(df: pd.DataFrame, contract_name: str, period: Period) -> ValidationReport:
    """Validate one pseudonymised extract (a frame in contract form) for a period."""
    report, _ = _validate(df, contract(contract_name), period)
    return report


def validate_file(
    path: Path, contract_name: str, period: Period, results_dir: Path
) -> ValidationReport:
    """Validate a Parquet extract; write results_dir/<extract>.json and GX's <extract>.gx.json."""
    spec = contract(contract_name)
    report, gx_result = _validate(pd.read_parquet(path), spec, period)
    report = replace(report, source=str(path))
    results_dir.mkdir(parents=True, exist_ok=True)
    _write_json(results_dir / f"{spec.name}.json", report.to_dict())
    _write_json(results_dir / f"{spec.name}.gx.json", gx_result)
    return report


def raise_for_failures(reports: Iterable[ValidationReport]) -> None:
    """Raise ValidationFailed naming every file, rule, failing-row count and first rows."""
    reports = list(reports)
    failures = [r for r in reports if not r.success]
    if not failures:
        return
    head = (
        f"{len(failures)} of {len(reports)} extract(s) failed validation "
        "(row numbers are 1-based, first record = row 1):"
    )
    raise ValidationFailed("\n".join([head, *(r.describe() for r in failures)]), failures)


def period_parameters(period: Period) -> dict[str, str]:
    """The suite parameters of a period: its first and last day, ISO formatted."""
    return {PERIOD_START: period.start.isoformat(), PERIOD_END: period.end.isoformat()}


def _validate(
    df: pd.DataFrame, spec: Contract, period: Period
) -> tuple[ValidationReport, dict[str, Any]]:
    """Run the committed suite; returns the report and GX's result (ids stripped, redacted)."""
    frame = _numbered_rows(_dates_as_python(df, spec))
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    with warnings.catch_warnings():
        # GX matches regexes with str.contains, which warns about the contracts' groups.
        warnings.filterwarnings("ignore", "This pattern is interpreted as a regular expression")
        result = batch.validate(
            _committed_suite(spec.name, SETTINGS.expectations_dir),
            result_format=RESULT_FORMAT,
            expectation_parameters=period_parameters(period),
        )
    gx_result = _redacted(_without_ids(result.to_json_dict()), _sensitive_columns(spec))
    report = ValidationReport(
        extract=spec.name,
        period=period.label,
        success=bool(gx_result["success"]),
        evaluated=int(gx_result["statistics"]["evaluated_expectations"]),
        rows=len(frame),
        failed=[_failed(r) for r in gx_result["results"] if not r["success"]],
    )
    return report, gx_result


def _numbered_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The frame indexed by 1-based row number, so GX reports rows as the file numbers them."""
    return df.set_axis(pd.RangeIndex(1, len(df) + 1), axis=0)


def _dates_as_python(df: pd.DataFrame, spec: Contract) -> pd.DataFrame:
    """Date columns as Python dates (as Parquet date32 reads), which GX compares with ISO dates."""
    converted = {
        c.name: df[c.name].dt.date.astype(object).where(df[c.name].notna(), None)
        for c in spec.pseudonymised_columns
        if c.type == "date" and c.name in df and pd.api.types.is_datetime64_any_dtype(df[c.name])
    }
    return df.assign(**converted) if converted else df


def _sensitive_columns(spec: Contract) -> frozenset[str]:
    """Columns whose values must never be shown: keyed tokens and Bloom filters."""
    return frozenset(c.name for c in spec.pseudonymised_columns if c.token or c.encoding)


def _expectation_columns(kwargs: dict[str, Any]) -> list[str]:
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_A" in kwargs:
        return [kwargs["column_A"], kwargs["column_B"]]
    return list(kwargs.get("column_list", []))


def _failed(result: dict[str, Any]) -> FailedExpectation:
    """A failed GX expectation result (JSON form, already redacted) as a FailedExpectation."""
    config = result["expectation_config"]
    outcome = result.get("result") or {}
    mismatched = outcome.get("details", {}).get("mismatched")
    values = (
        [f"{k}: {', '.join(v)}" for k, v in sorted(mismatched.items()) if v]
        if mismatched
        else outcome.get("partial_unexpected_list", [])
    )
    return FailedExpectation(
        rule=config["meta"]["rule"],
        severity=config["meta"]["severity"],
        type=config["type"],
        columns=_expectation_columns(config["kwargs"]),
        unexpected_count=outcome.get("unexpected_count"),
        rows=list(outcome.get("unexpected_index_list", []))[:SAMPLE_ROWS],
        values=list(values)[:SAMPLE_VALUES],
        error=_exception_message(result.get("exception_info") or {}),
    )


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


def _redacted(gx_result: dict[str, Any], sensitive: frozenset[str]) -> dict[str, Any]:
    """GX's suite result with every value of a sensitive column replaced by REDACTED."""
    results = []
    for result in gx_result["results"]:
        columns = _expectation_columns(result["expectation_config"]["kwargs"])
        outcome = dict(result.get("result") or {})
        for key in ("partial_unexpected_list", "unexpected_list"):
            if key in outcome:
                outcome[key] = [_redact(v, columns, sensitive) for v in outcome[key]]
        if "partial_unexpected_counts" in outcome:
            outcome["partial_unexpected_counts"] = [
                {**c, "value": _redact(c["value"], columns, sensitive)}
                for c in outcome["partial_unexpected_counts"]
            ]
        results.append({**result, "result": outcome})
    return {**gx_result, "results": results}


def _redact(value: Any, columns: list[str], sensitive: frozenset[str]) -> Any:
    """One unexpected value (scalar, per-column list or column->value dict), redacted."""
    if isinstance(value, dict):
        return {k: REDACTED if k in sensitive else v for k, v in value.items()}
    if isinstance(value, list) and len(columns) > 1 and len(value) == len(columns):
        return [REDACTED if c in sensitive else v for c, v in zip(columns, value, strict=True)]
    return REDACTED if sensitive.intersection(columns) else value


def _shown(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values[:MESSAGE_ROWS]) or "-"


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", "utf-8")


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
def _committed_suite(name: str, expectations_dir: Path) -> ExpectationSuite:
    """The committed suite of an extract, loaded into GX; refuses one GX cannot fully read."""
    gx = _import_gx()
    path = expectations_dir / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m joinedup.validate`")
    spec = json.loads(path.read_text(encoding="utf-8"))
    suite = gx.ExpectationSuite(
        name=spec["name"], expectations=spec["expectations"], meta=spec["meta"]
    )
    if len(suite.expectations) != len(spec["expectations"]):
        raise ValueError(f"{path}: GX could not load every expectation")
    return suite


if __name__ == "__main__":
    for written in write_suites():
        print(written)
