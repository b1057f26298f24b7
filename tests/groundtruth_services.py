"""Independent computation of the health, care, integration, data-quality and activity measures
from the synthetic ground truth (tests/groundtruth.py does the education and timeliness ones).

Written in pandas from the raw (identifiable) extracts and the truth files, sharing no code with
the SQL transforms: child identity is the truth's `true_id`, a child's area and SEN status come
from tests/groundtruth.child_attributes, identifier validity is recomputed from the raw NHS
numbers and UPNs. Every function returns cells as rows of (la_code, cohort, cohort_value,
numerator, denominator) for proportions and rates, (la_code, cohort, cohort_value, numerator)
for counts, or one row per measured unit (la_code, attributes, measure) for medians, so a test
can compare them with metric_values.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from joinedup.pseudonymise import is_valid_nhs_number, is_valid_upn
from tests.groundtruth import Truth, child_attributes, in_period

FOUR_WEEKS_DAYS = 28
EIGHTEEN_WEEKS_DAYS = 126
REPEAT_WINDOW_DAYS = 84
HEALTH_FLOWS = {"SCH": "education->health", "SC": "care->health"}
CIN_FLOWS = {"2A": "education->care", "3A": "health->care", "3B": "health->care"}
SEN2_FLOWS = {"HLT": "health->education", "SC": "care->education"}
# Dimensions that count one record or child under several values: no 'all' cell.
NOT_PARTITIONING = frozenset({"identifier", "agency_pair"})
# Which agency holds which identifier, and in which extracts.
IDENTIFIERS = {
    ("education", "upn"): ("education_census", "education_exclusions", "education_sen2"),
    ("health", "nhs_number"): ("health_referrals",),
    ("care", "nhs_number"): ("care_cin", "care_lac"),
    ("care", "upn"): ("care_cin", "care_lac"),
}
VALIDATORS = {"upn": is_valid_upn, "nhs_number": is_valid_nhs_number}


def dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values)


def with_true_id(truth: Truth, extract: str) -> pd.DataFrame:
    """An extract's rows with the true child of each."""
    agency = extract.split("_")[0]
    ids = truth.records[truth.records.agency == agency][["local_id", "true_id"]]
    return truth.extract(extract).merge(ids, on="local_id")


def open_in_period(start: pd.Series, end: pd.Series, truth: Truth) -> pd.Series:
    """Started on or before the period end and not ended before its start."""
    period_start, period_end = pd.Timestamp(truth.period.start), pd.Timestamp(truth.period.end)
    return (dates(start) <= period_end) & (dates(end).isna() | (dates(end) >= period_start))


def children(truth: Truth) -> pd.DataFrame:
    """Per true child known in the period: area, census SEN status, the services involved in
    the period and care status (lac, else cpp, else cin, else none)."""
    kids = child_attributes(truth)
    health = with_true_id(truth, "health_referrals")
    cin = with_true_id(truth, "care_cin")
    lac = with_true_id(truth, "care_lac")
    open_health = health[
        open_in_period(health.referral_received_date, health.discharge_date, truth)
    ]
    in_need = cin[open_in_period(cin.cin_referral_date, cin.cin_closure_date, truth)]
    plan = cin[
        cin.cpp_start_date.notna() & open_in_period(cin.cpp_start_date, cin.cpp_end_date, truth)
    ]
    looked_after = lac[open_in_period(lac.decom, lac.dec, truth)]
    kids["health_open"] = kids.index.isin(open_health.true_id)
    kids["in_need"] = kids.index.isin(in_need.true_id)
    kids["protection_plan"] = kids.index.isin(plan.true_id)
    kids["looked_after"] = kids.index.isin(looked_after.true_id)
    kids["care_status"] = "none"
    kids.loc[kids.in_need, "care_status"] = "cin"
    kids.loc[kids.protection_plan, "care_status"] = "cpp"
    kids.loc[kids.looked_after, "care_status"] = "lac"
    kids["on_census"] = kids.sen_status != "X"
    return kids


def cells(
    frame: pd.DataFrame, dimensions: Sequence[str], numerator: str, denominator: str | None
) -> pd.DataFrame:
    """Sums of numerator (and denominator) per area and value of each dimension, plus 'all'
    for the dimensions whose values partition it (not identifier, agency_pair)."""
    values = {"numerator": (numerator, "sum")}
    if denominator:
        values["denominator"] = (denominator, "sum")
    total = frame.groupby("la_code").agg(**values).reset_index().assign(cohort_value="all")
    partitioning = [d for d in dimensions if d not in NOT_PARTITIONING]
    parts = [total.assign(cohort=d) for d in partitioning]
    for dimension in dimensions:
        per = frame.groupby(["la_code", dimension]).agg(**values).reset_index()
        parts.append(per.rename(columns={dimension: "cohort_value"}).assign(cohort=dimension))
    return pd.concat(parts, ignore_index=True)


def with_child(frame: pd.DataFrame, kids: pd.DataFrame, area: str = "child") -> pd.DataFrame:
    """Rows with their child's SEN status and care status; la_code the child's area when
    area is 'child', else the row's own."""
    attributes = kids[["la_code", "sen_status", "care_status"]].rename(
        columns={"la_code": "child_area"}
    )
    out = frame.merge(attributes, left_on="true_id", right_index=True, how="left")
    if area == "child":
        out["la_code"] = out.child_area
    return out


def health_referrals(truth: Truth) -> pd.DataFrame:
    """Referrals of the period's return, each (child, area, service, received date) once."""
    referrals = with_true_id(truth, "health_referrals")
    return referrals.drop_duplicates(["true_id", "la_code", "service", "referral_received_date"])


def received_in_period(frame: pd.DataFrame, column: str, truth: Truth) -> pd.DataFrame:
    return frame[in_period(frame[column], truth.period)]


# --- health -----------------------------------------------------------------------------------
def seen_within(truth: Truth, days: int) -> pd.DataFrame:
    """Referrals received in the period that were seen or whose window closed by the period
    end; numerator those first seen within `days` days; by SEN status and service."""
    referrals = received_in_period(health_referrals(truth), "referral_received_date", truth)
    received = dates(referrals.referral_received_date)
    waited = (dates(referrals.first_attended_contact_date) - received).dt.days
    seen = referrals.first_attended_contact_date.notna()
    closed = received + pd.Timedelta(days=days) <= pd.Timestamp(truth.period.end)
    known = referrals[seen | closed].assign(within=(waited <= days)[seen | closed].astype(int))
    known = with_child(known.assign(one=1), children(truth))
    return cells(known, ["sen_status", "service"], "within", "one")


def referral_waits_by_service(truth: Truth) -> pd.DataFrame:
    """Weeks waited by every referral received in the period and seen, with its child's area
    and SEN status and its service."""
    referrals = received_in_period(health_referrals(truth), "referral_received_date", truth)
    seen = referrals[referrals.first_attended_contact_date.notna()]
    weeks = (
        dates(seen.first_attended_contact_date) - dates(seen.referral_received_date)
    ).dt.days / 7
    return with_child(seen.assign(measure=weeks), children(truth))


def dna_rate(truth: Truth) -> pd.DataFrame:
    """DNA contacts over contacts offered, per referral row of the period's return."""
    referrals = with_true_id(truth, "health_referrals")
    referrals = referrals.assign(
        dna=referrals.contacts_dna.astype(int),
        offered=referrals.contacts_dna.astype(int) + referrals.contacts_attended.astype(int),
    )
    referrals = with_child(referrals[referrals.offered > 0], children(truth))
    return cells(referrals, ["sen_status", "service"], "dna", "offered")


# --- care -------------------------------------------------------------------------------------
def care_shares(truth: Truth) -> dict[str, pd.DataFrame]:
    """Census pupils in need, on a protection plan and looked after, by SEN status."""
    kids = children(truth)
    pupils = kids[kids.on_census].assign(one=1)
    return {
        metric: cells(pupils.assign(hit=pupils[flag].astype(int)), ["sen_status"], "hit", "one")
        for metric, flag in (
            ("in_need_share", "in_need"),
            ("protection_plan_share", "protection_plan"),
            ("looked_after_share", "looked_after"),
        )
    }


def census_by_care_status(truth: Truth) -> dict[str, pd.DataFrame]:
    """Overall and persistent absence (census records, their own area) and suspensions (per
    census child, child's area) by the child's care status."""
    kids = children(truth)
    census = with_true_id(truth, "education_census")
    for column in ("sessions_possible", "sessions_authorised", "sessions_unauthorised"):
        census[column] = census[column].astype(int)
    census = with_child(census[census.sessions_possible > 0], kids, area="own")
    missed = census.sessions_authorised + census.sessions_unauthorised
    census = census.assign(
        missed=missed, persistent=(10 * missed >= census.sessions_possible).astype(int), one=1
    )
    exclusions = with_true_id(truth, "education_exclusions")
    suspensions = exclusions[
        (exclusions.category == "SUSP") & in_period(exclusions.start_date, truth.period)
    ]
    pupils = kids[kids.on_census].assign(
        suspensions=lambda k: k.index.map(suspensions.true_id.value_counts()).fillna(0), one=1
    )
    return {
        "overall_absence": cells(census, ["care_status"], "missed", "sessions_possible"),
        "persistent_absence": cells(census, ["care_status"], "persistent", "one"),
        "suspension_rate": cells(pupils, ["care_status"], "suspensions", "one"),
    }


# --- integration --------------------------------------------------------------------------
def ehcp_without_health_involvement(truth: Truth) -> pd.DataFrame:
    """Children with census E or a SEN2 plan issued by the period end: share with no health
    referral open in the period."""
    kids = children(truth)
    sen2 = with_true_id(truth, "education_sen2")
    planned = sen2[
        sen2.plan_start_date.notna()
        & (dates(sen2.plan_start_date) <= pd.Timestamp(truth.period.end))
    ]
    with_plan = kids[(kids.sen_status == "E") | kids.index.isin(planned.true_id)]
    with_plan = with_plan.assign(hit=(~with_plan.health_open).astype(int), one=1)
    return cells(with_plan, ["sen_status"], "hit", "one")


def need_without_sen_identification(truth: Truth) -> pd.DataFrame:
    """Census children with a health referral or CIN episode open in the period: share with
    SEN provision N; by care status."""
    kids = children(truth)
    known = kids[kids.on_census & (kids.health_open | kids.in_need)]
    known = known.assign(hit=(known.sen_status == "N").astype(int), one=1)
    return cells(known, ["care_status"], "hit", "one")


def assessment_contacts(truth: Truth) -> pd.DataFrame:
    """Every assessment-type contact: (true_id, la_code, date, assessor)."""
    health = health_referrals(truth)
    sen2 = with_true_id(truth, "education_sen2").drop_duplicates(
        ["true_id", "la_code", "received_date"]
    )
    cin = with_true_id(truth, "care_cin").drop_duplicates(
        ["true_id", "la_code", "cin_referral_date"]
    )
    columns = ["true_id", "la_code", "date", "assessor"]
    return pd.concat(
        [
            health.assign(date=health.referral_received_date, assessor=health.service)[columns],
            sen2.assign(date=sen2.received_date, assessor="education")[columns],
            cin.assign(date=cin.cin_referral_date, assessor="care")[columns],
        ],
        ignore_index=True,
    ).assign(date=lambda f: dates(f.date))


def repeated_assessments(truth: Truth) -> pd.DataFrame:
    """Children with a contact in the period: share with two contacts by different assessors
    at most 84 days apart, the later in the period."""
    contacts = assessment_contacts(truth)
    in_year = contacts[in_period(contacts.date, truth.period)]
    pairs = in_year.merge(contacts, on="true_id", suffixes=("", "_earlier"))
    gap = (pairs.date - pairs.date_earlier).dt.days
    repeated = pairs[
        (pairs.assessor != pairs.assessor_earlier) & (gap >= 0) & (gap <= REPEAT_WINDOW_DAYS)
    ]
    kids = children(truth)
    assessed = kids[kids.index.isin(in_year.true_id)]
    assessed = assessed.assign(hit=assessed.index.isin(repeated.true_id).astype(int), one=1)
    return cells(assessed, ["sen_status"], "hit", "one")


def first_contact_to_ehc_request(truth: Truth) -> pd.DataFrame:
    """Per EHC request received in the period whose child had a health referral or CIN
    referral on or before it: weeks from the earliest such contact; request's own area."""
    sen2 = with_true_id(truth, "education_sen2").drop_duplicates(
        ["true_id", "la_code", "received_date"]
    )
    requests = received_in_period(sen2, "received_date", truth).assign(
        received=lambda f: dates(f.received_date)
    )
    contacts = assessment_contacts(truth)
    contacts = contacts[contacts.assessor != "education"]
    pairs = requests.merge(contacts[["true_id", "date"]], on="true_id")
    pairs = pairs[pairs.date <= pairs.received]
    first = pairs.groupby(["true_id", "la_code", "received"]).date.min().reset_index()
    first = first.assign(measure=(first.received - first.date).dt.days / 7)
    return with_child(first, children(truth), area="own")


def referral_flows(truth: Truth) -> pd.DataFrame:
    """Referrals received in the period from another service, by flow, in the receiving
    service's area."""
    health = received_in_period(health_referrals(truth), "referral_received_date", truth)
    cin = with_true_id(truth, "care_cin").drop_duplicates(
        ["true_id", "la_code", "cin_referral_date"]
    )
    cin = received_in_period(cin, "cin_referral_date", truth)
    sen2 = with_true_id(truth, "education_sen2").drop_duplicates(
        ["true_id", "la_code", "received_date"]
    )
    sen2 = received_in_period(sen2, "received_date", truth)
    flows = pd.concat(
        [
            health.assign(flow=health.referral_source.map(HEALTH_FLOWS)),
            cin.assign(flow=cin.referral_source.map(CIN_FLOWS)),
            sen2.assign(flow=sen2.request_source.map(SEN2_FLOWS)),
        ],
        ignore_index=True,
    ).dropna(subset=["flow"])
    return cells(flows.assign(one=1), ["flow"], "one", None)


# --- data quality -------------------------------------------------------------------------
def identifier_shares(truth: Truth) -> dict[str, pd.DataFrame]:
    """Person records (agency, local id) per identifier, recorded and valid, from the raw
    identifiers."""
    records = []
    for (agency, identifier), extracts in IDENTIFIERS.items():
        rows = pd.concat([truth.extract(e)[["local_id", "la_code", identifier]] for e in extracts])
        rows = rows.drop_duplicates(["local_id", "la_code"])
        value = rows[identifier]
        records.append(
            pd.DataFrame(
                {
                    "la_code": rows.la_code,
                    "identifier": f"{agency}:{identifier}",
                    "recorded": value.notna() & (value.fillna("").str.strip() != ""),
                    "valid": value.map(VALIDATORS[identifier]),
                    "one": 1,
                }
            )
        )
    frame = pd.concat(records, ignore_index=True)
    frame["recorded"] = frame.recorded.astype(int)
    frame["valid"] = frame.valid.astype(int)
    return {
        "identifier_recorded_share": cells(frame, ["identifier"], "recorded", "one"),
        "identifier_valid_share": cells(frame, ["identifier"], "valid", "one"),
    }


def linkage_rate(truth: Truth) -> pd.DataFrame:
    """For each agency and other agency: children known to the first, share known to both."""
    kids = children(truth)
    known = {
        agency: set(
            pd.concat(
                [
                    with_true_id(truth, name).true_id
                    for name in truth.extracts
                    if name.startswith(agency)
                ]
            )
        )
        for agency in ("education", "health", "care")
    }
    rows = []
    for agency, members in known.items():
        for other, others in known.items():
            if other != agency:
                part = kids[kids.index.isin(members)]
                rows.append(
                    part.assign(
                        agency_pair=f"{agency}->{other}",
                        hit=part.index.isin(others).astype(int),
                        one=1,
                    )
                )
    return cells(pd.concat(rows), ["agency_pair"], "hit", "one")


# --- activity -----------------------------------------------------------------------------
def activity_counts(truth: Truth) -> dict[str, pd.DataFrame]:
    """Each activity count of the period, in the area of the record counted (contacts: the
    child's area, as dna_rate's)."""
    kids = children(truth)
    health = with_child(
        received_in_period(health_referrals(truth), "referral_received_date", truth),
        kids,
        area="own",
    )
    contacts = with_child(with_true_id(truth, "health_referrals"), kids)
    contacts["attended"] = contacts.contacts_attended.astype(int)
    sen2 = with_true_id(truth, "education_sen2").drop_duplicates(
        ["true_id", "la_code", "received_date"]
    )
    cin = with_true_id(truth, "care_cin").drop_duplicates(
        ["true_id", "la_code", "cin_referral_date"]
    )
    lac = with_true_id(truth, "care_lac").drop_duplicates(["true_id", "la_code", "decom"])
    return {
        "health_referrals_received": cells(
            health.assign(one=1), ["service", "sen_status"], "one", None
        ),
        "health_contacts_attended": cells(contacts, ["service", "sen_status"], "attended", None),
        "ehc_requests_received": cells(
            with_child(received_in_period(sen2, "received_date", truth), kids, "own").assign(one=1),
            ["sen_status"],
            "one",
            None,
        ),
        "cin_referrals_received": cells(
            with_child(received_in_period(cin, "cin_referral_date", truth), kids, "own").assign(
                one=1
            ),
            ["sen_status"],
            "one",
            None,
        ),
        "lac_episodes_started": cells(
            with_child(received_in_period(lac, "decom", truth), kids, "own").assign(one=1),
            ["sen_status"],
            "one",
            None,
        ),
    }
