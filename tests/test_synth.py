"""The synthetic areas: contract-conformant extracts, seeded, calibrated, with a usable truth."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from joinedup import synth
from joinedup.contracts import Contract, Period, agency_contracts, code_lists, contracts
from joinedup.pseudonymise import is_valid_nhs_number, is_valid_upn, nickname_table
from joinedup.settings import AGENCIES, Settings

PERIOD = "2024-25"
TERM = Period(PERIOD)
SMALL_SCALE = 0.15
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$")


def _generate(root: Path, seed: int = 20241, scale: float = SMALL_SCALE) -> synth.SynthSummary:
    return synth.generate(replace(Settings(), data_dir=root), PERIOD, seed=seed, scale=scale)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    root = tmp_path_factory.mktemp("synth_small")
    return root, _generate(root)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    """The default size (scale 1.0, ~11,000 pupils): the sample calibration is checked on."""
    root = tmp_path_factory.mktemp("synth_full")
    return root, _generate(root, scale=1.0)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _extract(root: Path, name: str) -> pd.DataFrame:
    """One extract of every area, all columns as text ('' for null)."""
    agency = contracts()[name].agency
    paths = sorted((root / "raw" / agency / PERIOD).glob(f"*/{name}.csv"))
    return pd.concat(
        [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths], ignore_index=True
    )


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
    root, summary = small
    for name, contract in contracts().items():
        for area in synth.AREAS:
            path = root / "raw" / contract.agency / PERIOD / area.la_code / f"{name}.csv"
            with path.open(encoding="utf-8", newline="") as handle:
                header = next(csv.reader(handle))
            assert header == [c.name for c in contract.raw_columns], path
            assert summary.rows[name][area.la_code] == len(_read(path)) > 0, path


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


# --- Determinism ---------------------------------------------------------------------------------
def test_same_seed_writes_identical_bytes_and_another_seed_differs(small, tmp_path):
    root, summary = small
    again = _generate(tmp_path / "again")
    other = _generate(tmp_path / "other", seed=7)
    assert len(again.paths) == len(summary.paths) == len(contracts()) * len(synth.AREAS) + 2
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
    assert not records.duplicated(["agency", "true_id"]).any(), "one record per child per agency"
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
        assert len(clean) > 0.4 * len(frame)
        for column in ("forename", "surname", "sex", "postcode", "ethnicity"):
            assert (clean[column] == clean[f"{column}_true"].fillna("")).all(), (name, column)
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


def test_twins_exist_and_share_surname_dob_and_postcode_but_not_forename(full):
    children = _truth(full[0], "children").set_index("true_id")
    twins = children[children["twin_of"].notna()]
    assert 0.02 < len(twins) / len(children) < 0.045
    partner = children.loc[twins["twin_of"]]
    assert (partner["twin_of"].to_numpy() == twins.index.to_numpy()).all()
    for column in ("surname", "dob", "postcode", "household_id"):
        assert (partner[column].to_numpy() == twins[column].to_numpy()).all(), column
    assert (partner["forename"].to_numpy() != twins["forename"].to_numpy()).all()


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
