"""Write the corpus of bad deliveries in this folder: one small file per kind of bad input and
`cases.json`, the exact outcome each must produce (status, reason, quarantined rows and rules).

The files are committed; rerun this only to change the corpus:
    .venv/bin/python tests/bad_inputs/make_corpus.py
Base rows are synthetic people pseudonymised with a fixed corpus key (not a real key).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from joinedup import pseudonymise as ps
from joinedup.contracts import contract

HERE = Path(__file__).resolve().parent
KEY = b"bad-input-corpus-key-not-a-secret-0123456789"
PERIOD = "2024-25"
LA = "E09000099"
PEOPLE = [
    ("HLT-1", "9991000003", "Amelia", "Khan", date(2015, 3, 7), "F", "RV1 2AB", "APKN"),
    ("HLT-2", "9991000011", "Oliver", "Smith", date(2012, 11, 21), "M", "RV2 3CD", "WBRI"),
    ("HLT-3", "9991000038", "Zoe", "Adeyemi", date(2018, 6, 2), "F", "RV3 4EF", "BAFR"),
    ("HLT-4", "9991000046", "Harry", "Jones", date(2010, 1, 15), "M", "RV1 5GH", "WBRI"),
    ("HLT-5", "9991000054", "Maya", "Patel", date(2016, 9, 30), "F", "RV4 6JK", "AIND"),
    ("HLT-6", "9991000062", "Leo", "Nowak", date(2013, 4, 11), "M", "RV2 7LM", "WOTH"),
]
ADDRESSES = [
    "12 Quarry Road",
    "Flat 3, 40 Mill Lane",
    "7 Orchard Close",
    "101 High Street",
    "2a Church Avenue",
    "Rose Cottage, 5 Green Lane",
]
FIELDS = ("local_id", "forename", "surname", "dob", "sex", "postcode", "address", "ethnicity")


def identity(agency: str, person: tuple, nhs: bool, upn: str | None) -> dict:
    """The pseudonymised identity columns of one person, as the agency's tool derives them."""
    local_id, nhs_number, forename, surname, dob, sex, postcode, ethnicity = person
    raw = {
        "local_id": local_id,
        "forename": forename,
        "surname": surname,
        "dob": dob,
        "sex": sex,
        "postcode": postcode,
        "address": ADDRESSES[PEOPLE.index(person)],
        "ethnicity": ethnicity,
    }
    fields = list(FIELDS)
    if nhs:
        raw["nhs_number"], fields = nhs_number, [*fields, "nhs_number"]
    if upn is not None:
        raw["upn"], fields = upn, [*fields, "upn"]
    table = pa.Table.from_pylist([raw])
    return ps.pseudonymise_identity_frame(table, agency, KEY, fields).to_pylist()[0]


def upn_of(i: int) -> str:
    body = f"99110002401{i}"
    return ps.upn_check_letter(body) + body


def referral_rows() -> list[dict]:
    rows = []
    for i, person in enumerate(PEOPLE):
        rows.append(
            identity("health", person, nhs=True, upn=None)
            | {
                "la_code": LA,
                "dataset": "MHSDS" if i % 2 else "CSDS",
                "service": "CAMHS" if i % 2 else "SLT",
                "referral_received_date": f"2024-{10 + i % 3:02d}-0{1 + i}",
                "referral_source": "GP",
                "first_attended_contact_date": f"2025-01-1{i}",
                "discharge_date": "2025-06-30" if i == 0 else None,
                "contacts_attended": str(3 + i),
                "contacts_dna": str(i % 2),
            }
        )
    return rows


def census_rows() -> list[dict]:
    provisions = ["N", "K", "E", "N", "K", "N"]
    needs = [None, "SLCN", "ASD", None, "SEMH", None]
    rows = []
    for i, person in enumerate(PEOPLE):
        rows.append(
            identity("education", person, nhs=False, upn=upn_of(i))
            | {
                "la_code": LA,
                "school_urn": f"10{i}234",
                "ncyear": str(3 + i),
                "sen_provision": provisions[i],
                "primary_need": needs[i],
                "secondary_need": None,
                "fsm_eligible": "true" if i % 2 else "false",
                "sessions_possible": "380",
                "sessions_authorised": str(10 + i),
                "sessions_unauthorised": str(2 * i),
            }
        )
    return rows


def exclusion_rows() -> list[dict]:
    rows = []
    for i, person in enumerate(PEOPLE[:4]):
        rows.append(
            identity("education", person, nhs=False, upn=upn_of(i))
            | {
                "la_code": LA,
                "school_urn": f"10{i}234",
                "start_date": f"2024-11-0{1 + i}",
                "category": "PERM" if i == 3 else "SUSP",
                "reason": "DB",
                "sessions": None if i == 3 else "2",
                "sen_provision": "K",
                "reinstatement_date": None if i == 3 else f"2024-11-0{2 + i}",
            }
        )
    return rows


BASES: dict[str, Callable[[], list[dict]]] = {
    "health_referrals": referral_rows,
    "education_census": census_rows,
    "education_exclusions": exclusion_rows,
}
AGENCY = {"health_referrals": "health", "education_census": "education"}
AGENCY["education_exclusions"] = "education"
AGENCY["education_sen2"] = "education"


def columns(extract: str) -> list[str]:
    return contract(extract).pseudonymised_schema().names


def to_csv(rows: list[dict], names: list[str], delimiter: str = ",", uk_dates: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        values = []
        for name in names:
            value = row.get(name)
            if uk_dates and isinstance(value, str) and len(value) == 10 and value[4] == "-":
                value = f"{value[8:10]}/{value[5:7]}/{value[0:4]}"
            values.append("" if value is None else value)
        writer.writerow(values)
    return out.getvalue()


def edited(extract: str, row: int, **changes) -> list[dict]:
    """The base rows with data row `row` (1-based) changed."""
    rows = BASES[extract]()
    rows[row - 1] = rows[row - 1] | changes
    return rows


CASES: list[dict] = []


def case(name: str, extract: str, content: str | bytes, expect: dict, suffix: str = ".csv") -> None:
    path = HERE / f"{name}{suffix}"
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(data)
    CASES.append({"file": path.name, "extract": extract, "agency": AGENCY[extract], **expect})


def quarantined(rows_received: int, *failures: tuple[int, str]) -> dict:
    return {
        "status": "accepted",
        "rows_received": rows_received,
        "quarantined": [list(f) for f in failures],
    }


def rejected(reason: str) -> dict:
    return {"status": "rejected", "reason": reason}


def write_corpus() -> None:
    hr, cen, exc = "health_referrals", "education_census", "education_exclusions"
    h_names, c_names, e_names = columns(hr), columns(cen), columns(exc)
    good = to_csv(referral_rows(), h_names)
    lines = good.splitlines(keepends=True)

    # File-level problems: the delivery is rejected with one message.
    case("empty_file", hr, b"", rejected("empty"))
    case("header_only", hr, lines[0], rejected("no data rows"))
    case(
        "truncated_file",
        hr,
        "".join(lines[:4]) + lines[4][: len(lines[4]) // 3],
        rejected("truncated"),
    )
    case(
        "missing_column",
        hr,
        to_csv(referral_rows(), [n for n in h_names if n != "service"]),
        rejected(r"missing \['service'\]"),
    )
    case(
        "unexpected_column",
        hr,
        to_csv([r | {"surname": "SMITH"} for r in referral_rows()], [*h_names, "surname"]),
        rejected(r"unexpected \['surname'\]"),
    )
    case(
        "not_parquet",
        hr,
        b"PAR1 this is not parquet at all",
        rejected("not a readable Parquet"),
        suffix=".parquet",
    )
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(referral_rows()), buffer)
    case(
        "truncated_parquet",
        hr,
        buffer.getvalue()[: buffer.tell() // 2],
        rejected("not a readable Parquet"),
        suffix=".parquet",
    )
    later = [
        r
        | {
            "referral_received_date": "2025-10-01",
            "first_attended_contact_date": None,
            "discharge_date": None,
        }
        for r in referral_rows()
    ]
    case("wrong_period", hr, to_csv(later, h_names), rejected("wrong period"))
    case("binary_garbage", hr, bytes(range(256)) * 4, rejected("."))

    # Accepted formats: every row accepted.
    case("utf8_with_bom", hr, "\ufeff" + good, quarantined(6))
    case(
        "windows_1252_semicolon",
        hr,
        to_csv(referral_rows(), h_names, delimiter=";").encode("cp1252"),
        quarantined(6),
    )
    case("tab_separated", hr, to_csv(referral_rows(), h_names, delimiter="\t"), quarantined(6))
    case("pipe_separated", hr, to_csv(referral_rows(), h_names, delimiter="|"), quarantined(6))
    case("uk_dates", hr, to_csv(referral_rows(), h_names, uk_dates=True), quarantined(6))
    header_upper = lines[0].upper()
    case("header_in_capitals", hr, header_upper + "".join(lines[1:]), quarantined(6))

    # Structural row problems: the row is quarantined, the rest accepted.
    case(
        "duplicate_header_row",
        hr,
        "".join([*lines[:4], lines[0], *lines[4:]]),
        quarantined(7, (4, "duplicate_header")),
    )
    case(
        "extra_field",
        hr,
        "".join([*lines[:2], lines[2].rstrip("\n") + ",surplus\n", *lines[3:]]),
        quarantined(6, (2, "field_count")),
    )
    case(
        "missing_field",
        hr,
        "".join([*lines[:3], lines[3].rsplit(",", 1)[0] + "\n", *lines[4:]]),
        quarantined(6, (3, "field_count")),
    )

    # Values that do not parse as their contract type.
    case(
        "impossible_date",
        hr,
        to_csv(edited(hr, 2, referral_received_date="31/02/2024"), h_names),
        quarantined(6, (2, "type:referral_received_date")),
    )
    case(
        "date_not_known",
        hr,
        to_csv(edited(hr, 5, first_attended_contact_date="n/k"), h_names),
        quarantined(6, (5, "type:first_attended_contact_date")),
    )
    case(
        "month_13",
        hr,
        to_csv(edited(hr, 1, discharge_date="2025-13-01"), h_names),
        quarantined(6, (1, "type:discharge_date")),
    )
    case(
        "words_for_numbers",
        hr,
        to_csv(edited(hr, 3, contacts_attended="twelve"), h_names),
        quarantined(6, (3, "type:contacts_attended")),
    )
    case(
        "bad_boolean",
        cen,
        to_csv(edited(cen, 2, fsm_eligible="maybe"), c_names),
        quarantined(6, (2, "type:fsm_eligible")),
    )

    # Row-level rules of the Great Expectations suites.
    case(
        "code_outside_list",
        hr,
        to_csv(edited(hr, 4, service="SALT"), h_names),
        quarantined(6, (4, "codes:service")),
    )
    case(
        "missing_required",
        hr,
        to_csv(edited(hr, 6, referral_source=None), h_names),
        quarantined(6, (6, "required:referral_source")),
    )
    case(
        "contact_before_referral",
        hr,
        to_csv(edited(hr, 2, first_attended_contact_date="2024-09-01"), h_names),
        quarantined(6, (2, "order:referral_received_date<=first_attended_contact_date")),
    )
    case(
        "referral_after_period_end",
        hr,
        to_csv(
            edited(hr, 3, referral_received_date="2025-09-02", first_attended_contact_date=None),
            h_names,
        ),
        quarantined(6, (3, "not_after_period_end:referral_received_date")),
    )
    dup = referral_rows()
    case(
        "duplicate_key",
        hr,
        to_csv([*dup, dup[1]], h_names),
        quarantined(
            7,
            (2, "key:person_token,service,referral_received_date"),
            (7, "key:person_token,service,referral_received_date"),
        ),
    )
    case(
        "invalid_sex_code",
        hr,
        to_csv(edited(hr, 1, sex="X"), h_names),
        quarantined(6, (1, "codes:sex")),
    )
    case(
        "malformed_token",
        hr,
        to_csv(edited(hr, 5, person_token="not-a-token"), h_names),
        quarantined(6, (5, "token:person_token")),
    )
    case(
        "missing_person_token",
        hr,
        to_csv(edited(hr, 4, person_token=None), h_names),
        quarantined(6, (4, "required:person_token")),
    )
    case(
        "bad_la_code",
        hr,
        to_csv(edited(hr, 2, la_code="E99"), h_names),
        quarantined(6, (2, "pattern:la_code")),
    )
    case(
        "short_bloom_filter",
        hr,
        to_csv(edited(hr, 3, surname_bloom="ab12"), h_names),
        quarantined(6, (3, "bloom:surname_bloom")),
    )
    case(
        "negative_count",
        hr,
        to_csv(edited(hr, 6, contacts_dna="-2"), h_names),
        quarantined(6, (6, "range:contacts_dna")),
    )
    case(
        "ehc_plan_without_need",
        cen,
        to_csv(edited(cen, 3, primary_need=None), c_names),
        quarantined(6, (3, "required_if:primary_need")),
    )
    case(
        "absence_above_possible",
        cen,
        to_csv(edited(cen, 4, sessions_authorised="400"), c_names),
        quarantined(
            6, (4, "sum_not_above:sessions_authorised+sessions_unauthorised<=sessions_possible")
        ),
    )
    case(
        "permanent_exclusion_with_return",
        exc,
        to_csv(edited(exc, 4, reinstatement_date="2024-12-01"), e_names),
        quarantined(4, (4, "null_if:reinstatement_date")),
    )
    case(
        "exclusion_before_period",
        exc,
        to_csv(edited(exc, 1, start_date="2024-08-20", reinstatement_date="2024-08-21"), e_names),
        quarantined(4, (1, "in_period:start_date")),
    )
    case(
        "several_rules_one_row",
        hr,
        to_csv(edited(hr, 2, service="SALT", contacts_attended="lots"), h_names),
        quarantined(6, (2, "type:contacts_attended")),
    )

    case(
        "born_before_the_age_range",
        hr,
        to_csv(edited(hr, 4, birth_ym="1990-05"), h_names),
        quarantined(6, (4, "age_0_25:birth_ym")),
    )
    many = [
        row | {"first_attended_contact_date": None, "discharge_date": None, "service": service}
        for service in ("SLT", "OT", "PHYSIO", "PAEDS", "CAMHS", "SLT")
        for row in referral_rows()
    ]
    for i, row in enumerate(many):
        row["referral_received_date"] = f"2024-{9 + i // 28:02d}-{1 + i % 28:02d}"
        if i % 3:
            row.update(nhs_token=None, nhs_near_tokens=None, nhs_status="missing")
    case(
        "nhs_numbers_mostly_missing",
        hr,
        to_csv(many, h_names),
        {
            "status": "held",
            "rows_received": len(many),
            "quarantined": [],
            "reason": "completeness:nhs_token",
        },
    )
    sen2 = {
        "la_code": LA,
        "received_date": "2024-01-10",
        "request_source": "PAR",
        "request_outcome": "A",
        "request_outcome_date": "2024-03-01",
        "assessment_outcome": "I",
        "assessment_outcome_date": "2024-05-20",
        "week20_exception": "false",
        "plan_start_date": "2024-05-27",
        "primary_need": "ASD",
    }
    plans = [
        identity("education", p, nhs=False, upn=upn_of(i)) | sen2 for i, p in enumerate(PEOPLE[:3])
    ]
    plans[1] = plans[1] | {"plan_start_date": "2024-04-30"}
    case(
        "plan_issued_before_assessment_outcome",
        "education_sen2",
        to_csv(plans, columns("education_sen2")),
        quarantined(3, (2, "order:assessment_outcome_date<=plan_start_date")),
    )

    (HERE / "cases.json").write_text(json.dumps(CASES, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_corpus()
    print(f"{len(CASES)} cases written to {HERE}")
