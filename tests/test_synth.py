"""The synthetic areas: contract-conformant extracts, seeded, calibrated, with a usable truth."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from joinedup import synth
from joinedup.contracts import (
    Contract,
    Period,
    agency_contracts,
    code_lists,
    contracts,
    identity_columns,
)
from joinedup.pseudonymise import (
    ROW_COLUMN,
    is_valid_nhs_number,
    is_valid_upn,
    nickname_table,
    pseudonymise_tree,
    read_delimited_text,
)
from joinedup.settings import AGENCIES, Settings
from tests.groundtruth import read_good_rows

PERIOD = "2024-25"
TERM = Period(PERIOD)
SMALL_SCALE = 0.15
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$")


def _generate(
    root: Path,
    seed: int = 20241,
    scale: float = SMALL_SCALE,
    bad_row_rate: float = synth.BAD_ROW_RATE,
) -> synth.SynthSummary:
    settings = replace(Settings(), data_dir=root)
    return synth.generate(settings, PERIOD, seed=seed, scale=scale, bad_row_rate=bad_row_rate)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    root = tmp_path_factory.mktemp("synth_small")
    return root, _generate(root)


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    """The small areas with ten times the bad rows, so that every kind occurs."""
    root = tmp_path_factory.mktemp("synth_messy")
    return root, _generate(root, bad_row_rate=10 * synth.BAD_ROW_RATE)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    """The default size (scale 1.0, ~11,000 pupils): the sample calibration is checked on."""
    root = tmp_path_factory.mktemp("synth_full")
    return root, _generate(root, scale=1.0)


def _bad_rows(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "truth" / PERIOD / "bad_rows.parquet")


def _read(path: Path) -> list[dict[str, str]]:
    """The good rows of one raw extract file, all columns as text ('' for null), dates ISO."""
    root = path.parents[4]
    return read_good_rows(path, _bad_rows(root)).fillna("").to_dict("records")


def _extract(root: Path, name: str) -> pd.DataFrame:
    """The good rows of one extract of every area, all columns as text ('' for null), ISO dates."""
    agency = contracts()[name].agency
    paths = sorted((root / "raw" / agency / PERIOD).glob(f"*/{name}.csv"))
    bad = _bad_rows(root)
    return pd.concat([read_good_rows(p, bad).fillna("") for p in paths], ignore_index=True)


def _truth(root: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(root / "truth" / PERIOD / f"{name}.parquet")


def _with_truth(root: Path, name: str) -> pd.DataFrame:
    """An extract joined to the true child behind each row (columns of the truth get '_true')."""
    records = _truth(root, "records")
    frame = _extract(root, name).merge(
        records[records["agency"] == contracts()[name].agency][["local_id", "true_id", "noise"]],
        on="local_id",
        validate="many_to_one",
    )
    return frame.merge(_truth(root, "children"), on="true_id", suffixes=("", "_true"))


# --- Contracts ---------------------------------------------------------------------------------
def _value_errors(contract: Contract, row: dict[str, str]) -> list[str]:
    """Type, code list, pattern and range errors of one CSV row."""
    lists = code_lists()
    errors = []
    for col in contract.raw_columns:
        value = row[col.name]
        if value == "":
            if col.required:
                errors.append(f"{col.name} is required")
            continue
        if col.type == "date":
            when = date.fromisoformat(value)
            if when > TERM.end:
                errors.append(f"{col.name} {value} after the period end")
        elif col.type == "bool" and value not in ("true", "false"):
            errors.append(f"{col.name} {value!r} is not true/false")
        elif col.type == "int32":
            number = int(value)
            if (col.min is not None and number < col.min) or (
                col.max is not None and number > col.max
            ):
                errors.append(f"{col.name} {number} out of range")
        if col.codes:
            parts = value.split(col.multi) if col.multi else [value]
            errors += [
                f"{col.name} {p!r} not in {col.codes}" for p in parts if p not in lists[col.codes]
            ]
        if col.pattern and not re.fullmatch(col.pattern, value):
            errors.append(f"{col.name} {value!r} does not match {col.pattern}")
    return errors


def _rule_errors(contract: Contract, row: dict[str, str]) -> list[str]:
    """Row and date rule errors of one CSV row."""
    errors = []
    for rule in contract.row_rules:
        column = rule.get("column")
        if "when" in rule:
            applies = all(row[k] in v for k, v in rule["when"].items())
        else:
            applies = row.get(rule.get("when_not_null", ""), "") != ""
        if rule["rule"] == "required_if" and applies and row[column] == "":
            errors.append(f"{column} required by {rule}")
        if rule["rule"] == "null_if" and applies and row[column] != "":
            errors.append(f"{column} must be null by {rule}")
        over = rule["rule"] == "sum_not_above" and sum(int(row[c]) for c in rule["columns"]) > int(
            row[rule["limit"]]
        )
        if over:
            errors.append(f"{rule['columns']} above {rule['limit']}")
    for rule in contract.date_rules:
        if rule["rule"] == "in_period":
            when = date.fromisoformat(row[rule["column"]])
            if not TERM.start <= when <= TERM.end:
                errors.append(f"{rule['column']} outside the period")
        if rule["rule"] == "order":
            dates = [row[c] for c in rule["columns"] if row[c] != ""]
            if dates != sorted(dates):
                errors.append(f"{rule['columns']} out of order: {dates}")
    return errors


def test_every_contract_has_a_nonempty_extract_per_area_with_exact_columns(small):
    """Columns exactly the contract's; the summary counts every data row written, bad ones
    (and a repeated header) included."""
    root, summary = small
    for name, contract in contracts().items():
        for area in synth.AREAS:
            path = root / "raw" / contract.agency / PERIOD / area.la_code / f"{name}.csv"
            text = read_delimited_text(path)
            header = [n for n in text.table.column_names if n != ROW_COLUMN]
            assert header == [c.name for c in contract.raw_columns], path
            assert summary.rows[name][area.la_code] == text.rows_delivered > 0, path


def test_every_row_conforms_to_its_contract(full):
    """Types, code lists, patterns, ranges, required columns, row rules and date rules."""
    root, _ = full
    for name, contract in contracts().items():
        for path in sorted((root / "raw" / contract.agency / PERIOD).glob(f"*/{name}.csv")):
            for row in _read(path):
                errors = _value_errors(contract, row) + _rule_errors(contract, row)
                assert not errors, (path, row, errors)
                assert row["la_code"] == path.parent.name


def test_permanent_exclusions_have_no_reinstatement_and_suspensions_have_sessions(full):
    exclusions = _extract(full[0], "education_exclusions")
    permanent = exclusions[exclusions["category"] == "PERM"]
    suspended = exclusions[exclusions["category"] != "PERM"]
    assert len(permanent) > 0 and set(suspended["category"]) == {"SUSP", "LNCH"}
    assert (permanent["reinstatement_date"] == "").all()
    assert (suspended["sessions"] != "").all()
    assert (suspended["reinstatement_date"] != "").mean() > 0.8


def test_postcodes_are_valid_uk_format_in_the_areas_own_districts(small):
    root, _ = small
    children = _truth(root, "children")
    for area in synth.AREAS:
        postcodes = children.loc[children["la_code"] == area.la_code, "postcode"]
        assert postcodes.str.match(POSTCODE.pattern).all()
        assert postcodes.str.split(" ").str[0].isin(area.districts).all()
    census = _extract(root, "education_census")
    recorded = census.loc[census["postcode"] != "", "postcode"]
    assert recorded.str.match(POSTCODE.pattern).all()
    shared = children.groupby("postcode")["household_id"].nunique()
    assert (shared > 1).any(), "some households share a postcode"


# --- Export styles -------------------------------------------------------------------------------
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
UK_DATE = re.compile(r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$")
EXPECTED_STYLES = {  # agency -> (starts with a BOM, delimiter, CRLF line ends, date pattern)
    "education": (True, ",", False, ISO_DATE),
    "health": (False, ",", False, UK_DATE),
    "care": (False, ";", True, UK_DATE),
}


def test_each_agency_exports_in_its_own_style(small):
    """Education: UTF-8 with BOM, commas, ISO dates; health: UTF-8, commas, UK dates; care:
    Windows-1252, semicolons, CRLF, UK dates."""
    root, _ = small
    bad = _bad_rows(root)
    for name, contract in contracts().items():
        bom, delimiter, crlf, pattern = EXPECTED_STYLES[contract.agency]
        for area in synth.AREAS:
            path = root / "raw" / contract.agency / PERIOD / area.la_code / f"{name}.csv"
            data = path.read_bytes()
            assert data.startswith(b"\xef\xbb\xbf") == bom, path
            assert data.count(b"\r\n") == (data.count(b"\n") if crlf else 0), path
            if contract.agency == "care":
                data.decode("cp1252")
            else:
                data.decode("utf-8")
            assert read_delimited_text(path).text_format.delimiter == delimiter, path
            frame = read_delimited_text(path).table.to_pandas()
            frame = frame[~frame[ROW_COLUMN].isin(bad.loc[bad.extract == name, "row"])]
            for column in (c.name for c in contract.raw_columns if c.type == "date"):
                dates = frame[column].dropna()
                assert dates.str.match(pattern.pattern).all(), (path, column)


def test_care_writes_accented_names_in_windows_1252_and_folds_the_rest(tmp_path):
    """Zoë, Chloé, José are written as Windows-1252 bytes; letters it cannot hold (ś, Ł) lose
    their accents as Windows' best-fit mapping does."""
    spec = contracts()["care_lac"]
    names = ["Zoë", "Chloé", "José", "Łukasz"]
    surnames = ["Wiśniewski", "Dąbrowski", "Núñez", "Smith"]
    lines = [
        synth.Line([f if c.name == "forename" else s if c.name == "surname" else "x"
                    for c in spec.raw_columns], None)
        for f, s in zip(names, surnames, strict=True)
    ]  # fmt: skip
    path = tmp_path / "care_lac.csv"
    synth.write_export(path, spec, lines, synth.EXPORT_STYLES["care"])
    data = path.read_bytes()
    for written in (b"Zo\xeb", b"Chlo\xe9", b"Jos\xe9", b"N\xfa\xf1ez", b"Wisniewski", b"Lukasz"):
        assert written in data
    text = read_delimited_text(path)
    assert text.text_format.encoding == "cp1252"
    assert text.table.column("forename").to_pylist() == ["Zoë", "Chloé", "José", "Lukasz"]
    assert text.table.column("surname").to_pylist() == ["Wisniewski", "Dabrowski", "Núñez", "Smith"]


def test_accented_names_reach_the_windows_1252_care_exports(full):
    """At the default size some care export holds a name with an accent: not valid UTF-8."""
    root, _ = full
    encodings = {
        read_delimited_text(path).text_format.encoding
        for path in (root / "raw" / "care" / PERIOD).glob("*/*.csv")
    }
    assert "cp1252" in encodings


# --- Bad rows ------------------------------------------------------------------------------------
def _date(text: str) -> date | None:
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _raw_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a raw export, read with the csv module and the agency's known
    encoding and delimiter (independently of joinedup's reader)."""
    agency = path.parts[-4]
    encoding = {"education": "utf-8-sig", "health": "utf-8", "care": "cp1252"}[agency]
    delimiter = ";" if agency == "care" else ","
    with path.open(encoding=encoding, newline="") as handle:
        header, *rows = list(csv.reader(handle, delimiter=delimiter))
    return header, rows


def _kind_holds(
    kind: str, spec: Contract, header: list[str], row: list[str], column: str | None
) -> bool:
    """Whether a raw row shows the error its bad-row kind names."""
    value = dict(zip(header, row, strict=False))
    lists = code_lists()
    if kind == "code_not_in_list":
        return value[column] not in lists[spec.column(column).codes]
    if kind in ("missing_required", "sen_without_primary_need", "missing_local_id"):
        required = kind != "missing_required" or spec.column(column).required
        sen = kind != "sen_without_primary_need" or value["sen_provision"] in ("K", "E")
        return value[column] == "" and required and sen
    if kind == "unparseable_date":
        return value[column] != "" and _date(value[column]) is None
    if kind == "non_numeric_integer":
        return not value[column].lstrip("-").isdigit()
    if kind == "date_order":
        rules = [r["columns"] for r in spec.date_rules if r["rule"] == "order"]
        earlier = [c for cols in rules if column in cols for c in cols[: cols.index(column)]]
        return any(_date(value[c]) and _date(value[c]) > _date(value[column]) for c in earlier)
    if kind == "after_period_end":
        return _date(value[column]) > TERM.end
    if kind == "perm_with_reinstatement":
        return value["category"] == "PERM" and value["reinstatement_date"] != ""
    if kind == "absence_exceeds_possible":
        absent = int(value["sessions_authorised"]) + int(value["sessions_unauthorised"])
        return absent > int(value["sessions_possible"])
    if kind == "bad_dob":
        return _date(value["dob"]) is None
    if kind == "invalid_sex":
        return value["sex"] not in lists["sex"]
    if kind == "ragged_row":
        return len(row) == len(header) + 1
    if kind == "duplicate_header":
        return row == header
    return kind == "duplicate_row"


def test_every_kind_of_bad_row_occurs(messy):
    bad = _bad_rows(messy[0])
    assert set(bad["kind"]) == set(synth.BAD_ROW_KINDS)
    header = bad[bad["kind"] == "duplicate_header"]
    assert len(header) == 1
    assert header.iloc[0][["la_code", "extract"]].tolist() == [
        synth.AREAS[0].la_code,
        synth.DUPLICATE_HEADER_EXTRACT,
    ]


def test_bad_rows_in_the_truth_are_what_the_files_hold(messy):
    """Each listed row (1-based data row) shows its kind's error, with the listed value; every
    other row has the header's field count, and joinedup's reader reports exactly the listed
    ragged rows and repeated header."""
    root, summary = messy
    bad = _bad_rows(root)
    for name, spec in contracts().items():
        for area in synth.AREAS:
            path = root / "raw" / spec.agency / PERIOD / area.la_code / f"{name}.csv"
            header, rows = _raw_rows(path)
            listed = bad[(bad["extract"] == name) & (bad["la_code"] == area.la_code)]
            assert summary.bad_rows[name][area.la_code] == len(listed)
            for entry in listed.itertuples():
                row = rows[entry.row - 1]
                assert _kind_holds(entry.kind, spec, header, row, entry.column), (path, entry)
                if entry.column is not None:
                    assert (row[header.index(entry.column)] or None) == entry.value, entry
                if entry.kind == "duplicate_row":
                    pair = listed[(listed["kind"] == "duplicate_row")]
                    neighbours = {entry.row - 1, entry.row + 1} & set(pair["row"])
                    assert any(rows[n - 1] == row for n in neighbours), (path, entry)
            unlisted = set(range(1, len(rows) + 1)) - set(listed["row"])
            assert all(len(rows[i - 1]) == len(header) != rows[i - 1] for i in unlisted)
            structural = {"ragged_row": "field_count", "duplicate_header": "duplicate_header"}
            expected = {
                (e.row, structural[e.kind]) for e in listed.itertuples() if e.kind in structural
            }
            found = {(p.row, p.rule) for p in read_delimited_text(path).problems}
            assert found == expected, path


def test_a_bad_row_never_takes_a_childs_last_good_record_in_its_agency(messy):
    root, _ = messy
    bad = _bad_rows(root)
    for agency in AGENCIES:
        good = set().union(
            *(set(_extract(root, c.name)["local_id"]) for c in agency_contracts(agency))
        )
        made_bad = bad[(bad["agency"] == agency) & bad["local_id"].notna()]
        assert made_bad["local_id"].isin(good).all(), agency


def test_plan_records_are_never_made_bad(messy):
    """The census-E-implies-a-plan-record rule depends on SEN2's issued plans."""
    root, _ = messy
    bad = _bad_rows(root)
    for area in synth.AREAS:
        path = root / "raw" / "education" / PERIOD / area.la_code / "education_sen2.csv"
        header, rows = _raw_rows(path)
        listed = bad[(bad["extract"] == "education_sen2") & (bad["la_code"] == area.la_code)]
        outcome = header.index("assessment_outcome")
        assert all(rows[r - 1][outcome] != "I" for r in listed["row"])


def test_bad_rows_follow_the_documented_rate(full):
    """Each extract of at least MIN_ROWS_FOR_BAD_ROWS rows has round(BAD_ROW_RATE x rows) bad
    records (at least one); a duplicated row counts once, and its copy is not a row of the
    export's records."""
    root, summary = full
    bad = _bad_rows(root)
    for name in contracts():
        for area in synth.AREAS:
            listed = bad[(bad["extract"] == name) & (bad["la_code"] == area.la_code)]
            copies = (listed["kind"] == "duplicate_row").sum() // 2
            added = copies + (listed["kind"] == "duplicate_header").sum()
            records = summary.rows[name][area.la_code] - added
            made_bad = len(listed) - added
            expected = (
                0
                if records < synth.MIN_ROWS_FOR_BAD_ROWS
                else max(1, round(synth.BAD_ROW_RATE * records))
            )
            assert made_bad == expected, (name, area.la_code, made_bad, records)


def test_no_bad_rows_when_the_rate_is_zero(tmp_path):
    summary = _generate(tmp_path, scale=0.05, bad_row_rate=0.0)
    assert len(_bad_rows(tmp_path)) == 0
    assert not any(n for by_area in summary.bad_rows.values() for n in by_area.values())
    for path in (tmp_path / "raw").glob(f"*/{PERIOD}/*/*.csv"):
        text = read_delimited_text(path)
        assert (
            not text.problems and text.rows_delivered == summary.rows[path.stem][path.parent.name]
        )


def test_pseudonymised_bad_rows_are_at_their_landed_row(messy, tmp_path):
    """Pseudonymised at source (health landing as CSV), each bad row that is not left out sits
    at its truth landed_row with its bad value (dates in ISO, identity as null tokens), and the
    source report lists exactly the rows left out."""
    root, _ = messy
    pseudonymise_tree(root / "raw", tmp_path, b"k" * 32, synth.LANDING_FORMATS)
    bad = _bad_rows(root)
    for (agency, la_code, name), listed in bad.groupby(["agency", "la_code", "extract"]):
        suffix = ".csv" if synth.LANDING_FORMATS[agency] == "csv" else ".parquet"
        path = tmp_path / agency / PERIOD / la_code / f"{name}{suffix}"
        landed = read_delimited_text(path).table if suffix == ".csv" else pq.read_table(path)
        report = json.loads((path.parent / f"{name}.source.json").read_text())
        left_out = listed[listed["landed_row"].isna()]
        assert report["rows_in"] - report["rows_out"] == len(left_out)
        assert [p["row"] for p in report["problems"]] == sorted(left_out["row"])
        for entry in listed[listed["landed_row"].notna()].itertuples():
            row = landed.slice(int(entry.landed_row) - 1, 1).to_pylist()[0]
            if entry.column == "local_id":
                assert row["person_token"] is None
            elif entry.column == "dob":
                assert row["birth_ym"] is None and row["dob_token"] is None
            elif entry.column is not None:
                expected = entry.value
                day = _date(expected) if expected else None
                assert row[entry.column] == (day.isoformat() if day else expected), entry


# --- SEN2 holds every plan ---------------------------------------------------------------------
def test_every_census_pupil_with_an_ehc_plan_has_a_plan_record_in_sen2(full):
    """SEN2 is person level: each census E pupil has an issued plan starting by the period end;
    plans held from before the request flow started before the period, so they are not
    counted as plans issued in it."""
    root, _ = full
    census = _extract(root, "education_census")
    sen2 = _with_truth(root, "education_sen2")
    plans = sen2[sen2["assessment_outcome"] == "I"]
    pupils = census.loc[census["sen_provision"] == "E", "local_id"]
    assert pupils.isin(plans["local_id"]).all()
    assert (plans["plan_start_date"] <= TERM.end.isoformat()).all()
    standing = plans[plans["plan_start_date"] < (TERM.start - timedelta(days=365)).isoformat()]
    assert len(standing) > 0.5 * len(pupils)
    assert (standing["on_census"] & (standing["sen_provision"] == "E")).all()


# --- Determinism ---------------------------------------------------------------------------------
def test_same_seed_writes_identical_bytes_and_another_seed_differs(small, tmp_path):
    root, summary = small
    again = _generate(tmp_path / "again")
    other = _generate(tmp_path / "other", seed=7)
    assert len(again.paths) == len(summary.paths) == len(contracts()) * len(synth.AREAS) + 3
    for first, second in zip(summary.paths, again.paths, strict=True):
        assert first.relative_to(root) == second.relative_to(tmp_path / "again")
        assert first.read_bytes() == second.read_bytes(), first
    census = [p for p in summary.paths if p.name == "education_census.csv"][0]
    assert census.read_bytes() != (tmp_path / "other" / census.relative_to(root)).read_bytes()
    assert other.children == summary.children


def test_scale_multiplies_the_area_sizes():
    assert synth.area_sizes(1.0) == [8000, 10000, 4000]
    assert synth.area_sizes(0.5) == [4000, 5000, 2000]
    with pytest.raises(ValueError):
        synth.area_sizes(0)


# --- Truth ---------------------------------------------------------------------------------------
def test_truth_records_map_every_local_id_and_no_extract_holds_a_true_id(small):
    root, _ = small
    records = _truth(root, "records")
    children = _truth(root, "children")
    assert not records.duplicated(["agency", "local_id"]).any()
    assert records["true_id"].isin(children["true_id"]).all()
    per_child = records.groupby(["agency", "true_id"]).size()
    assert per_child.max() <= 2, "at most two records per child per agency"
    second = records["noise"].str.contains("duplicate_record")
    assert not records[~second].duplicated(["agency", "true_id"]).any(), "one first record each"
    true_ids = set(children["true_id"])
    for agency in AGENCIES:
        seen: set[str] = set()
        for contract in agency_contracts(agency):
            frame = _extract(root, contract.name)
            seen |= set(frame["local_id"])
            cells = set(np.unique(frame.to_numpy().astype(str)))
            assert not cells & true_ids, f"{contract.name} leaks true ids"
        assert seen == set(records.loc[records["agency"] == agency, "local_id"]), agency


def test_a_childs_identity_is_the_same_in_all_extracts_of_one_agency(small):
    root, _ = small
    for agency in AGENCIES:
        extracts = agency_contracts(agency)
        columns = list(extracts[0].identity)
        stacked = pd.concat([_extract(root, c.name)[columns] for c in extracts])
        assert len(stacked["local_id"].unique()) == len(stacked.drop_duplicates()), agency


def test_records_without_noise_carry_the_true_identity(small):
    root, _ = small
    for name in ("education_census", "health_referrals", "care_cin"):
        frame = _with_truth(root, name)
        clean = frame[frame["noise"] == ""]
        # enough clean records to compare (in care, with its missing numbers, about half)
        assert len(clean) >= 20, (name, len(clean), len(frame))
        encoding = synth.EXPORT_STYLES[contracts()[name].agency].encoding
        for column in ("forename", "surname", "sex", "postcode", "address", "ethnicity"):
            true = (
                clean[f"{column}_true"]
                .fillna("")
                .map(partial(synth.representable, encoding=encoding))
            )
            assert (clean[column] == true).all(), (name, column)
        assert (clean["dob"] == clean["dob_true"].astype(str)).all(), name
        for column in ("nhs_number", "upn"):
            if column in contracts()[name].identity:
                assert (clean[column] == clean[f"{column}_true"].fillna("")).all(), (name, column)


def test_identifiers_are_valid_unless_marked_invalid_in_the_truth(small):
    root, _ = small
    children = _truth(root, "children")
    assert children["nhs_number"].map(is_valid_nhs_number).all()
    assert children["nhs_number"].is_unique
    upns = children["upn"].dropna()
    assert upns.map(is_valid_upn).all() and upns.is_unique
    assert children.loc[children["age"] >= 4, "upn"].notna().all()
    for name, column, check in (
        ("health_referrals", "nhs_number", is_valid_nhs_number),
        ("care_cin", "nhs_number", is_valid_nhs_number),
        ("care_cin", "upn", is_valid_upn),
        ("education_census", "upn", is_valid_upn),
    ):
        frame = _with_truth(root, name).drop_duplicates("local_id")
        kind = column.split("_")[0]
        present = frame[frame[column] != ""]
        invalid = present["noise"].str.contains(f"{kind}_invalid")
        assert present.loc[~invalid, column].map(check).all(), (name, column)
        assert not present.loc[invalid, column].map(check).any(), (name, column)
        missing = frame[frame[column] == ""]
        assert (
            missing["noise"].str.contains(f"{kind}_missing") | missing[f"{column}_true"].isna()
        ).all()
        wrong = frame[frame["noise"].str.contains(f"{kind}_wrong_valid")]
        assert (wrong[column] != wrong[f"{column}_true"]).all()


def test_nickname_noise_uses_a_nickname_of_the_true_forename(full):
    root, _ = full
    frame = _with_truth(root, "health_referrals").drop_duplicates("local_id")
    nicknamed = frame[frame["noise"].str.contains("nickname")]
    assert len(nicknamed) > 20
    table = nickname_table()
    assert (
        nicknamed["forename"].str.upper().map(table) == nicknamed["forename_true"].str.upper()
    ).all()


def test_british_surnames_keep_their_per_head_shares_and_a_rare_tail():
    """Smith is 1.26% of British surnames, not 3.1% of a list taken for everyone.

    The 365 listed names hold 40.4% of people; the rest carry rarer, made-up names whose
    shares continue the list's and fall by rank, so two children share a surname about as
    often as in England (sum of squared shares near 0.001, not 0.0056).
    """
    with (synth.DATA_DIR / "surnames.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names, shares = synth.surname_table()[synth.PER_HEAD_SURNAME_GROUP]
    listed = {r["surname"] for r in rows}
    share = dict(zip(names, shares, strict=True))
    assert share["Smith"] == pytest.approx(0.0126)
    assert shares.sum() == pytest.approx(1.0)
    rare = [n for n in names if n not in listed]
    rare_shares = np.array([share[n] for n in rare])
    assert len(rare) == len(set(rare)) > 5_000
    assert rare_shares.sum() == pytest.approx(1 - 0.40362)
    assert rare_shares.max() <= min(share[n] for n in names if n in listed and n.isalpha())
    assert (np.diff(rare_shares) <= 0).all()
    assert all(n.isalpha() and n[0].isupper() and n[1:].islower() for n in rare if "Mc" not in n)
    assert 0.0008 < (shares**2).sum() < 0.0012
    for other_group in ("indian", "chinese", "muslim_south_asian"):
        assert synth.surname_table()[other_group][0].tolist() == [
            r["surname"] for r in rows if r["group"] == other_group
        ]


def test_a_name_splits_after_its_first_vowels():
    assert synth.split_after_first_vowels("Smith") == ("Smi", "th")
    assert synth.split_after_first_vowels("Evans") == ("E", "vans")
    assert synth.split_after_first_vowels("Yeates") == ("Yea", "tes")
    assert synth.split_after_first_vowels("Brrr") == ("Brrr", "")


def test_twins_exist_and_share_surname_dob_and_postcode_but_not_forename(full):
    children = _truth(full[0], "children").set_index("true_id")
    twins = children[children["twin_of"].notna()]
    assert 0.02 < len(twins) / len(children) < 0.045
    partner = children.loc[twins["twin_of"]]
    assert (partner["twin_of"].to_numpy() == twins.index.to_numpy()).all()
    for column in ("surname", "dob", "postcode", "address", "household_id"):
        assert (partner[column].to_numpy() == twins[column].to_numpy()).all(), column
    assert (partner["forename"].to_numpy() != twins["forename"].to_numpy()).all()


def test_no_two_children_of_a_household_share_a_name_or_its_short_form(full):
    """Parents give twins and siblings two names, not Alfie and Alfred or Sophie and Sophia."""
    children = _truth(full[0], "children")
    canonical = children["forename"].str.upper().map(lambda f: nickname_table().get(f, f))
    named = pd.DataFrame({"household": children["household_id"], "name": canonical})
    assert children["household_id"].duplicated().sum() > 1_000
    assert not named.duplicated().any()


def test_children_issued_a_plan_have_an_ehc_plan_on_the_census(full):
    root, _ = full
    census = _with_truth(root, "education_census")
    with_plan = census[census["plan_start_date"].notna()]
    assert len(with_plan) > 50
    assert (with_plan["sen_provision"] == "E").all()
    assert (census["sen_provision"] == census["sen_provision_true"]).all()
    sen2 = _with_truth(root, "education_sen2")
    issued = sen2[sen2["assessment_outcome"] == "I"]
    assert (issued["plan_start_date"] == issued["plan_start_date_true"].astype(str)).all()
    assert (issued["primary_need"] == issued["primary_need_true"]).all()


def test_exclusions_before_a_new_plan_record_sen_support(full):
    exclusions = _with_truth(full[0], "education_exclusions")
    before = exclusions["start_date"] < exclusions["plan_start_date"].astype(str)
    planned = exclusions["plan_start_date"].notna()
    assert (exclusions.loc[planned & before, "sen_provision"] == "K").all()
    assert (
        exclusions.loc[~(planned & before), "sen_provision"]
        == exclusions.loc[~(planned & before), "sen_provision_true"]
    ).all()


def test_summary_counts_match_the_truth(small):
    root, summary = small
    children = _truth(root, "children")
    records = _truth(root, "records")
    assert children.groupby("la_code").size().to_dict() == summary.children
    for agency in AGENCIES:
        counts = records[records["agency"] == agency].groupby("la_code").size().to_dict()
        assert counts == summary.records[agency]


# --- Calibration ---------------------------------------------------------------------------------
# Tolerances are about three binomial standard errors of each share on the default sample
# (~11,000 pupils: ~580 with an EHC plan, ~1,600 on SEN support), widened for the spread of
# the area factors around 1 and, for FSM, for siblings sharing a household's eligibility.


def test_sen_shares_and_boys_share_of_ehc_plans_match_national_figures(full):
    census = _with_truth(full[0], "education_census")
    shares = census["sen_provision"].value_counts(normalize=True)
    assert shares["E"] == pytest.approx(synth.EHC_SHARE, abs=0.008)
    assert shares["K"] == pytest.approx(synth.SEN_SUPPORT_SHARE, abs=0.012)
    boys = census.groupby("sen_provision")["sex_true"].apply(lambda s: (s == "M").mean())
    assert boys["E"] == pytest.approx(synth.BOYS_SHARE["E"], abs=0.06)
    assert boys["N"] < 0.5


def test_free_school_meals_by_sen_status_match_national_figures(full):
    census = _extract(full[0], "education_census")
    fsm = census.groupby("sen_provision")["fsm_eligible"].apply(lambda s: (s == "true").mean())
    tolerance = {"E": 0.07, "K": 0.045, "N": 0.02}
    for status, expected in synth.FSM_SHARE.items():
        assert fsm[status] == pytest.approx(expected, abs=tolerance[status]), status
    by_area = census.groupby("la_code")["fsm_eligible"].apply(lambda s: (s == "true").mean())
    assert (
        by_area["E10000099"] < by_area["E09000099"] and by_area["E10000099"] < by_area["E07000099"]
    )


def test_absence_by_sen_status_matches_national_figures(full):
    census = _extract(full[0], "education_census")
    for column in ("sessions_possible", "sessions_authorised", "sessions_unauthorised"):
        census[column] = census[column].astype(int)
    missed = census["sessions_authorised"] + census["sessions_unauthorised"]
    census["rate"] = missed / census["sessions_possible"]
    assert census["sessions_possible"].between(300, 390).all()
    tolerance = {"E": 0.06, "K": 0.045, "N": 0.02}
    for status, (overall, persistent) in synth.ABSENCE.items():
        group = census[census["sen_provision"] == status]
        assert (group["rate"] >= 0.1).mean() == pytest.approx(persistent, abs=tolerance[status])
        rate = (group["sessions_authorised"] + group["sessions_unauthorised"]).sum() / group[
            "sessions_possible"
        ].sum()
        assert rate == pytest.approx(overall, rel=0.15), status


@pytest.mark.parametrize("status", ["E", "K", "N"])
def test_absence_model_hits_mean_and_persistent_share_on_a_large_draw(status):
    """The fitted Beta itself, free of sampling noise: 200,000 pupils, national FSM share."""
    rng = np.random.default_rng(1)
    n = 200_000
    sen = np.full(n, status, dtype=object)
    fsm = rng.random(n) < synth.FSM_SHARE[status]
    neutral = replace(synth.AREAS[0], absence_factor=1.0)
    rates = synth.absence_rates(rng, sen, fsm, neutral)
    overall, persistent = synth.ABSENCE[status]
    assert rates.mean() == pytest.approx(overall, abs=0.003)
    assert (rates >= 0.1).mean() == pytest.approx(persistent, abs=0.015)


def test_suspensions_are_several_times_more_common_with_sen(full):
    census = _extract(full[0], "education_census")
    exclusions = _extract(full[0], "education_exclusions")
    pupils = census["sen_provision"].value_counts()
    suspensions = exclusions[exclusions["category"] == "SUSP"]["sen_provision"].value_counts()
    per_100 = 100 * suspensions / pupils
    assert 8 < 100 * suspensions.sum() / pupils.sum() < 15
    assert per_100["E"] > 2.5 * per_100["N"] and per_100["K"] > 2.5 * per_100["N"]
    permanent = (exclusions["category"] == "PERM").sum()
    assert 0 < 100 * permanent / pupils.sum() < 0.5


@pytest.mark.parametrize("area", synth.AREAS, ids=lambda a: a.name)
def test_request_flow_issues_plans_within_20_weeks_at_the_area_rate(area):
    """The SEN2 request model on a large flow: the 20-week and 52-week shares of plans issued
    in the period, and the share of requests agreed to assess."""
    requests = synth.simulate_requests(np.random.default_rng(3), area, TERM, 400_000)
    plan = requests["plan_start_date"]
    issued = requests[plan >= synth.day_number(TERM.start)]
    weeks = issued["plan_start_date"] - issued["received_date"]
    assert (weeks <= 140).mean() == pytest.approx(area.within_20_weeks, abs=0.03)
    assert (weeks > 364).mean() == pytest.approx(synth.OVER_52_WEEKS, abs=0.02)
    decided = requests[requests["request_outcome"] != "P"]
    assert (decided["request_outcome"] == "A").mean() == pytest.approx(0.654, abs=0.02)
    assessed = requests[requests["assessment_outcome"].isin(["I", "N", "W"])]
    assert (assessed["assessment_outcome"] == "I").mean() == pytest.approx(0.936, abs=0.02)


def test_generated_plans_within_20_weeks_near_national_rate(full):
    """On the default sample (~130 plans issued in the period) the pooled 20-week share is
    near 46%; the tolerance (0.12) is about three binomial standard errors."""
    sen2 = _extract(full[0], "education_sen2")
    issued = sen2[sen2["plan_start_date"] >= TERM.start.isoformat()]
    weeks = pd.to_datetime(issued["plan_start_date"]) - pd.to_datetime(issued["received_date"])
    assert len(issued) > 60
    assert (weeks.dt.days <= 140).mean() == pytest.approx(0.46, abs=0.12)
    assert (sen2["received_date"] <= TERM.end.isoformat()).all()


def test_health_referrals_favour_send_and_camhs_waits_are_shorter(full):
    frame = _with_truth(full[0], "health_referrals")
    children = _truth(full[0], "children")
    young = children[children["age"] <= synth.HEALTH_MAX_AGE]
    referred = young["true_id"].isin(frame["true_id"])
    share = referred.groupby(young["sen_provision"]).mean()
    assert share["E"] > 0.5 and share["K"] > 0.2 and share["N"] < 0.12
    waits = pd.to_datetime(frame["first_attended_contact_date"]) - pd.to_datetime(
        frame["referral_received_date"]
    )
    frame["wait"] = waits.dt.days
    medians = frame.groupby("service")["wait"].median() / 7
    assert medians["CAMHS"] < medians["PHYSIO"] < medians["PAEDS"]
    assert ((frame["first_attended_contact_date"] == "") & (frame["discharge_date"] == "")).any()
    attended = frame["contacts_attended"].astype(int).sum()
    dna = frame["contacts_dna"].astype(int).sum()
    assert 0.05 < dna / (attended + dna) < 0.12


def test_care_reaches_children_with_send_more_often(full):
    children = _truth(full[0], "children")
    young = children[children["age"] <= synth.CARE_MAX_AGE]
    assert 0.02 < young["child_in_need"].mean() < 0.05
    assert 0.003 < young["looked_after"].mean() < 0.012
    by_status = young.groupby("sen_provision")["child_in_need"].mean()
    assert by_status["E"] > 3 * by_status["N"]
    cin = _extract(full[0], "care_cin")
    assert (cin["primary_need_code"] == "N2").any()
    assert (cin["cpp_start_date"] != "").any()


def test_noise_rates_follow_the_documented_constants(full):
    """Common noise kinds occur at about their rate (nicknames: among forenames that have one)."""
    records = _truth(full[0], "records")
    health = records[records["agency"] == "health"]
    care = records[records["agency"] == "care"]
    assert health["noise"].str.contains("nhs_missing").mean() == pytest.approx(0.02, abs=0.015)
    assert care["noise"].str.contains("nhs_missing").mean() == pytest.approx(0.30, abs=0.06)
    education = records[records["agency"] == "education"]
    assert (education["noise"] == "").mean() > (health["noise"] == "").mean()
    assert (health["noise"] == "").mean() > (care["noise"] == "").mean()
    assert set(",".join(records["noise"]).split(",")) - {""} <= set(synth.NOISE_KINDS)


# --- Addresses ---------------------------------------------------------------------------------
def test_every_raw_extract_holds_an_address_beside_the_postcode(small):
    """Every contract lists 'address' and every extract of every area writes it, mostly filled
    with a house number and a street ('12 Mill Lane')."""
    root, _ = small
    for name, contract in contracts().items():
        assert "address" in contract.identity, name
        frame = _extract(root, name)
        filled = frame.loc[frame["address"] != "", "address"]
        assert len(filled) > 0.9 * len(frame), name
        assert filled.str.match(r"^([0-9]+ )?[A-Z][A-Za-z ]+$").mean() > 0.97, name


def test_households_have_one_address_and_no_two_households_share_one(small):
    children = _truth(small[0], "children")
    assert children["address"].notna().all()
    assert (children.groupby("household_id")["address"].nunique() == 1).all()
    homes = children.drop_duplicates("household_id")
    assert not homes.duplicated(["postcode", "address"]).any()
    streets = homes.assign(street=homes["address"].str.split(" ", n=1).str[1])
    assert (streets.groupby("postcode")["street"].nunique() > 1).any(), "several streets a unit"


def test_a_moved_household_has_another_address_and_postcode_in_every_record(full):
    """'moved': the agency holds another address and postcode in the area, the same for every
    child of the household."""
    frame = _with_truth(full[0], "health_referrals").drop_duplicates("local_id")
    moved = frame[frame["noise"] == "moved"]
    assert len(moved) > 20
    assert (moved["postcode"] != moved["postcode_true"]).all()
    assert (moved["address"] != moved["address_true"]).all()
    area = {a.la_code: a.districts for a in synth.AREAS}
    assert all(
        p.split(" ")[0] in area[la] for p, la in zip(moved.postcode, moved.la_code, strict=True)
    )
    together = moved.groupby("household_id")[["postcode", "address"]].nunique()
    assert (together == 1).all().all()


def test_address_noise_is_a_typo_an_abbreviation_or_a_gap():
    """Typos change the house number or the street name by one keying error, the number as
    often as its share of the characters; abbreviations shorten the street type (Road -> Rd) or
    drop the house number."""
    rng = np.random.default_rng(5)
    in_number = 0
    for _ in range(2000):
        typo = synth.mistype_address(rng, "12 Mill Lane")
        number, _, street = typo.partition(" ")
        assert typo != "12 Mill Lane"
        if number != "12":
            in_number += 1
            assert street == "Mill Lane" and number.isdigit() and not number.startswith("0")
        else:
            assert street.startswith("M") and street != "Mill Lane"
        short = synth.abbreviate_address(rng, "12 Mill Lane")
        assert short in ("12 Mill Ln", "Mill Lane")
        assert synth.abbreviate_address(rng, "7 Kiln Way") == "Kiln Way"
    assert 0.12 < in_number / 2000 < 0.22  # 2 of 11 characters: 0.18


def test_a_mistyped_house_number_is_one_keying_error_away():
    rng = np.random.default_rng(7)
    seen = {synth.mistype_number(rng, "105") for _ in range(500)}
    assert "105" not in seen and all(n.isdigit() and n[0] != "0" for n in seen)
    assert {"15", "10", "150", "1055", "106"} <= seen  # dropped, transposed, doubled, substituted


# --- Within-agency duplicates -----------------------------------------------------------------
def test_second_records_share_the_childs_true_id_and_hold_some_of_its_rows(full):
    """Every agency holds some children under two local ids; both records have rows, and the
    second is marked duplicate_record in the truth."""
    root, _ = full
    records = _truth(root, "records")
    for agency in AGENCIES:
        mine = records[records["agency"] == agency]
        second = mine[mine["noise"].str.contains("duplicate_record")]
        assert len(second) >= 1, agency
        twice = mine[mine["true_id"].isin(second["true_id"])]
        assert (twice.groupby("true_id").size() == 2).all(), agency
        rows = pd.concat([_extract(root, c.name)["local_id"] for c in agency_contracts(agency)])
        assert twice["local_id"].isin(set(rows)).all(), agency
    education = records[records["agency"] == "education"]
    share = education["noise"].str.contains("duplicate_record").mean()
    assert share == pytest.approx(synth.NOISE_RATES["education"]["duplicate_record"], abs=0.0015)


def test_issued_plans_stay_on_the_first_record():
    """SEN2 rows of issued plans never move to a second record (the census-E rule finds them by
    local id); other movable rows may, and each record keeps at least one row."""
    rng = np.random.default_rng(2)
    census = pd.DataFrame({"true_id": ["a", "b"], "sen_provision": ["E", "N"]})
    sen2 = pd.DataFrame(
        {"true_id": ["a", "a", "b", "b"], "assessment_outcome": ["I", "N", "P", None]}
    )
    events = {"education_census": census, "education_sen2": sen2}
    assert synth.duplicable("education", events, pd.Series(["a", "b"])).tolist() == [True, True]
    for _ in range(20):
        split = synth.split_events(rng, "education", events, pd.Series(["a", "b"]))
        assert split["education_census"]["record"].tolist() == [0, 0]
        sen2_records = split["education_sen2"]["record"].tolist()
        assert sen2_records[0] == 0 and sen2_records[1] == 1
        assert 1 in sen2_records[2:]


# --- Linkage populations ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def population() -> synth.LinkagePopulation:
    return synth.linkage_population(20_000, seed=11)


def test_linkage_population_holds_about_the_asked_children_per_agency(population):
    """Each agency: its raw identity fields plus la_code, ~children_per_agency records (a random
    80% of the population, plus second records), unique local ids, mapped by the truth."""
    truth = population.truth
    children = 20_000 / synth.LINKAGE_COVERAGE
    held = {}
    for agency in AGENCIES:
        frame = population.raw[agency]
        fields = [
            c.name for c in identity_columns("raw")
            if any(c.name in k.identity for k in agency_contracts(agency))
        ]  # fmt: skip
        assert list(frame.columns) == [*fields, "la_code"], agency
        assert "address" in frame.columns and frame["local_id"].is_unique
        assert len(frame) == pytest.approx(20_000, rel=0.03), agency
        mine = truth[truth["agency"] == agency]
        assert set(mine["local_id"]) == set(frame["local_id"])
        held[agency] = set(mine["true_id"])
        assert len(held[agency]) / children == pytest.approx(synth.LINKAGE_COVERAGE, abs=0.015)
    both = len(held["education"] & held["health"]) / children
    assert both == pytest.approx(synth.LINKAGE_COVERAGE**2, abs=0.02)
    assert set(frame["la_code"]) == {a.la_code for a in synth.AREAS}
    assert frame["dob"].str.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$").all()


def _rate_holds(flags: pd.Series, rate: float) -> bool:
    """Within four binomial standard errors of `rate` (plus a little for small rates)."""
    tolerance = 4 * np.sqrt(rate * (1 - rate) / len(flags)) + 0.001
    return abs(flags.mean() - rate) <= tolerance


@pytest.mark.parametrize("agency", AGENCIES)
def test_linkage_population_noise_follows_the_documented_rates(population, agency):
    """Per-record kinds at their NOISE_RATES (second records use the same, bar identifiers);
    'moved' at its rate times each area's move_factor; second records at duplicate_record."""
    rates = synth.NOISE_RATES[agency]
    truth = population.truth[population.truth["agency"] == agency]
    for kind in (
        "forename_typo", "surname_change", "surname_typo", "dob_wrong", "postcode_missing",
        "sex_unknown", "ethnicity_unrecorded", "address_typo", "address_abbreviated",
        "address_missing",
    ):  # fmt: skip
        assert _rate_holds(truth["noise"].str.contains(kind), rates[kind]), kind
    factor = truth["la_code"].map({a.la_code: a.move_factor for a in synth.AREAS})
    moved = truth["noise"].str.contains("moved").mean()
    assert moved == pytest.approx(rates["moved"] * factor.mean(), rel=0.15)
    second = truth["noise"].str.contains("duplicate_record")
    assert _rate_holds(second, rates["duplicate_record"] / (1 + rates["duplicate_record"]))
    twice = truth[truth["true_id"].isin(truth.loc[second, "true_id"])]
    assert (twice.groupby("true_id").size() == 2).all()


def test_linkage_population_second_records_mostly_keep_the_identifier(population):
    health = population.raw["health"].merge(population.truth, on="local_id")
    second = health["noise"].str.contains("duplicate_record")
    pairs = health[health["true_id"].isin(health.loc[second, "true_id"])]
    first = pairs[~pairs["noise"].str.contains("duplicate_record")].set_index("true_id")
    again = pairs[pairs["noise"].str.contains("duplicate_record")].set_index("true_id")
    same = again["nhs_number"] == first.loc[again.index, "nhs_number"]
    assert 0.5 < same.mean() < 0.95
    assert again["nhs_number"].isna().mean() > 0.1


def test_linkage_population_twins_share_surname_dob_and_address(population):
    care = population.raw["care"].merge(population.truth, on="local_id")
    keys = care.groupby(["surname", "dob", "postcode", "address"])["true_id"].nunique()
    pairs = (keys == 2).sum()
    expected = synth.TWIN_SHARE / 2 * len(care) * synth.LINKAGE_COVERAGE
    assert 0.5 * expected < pairs < 1.2 * expected, (pairs, expected)


def test_linkage_population_is_reproducible_by_seed():
    first = synth.linkage_population(2_000, seed=3)
    again = synth.linkage_population(2_000, seed=3)
    other = synth.linkage_population(2_000, seed=4)
    for agency in AGENCIES:
        pd.testing.assert_frame_equal(first.raw[agency], again.raw[agency])
        assert not first.raw[agency]["forename"].equals(other.raw[agency]["forename"])
    pd.testing.assert_frame_equal(first.truth, again.truth)


# --- Areas of a linkage population --------------------------------------------------------------
def test_linkage_areas_keep_the_three_areas_while_they_are_no_bigger_than_real_ones():
    """Up to the areas at LARGEST_AREA_SCALE a linkage population is the three areas themselves,
    sized in proportion to their size (the 10k and 100k benchmark populations)."""
    total = 125_000
    areas = synth.linkage_areas(total)
    assert [a.la_code for a, _ in areas] == [a.la_code for a in synth.AREAS]
    assert [a.la_number for a, _ in areas] == [a.la_number for a in synth.AREAS]
    assert sum(n for _, n in areas) == total
    assert [n for _, n in areas] == synth.linkage_sizes(total)
    for (area, n), template in zip(areas, synth.AREAS, strict=True):
        assert n == pytest.approx(total * template.size / sum(a.size for a in synth.AREAS), abs=1)
        assert area.districts[: len(template.districts)] == template.districts


def test_linkage_areas_spread_a_bigger_population_over_distinct_copies_of_real_size():
    """At 1.25M children (the 1M benchmark) no area is bigger than its template at
    LARGEST_AREA_SCALE; the copies are distinct areas: own code, LA number and districts."""
    total = 1_250_000
    areas = synth.linkage_areas(total)
    assert len(areas) == 3 * 4
    assert sum(n for _, n in areas) == total
    for k, (area, n) in enumerate(areas):  # copy 0's three areas, then copy 1's, ...
        assert n <= synth.AREAS[k % 3].size * synth.LARGEST_AREA_SCALE
        assert len(area.districts) == synth.districts_needed(area, n)
    assert [a.la_code for a, _ in areas[:3]] == [a.la_code for a in synth.AREAS]
    assert len({a.la_code for a, _ in areas}) == len(areas)
    assert len({a.la_number for a, _ in areas}) == len(areas)
    districts = [d for a, _ in areas for d in a.districts]
    assert len(set(districts)) == len(districts)
    assert areas[3][0].la_code == "E09000199" and areas[3][0].la_number == "981"


def test_linkage_areas_refuse_a_population_beyond_the_copies_with_unreal_la_numbers():
    too_many = sum(a.size for a in synth.AREAS) * synth.LARGEST_AREA_SCALE
    with pytest.raises(ValueError, match="at most 5 copies"):
        synth.linkage_areas(int(too_many * synth.MAX_AREA_COPIES) + 1)


def test_linkage_population_copies_of_the_areas_hold_their_own_children_and_upns(monkeypatch):
    """With the areas copied, each copy's records carry its code, UPNs of its own LA number,
    and no UPN of one child is another child's (bar the mistyped ones)."""
    monkeypatch.setattr(synth, "LARGEST_AREA_SCALE", 0.1)  # three areas hold 2,200 children
    population = synth.linkage_population(2_000, seed=5)
    la_numbers = {a.la_code: a.la_number for a, _ in synth.linkage_areas(2_500)}
    truth = population.truth[["local_id", "true_id", "noise"]]
    education = population.raw["education"].merge(truth, on="local_id")
    assert set(education["la_code"]) == set(la_numbers) and len(la_numbers) == 6
    recorded = education[education["upn"].notna() & ~education["noise"].str.contains("upn_")]
    assert (recorded["upn"].str[1:4] == recorded["la_code"].map(la_numbers)).all()
    assert (recorded.groupby("upn")["true_id"].nunique() == 1).all()
