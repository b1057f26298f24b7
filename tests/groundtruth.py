"""Independent computation of the outcome metrics from the synthetic ground truth.

Written in pandas from the raw (identifiable) extracts and the truth files, sharing no code
with the SQL transforms, so that a test comparing the two can catch a wrong transform. Child
identity comes from the truth (`true_id`), not from the pipeline's linkage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from joinedup.contracts import Period, code_lists, contract
from joinedup.pseudonymise import ROW_COLUMN, parse_date, person_token, read_delimited_text
from joinedup.settings import AGENCIES, Settings

TWENTY_WEEKS_DAYS = 140
AREA_PRECEDENCE = {agency: rank for rank, agency in enumerate(AGENCIES)}


@dataclass(frozen=True)
class Truth:
    """The raw extracts of a period with every record's true child."""

    period: Period
    extracts: dict[str, pd.DataFrame]
    records: pd.DataFrame  # agency, local_id, true_id, la_code, person_token

    def extract(self, name: str) -> pd.DataFrame:
        return self.extracts[name]


def read_good_rows(path: Path, bad_rows: pd.DataFrame) -> pd.DataFrame:
    """A raw extract as text with ISO dates, without the rows the truth lists as bad."""
    table = read_delimited_text(path).table
    for column in contract(path.stem).raw_columns:
        if column.type == "date":
            dates = parse_date(table.column(column.name))[0].cast(pa.string())
            table = table.set_column(table.schema.get_field_index(column.name), column.name, dates)
    la_code = path.parent.name
    bad = bad_rows[(bad_rows.la_code == la_code) & (bad_rows.extract == path.stem)]
    frame = table.to_pandas()
    return frame[~frame[ROW_COLUMN].isin(bad.row)].drop(columns=ROW_COLUMN).reset_index(drop=True)


def load_truth(settings: Settings, period: str, key: bytes) -> Truth:
    """Raw extracts (all areas; only the rows not made bad on purpose) and the truth records,
    with person tokens for joining."""
    bad_rows = pd.read_parquet(settings.truth_dir / period / "bad_rows.parquet")
    extracts: dict[str, pd.DataFrame] = {}
    for path in sorted(settings.raw_dir.glob(f"*/{period}/*/*.csv")):
        extracts.setdefault(path.stem, []).append(read_good_rows(path, bad_rows))
    extracts = {name: pd.concat(frames, ignore_index=True) for name, frames in extracts.items()}
    records = pd.read_parquet(settings.truth_dir / period / "records.parquet")
    records = records.assign(
        person_token=[
            person_token(key, a, i) for a, i in zip(records.agency, records.local_id, strict=True)
        ]
    )
    return Truth(Period(period), extracts, records)


def in_period(dates: pd.Series, period: Period) -> pd.Series:
    parsed = pd.to_datetime(dates)
    return (parsed >= pd.Timestamp(period.start)) & (parsed <= pd.Timestamp(period.end))


def rate(numerator: float, denominator: float, per: float = 100.0) -> float | None:
    return None if denominator == 0 else per * numerator / denominator


def ehcp_within_20_weeks(truth: Truth) -> pd.DataFrame:
    """New plans issued in the period and the share issued within 20 weeks, by area."""
    sen2 = truth.extract("education_sen2")
    plans = sen2[sen2.plan_start_date.notna() & in_period(sen2.plan_start_date, truth.period)]
    days = (pd.to_datetime(plans.plan_start_date) - pd.to_datetime(plans.received_date)).dt.days
    plans = plans.assign(within=days <= TWENTY_WEEKS_DAYS)
    out = plans.groupby("la_code").within.agg(numerator="sum", denominator="count").reset_index()
    return out.assign(cohort_value="all")


def census_pupils(truth: Truth) -> pd.DataFrame:
    census = truth.extract("education_census").copy()
    for column in ("sessions_possible", "sessions_authorised", "sessions_unauthorised"):
        census[column] = census[column].astype(int)
    return census


def with_all(frame: pd.DataFrame, by: str, cohort: str, values: dict) -> pd.DataFrame:
    """Sums per (area, cohort) plus an 'all' row per area."""
    per = frame.groupby(["la_code", by]).agg(**values).reset_index()
    total = frame.groupby("la_code").agg(**values).reset_index().assign(**{by: "all"})
    return pd.concat([per, total], ignore_index=True).rename(columns={by: cohort})


EDUCATION_DIMENSIONS = ("sen_status", "primary_need", "age_band", "sex", "ethnicity_group", "fsm")
AGE_BANDS = ((4, "under 5"), (10, "5-10"), (15, "11-15"), (19, "16-19"), (200, "20 and over"))


def age_band(dob: pd.Series, period: Period) -> pd.Series:
    """Band of the age on the 31 August before the period; 'unknown' without a date of birth."""
    born = pd.to_datetime(dob)
    age = period.start.year - born.dt.year - (born.dt.month > 8).astype(int)
    bands = pd.Series("unknown", index=dob.index, dtype=object)
    for upper, label in reversed(AGE_BANDS):
        bands[age.notna() & (age <= upper)] = label
    return bands


def latest_sen2_need(truth: Truth) -> pd.Series:
    """Per true child, the primary need on its latest SEN2 request of the period with one."""
    sen2 = truth.extract("education_sen2").dropna(subset=["primary_need"])
    sen2 = sen2.merge(true_ids(truth, "education"), on="local_id")
    return sen2.sort_values("received_date").groupby("true_id").primary_need.last()


def true_ids(truth: Truth, agency: str) -> pd.DataFrame:
    return truth.records[truth.records.agency == agency][["local_id", "true_id"]]


def census_cohorts(truth: Truth) -> pd.DataFrame:
    """Census records with each cohort attribute taken from the record itself: SEN status,
    primary need (census, else the child's SEN2 need, else 'none' for no SEN, else 'unknown'),
    age band, sex, ethnicity group and FSM eligibility."""
    census = census_pupils(truth).merge(true_ids(truth, "education"), on="local_id")
    groups = code_lists()["ethnicity_group"]
    sen2_need = census.true_id.map(latest_sen2_need(truth))
    need = census.primary_need.fillna(sen2_need)
    need = need.fillna(census.sen_provision.map({"N": "none"})).fillna("unknown")
    fsm = census.fsm_eligible.map({"true": "eligible", "false": "not eligible"})
    return census.assign(
        sen_status=census.sen_provision,
        primary_need=need,
        age_band=age_band(census.dob, truth.period),
        sex=census.sex.fillna("U"),
        ethnicity_group=census.ethnicity.map(groups).fillna("Unknown"),
        fsm=fsm.fillna("unknown"),
    )


def by_dimensions(
    frame: pd.DataFrame, values: dict, dimensions: Sequence[str] = EDUCATION_DIMENSIONS
) -> pd.DataFrame:
    """with_all for each dimension, stacked with a `cohort` column naming it."""
    return pd.concat(
        [with_all(frame, d, "cohort_value", values).assign(cohort=d) for d in dimensions],
        ignore_index=True,
    )


def overall_absence(truth: Truth) -> pd.DataFrame:
    """Sessions missed over sessions possible of census records with sessions possible."""
    census = census_cohorts(truth)
    census = census[census.sessions_possible > 0]
    census = census.assign(missed=census.sessions_authorised + census.sessions_unauthorised)
    return by_dimensions(
        census, {"numerator": ("missed", "sum"), "denominator": ("sessions_possible", "sum")}
    )


def persistent_absence(
    truth: Truth, dimensions: Sequence[str] = EDUCATION_DIMENSIONS
) -> pd.DataFrame:
    """Census records with sessions possible that missed 10% or more of them, by cohort."""
    census = census_cohorts(truth)
    census = census[census.sessions_possible > 0]
    missed = census.sessions_authorised + census.sessions_unauthorised
    census = census.assign(persistent=(missed / census.sessions_possible) >= 0.10)
    return by_dimensions(
        census,
        {"numerator": ("persistent", "sum"), "denominator": ("persistent", "count")},
        dimensions,
    )


def exclusion_rate(
    truth: Truth, category: str, dimensions: Sequence[str] = EDUCATION_DIMENSIONS
) -> pd.DataFrame:
    """Exclusions of a category starting in the period per census pupil, by cohort."""
    census = census_cohorts(truth)
    exclusions = truth.extract("education_exclusions")
    chosen = exclusions[
        (exclusions.category == category) & in_period(exclusions.start_date, truth.period)
    ]
    counts = chosen.groupby("local_id").size().rename("events")
    census = census.merge(counts, left_on="local_id", right_index=True, how="left")
    census["events"] = census.events.fillna(0)
    return by_dimensions(
        census, {"numerator": ("events", "sum"), "denominator": ("local_id", "count")}, dimensions
    )


def ratio_to_no_sen(rates: pd.DataFrame) -> pd.DataFrame:
    """The K, E and K+E rates per 100 over the N rate, per area (from exclusion_rate rows)."""
    rates = rates[rates.cohort == "sen_status"].set_index(["la_code", "cohort_value"])
    rows = []
    for la_code in rates.index.get_level_values(0).unique():
        area = rates.loc[la_code]
        none = rate(*area.loc["N", ["numerator", "denominator"]])
        for group, members in (("K", ["K"]), ("E", ["E"]), ("SEN", ["K", "E"])):
            present = area.loc[area.index.intersection(members)]
            group_rate = rate(present.numerator.sum(), present.denominator.sum())
            value = None if group_rate is None or not none else group_rate / none
            rows.append(
                {
                    "la_code": la_code,
                    "cohort_value": group,
                    "group_rate": group_rate,
                    "reference_rate": none,
                    "value": value,
                }
            )
    return pd.DataFrame(rows)


def latest_plans(truth: Truth) -> pd.DataFrame:
    """New EHC plans issued in the period, with weeks from request and exception flag."""
    sen2 = truth.extract("education_sen2")
    plans = sen2[sen2.plan_start_date.notna() & in_period(sen2.plan_start_date, truth.period)]
    days = (pd.to_datetime(plans.plan_start_date) - pd.to_datetime(plans.received_date)).dt.days
    return plans.assign(days=days, weeks=days / 7, exception=plans.week20_exception == "true")


def ehcp_within_20_weeks_excluding_exceptions(truth: Truth) -> pd.DataFrame:
    plans = latest_plans(truth)
    plans = plans[~plans.exception].assign(within=lambda p: p.days <= TWENTY_WEEKS_DAYS)
    out = plans.groupby("la_code").within.agg(numerator="sum", denominator="count").reset_index()
    return out.assign(cohort_value="all")


def requests_agreed_to_assess(truth: Truth) -> pd.DataFrame:
    """Requests received in the period and decided (A or N): the share agreed, by area."""
    sen2 = truth.extract("education_sen2")
    decided = sen2[
        sen2.request_outcome.isin(["A", "N"]) & in_period(sen2.received_date, truth.period)
    ]
    decided = decided.assign(agreed=decided.request_outcome == "A")
    out = decided.groupby("la_code").agreed.agg(numerator="sum", denominator="count")
    return out.reset_index().assign(cohort_value="all")


def child_attributes(truth: Truth) -> pd.DataFrame:
    """Per true child: area (education's, else health's, else care's), census SEN status and
    the agencies that hold a record of it in the period."""
    records = truth.records.copy()
    present = pd.concat(
        [
            frame[["local_id"]].assign(agency=name.split("_")[0])
            for name, frame in truth.extracts.items()
        ]
    ).drop_duplicates()
    records = records.merge(present, on=["agency", "local_id"])
    records["rank"] = records.agency.map(AREA_PRECEDENCE)
    area = records.sort_values("rank").groupby("true_id").la_code.first()
    agencies = records.groupby("true_id").agency.nunique()
    census = truth.extract("education_census")[["local_id", "sen_provision"]]
    sen = (
        census.merge(truth.records[truth.records.agency == "education"], on="local_id")
        .groupby("true_id")
        .sen_provision.first()
    )
    children = pd.DataFrame({"la_code": area, "services": agencies})
    children["sen_status"] = sen.reindex(children.index).fillna("X")
    return children


def known_to_services(truth: Truth) -> pd.DataFrame:
    """Children known to exactly k services, by area and SEN status (and all)."""
    children = child_attributes(truth)
    rows = []
    for k in (1, 2, 3):
        flagged = children.assign(hit=children.services == k)
        table = with_all(
            flagged,
            "sen_status",
            "cohort_value",
            {"numerator": ("hit", "sum"), "denominator": ("hit", "count")},
        )
        rows.append(table.assign(metric_id=f"known_to_services_{k}"))
    return pd.concat(rows, ignore_index=True)


def referral_waits(truth: Truth) -> pd.DataFrame:
    """Weeks from referral to first attended contact of referrals received in the period, with
    the referred child's true area and census SEN status."""
    referrals = truth.extract("health_referrals")
    seen = referrals[
        referrals.first_attended_contact_date.notna()
        & in_period(referrals.referral_received_date, truth.period)
    ]
    days = (
        pd.to_datetime(seen.first_attended_contact_date)
        - pd.to_datetime(seen.referral_received_date)
    ).dt.days
    health = truth.records[truth.records.agency == "health"][["local_id", "true_id"]]
    seen = seen.assign(weeks=days / 7).merge(health, on="local_id")
    children = child_attributes(truth)
    return seen[["local_id", "true_id", "weeks"]].merge(
        children[["la_code", "sen_status"]], left_on="true_id", right_index=True
    )


def median_bounds(values: pd.Series, changed: int) -> tuple[float, float]:
    """The range a median can move to when at most `changed` values are added or removed."""
    ordered = values.sort_values().to_numpy()
    n = len(ordered)
    low = max(0, (n - 1) // 2 - changed)
    high = min(n - 1, n // 2 + changed)
    return float(ordered[low]), float(ordered[high])


def misassigned_records(spine: pd.DataFrame, truth: Truth) -> pd.DataFrame:
    """Person records whose pipeline cluster holds different records from their true cluster."""
    records = truth.records.merge(spine, on=["agency", "person_token"])
    members = records.groupby("child_id").person_token.agg(frozenset)
    true_members = records.groupby("true_id").person_token.agg(frozenset)
    records["wrong"] = [
        members[c] != true_members[t]
        for c, t in zip(records.child_id, records.true_id, strict=True)
    ]
    return records[records.wrong]


@dataclass(frozen=True)
class Identifiers:
    """The direct identifiers of the raw extracts, in every form they could leak in."""

    values: frozenset[str]  # any cell equal to one of these is a leak
    long_values: tuple[str, ...]  # NHS numbers, UPNs, postcodes, dates: leaks inside text too


def direct_identifiers(truth: Truth) -> Identifiers:
    values: set[str] = set()
    long_values: set[str] = set()
    for frame in truth.extracts.values():
        for column in ("forename", "surname"):
            values |= {v.upper() for v in frame[column].dropna()}
        names = frame[["forename", "surname"]].dropna()
        values |= {f"{f} {s}".upper() for f, s in zip(names.forename, names.surname, strict=True)}
        for column in ("nhs_number", "upn"):
            if column in frame:
                long_values |= {v.replace(" ", "").upper() for v in frame[column].dropna()}
        for v in frame.postcode.dropna():
            long_values |= {v.upper(), v.upper().replace(" ", "")}
        if "address" in frame:
            long_values |= {v.upper() for v in frame.address.dropna()}
        for v in frame.dob.dropna():
            year, month, day = v.split("-")
            long_values |= {v, f"{day}/{month}/{year}"}
    clear = {v.upper() for codes in code_lists().values() for pair in codes.items() for v in pair}
    return Identifiers(frozenset((values | long_values) - clear), tuple(sorted(long_values)))


def find_leaks(
    frame: pd.DataFrame, identifiers: Identifiers, event_dates: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(column, value) of every text cell that is, or contains, a direct identifier. Hex token
    and Bloom columns are matched whole only: short strings occur in random hex by chance.
    event_dates are the contract's date columns (a referral date may fall on a birthday)."""
    leaks = []
    for column in (c for c in frame.columns if c not in event_dates):
        cells = frame[column].dropna()
        cells = cells[cells.map(lambda v: isinstance(v, str))].astype(str).str.upper().str.strip()
        leaks += [(column, v) for v in cells[cells.isin(identifiers.values)]]
        if column.endswith(("_token", "_bloom")):
            continue
        for value in cells.unique():
            leaks += [(column, value) for ident in identifiers.long_values if ident in value]
    return leaks
