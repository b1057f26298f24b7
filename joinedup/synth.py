"""Synthetic local areas: the built-in default data of joinedup.

Three fictional areas of children and young people aged 0-25, written as the identifiable
extract each agency's system would export (education, health, social care), plus a ground truth
kept apart. Calibrated to the national figures in the domain notes (section 4) and varied by
area; seeded, so the same seed writes byte-identical files.

Each agency exports in its own style (EXPORT_STYLES: encoding, delimiter, date format, line
ending) and lets a few bad rows through (BAD_ROW_RATE, BAD_ROW_KINDS): codes outside their list,
gaps, unparseable or impossible dates, dates out of order or after the period, duplicates, a
ragged row, a repeated header. The truth lists every one in `bad_rows.parquet`.

Dates are handled as day numbers (days since 1970-01-01, float64 with NaN for "no date") until
they are written.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from joinedup.contracts import Contract, Period, agency_contracts, contracts, identity_columns
from joinedup.pseudonymise import (
    NHS_WEIGHTS,
    UPN_LETTERS,
    fold_accents,
    nhs_check_digit,
    nickname_table,
    upn_check_letter,
)
from joinedup.settings import AGENCIES, Settings

DATA_DIR = Path(__file__).resolve().parent / "data"
NHS_PREFIXES = tuple(range(999, 899, -1))  # 999: the test range; 900-998: never issued
EPOCH = date(1970, 1, 1)
YEAR_DAYS = 365.25
MAX_AGE = 25
MAX_AGE_DAYS = (MAX_AGE + 1) * 365 - 7
MIN_CHILDREN = 50


@dataclass(frozen=True)
class Area:
    """One synthetic local area and how it differs from the national picture."""

    la_code: str
    name: str
    kind: str
    size: int  # children and young people aged 0-25 at scale 1.0
    la_number: str  # DfE LA number: the first three digits of a UPN body
    districts: tuple[str, ...]  # fictional postcode outward codes
    households_per_postcode: float
    ethnicity: Mapping[str, float]
    fsm_factor: float
    sen_factor: float
    semh_factor: float
    absence_factor: float
    suspension_factor: float
    within_20_weeks: float  # share of new EHC plans issued within 20 weeks
    wait_factor: float  # multiplies the national median health waits
    dna_rate: float  # share of booked health contacts not attended
    care_factor: float  # multiplies children-in-need and looked-after rates
    move_factor: float  # multiplies the 'moved' noise rates


# The calibration tables below are laid out by hand, several entries a line.
# fmt: off
AREAS: tuple[Area, ...] = (
    Area(
        la_code="E09000099", name="Riverside", kind="urban borough", size=8000, la_number="991",
        districts=tuple(f"RV{i}" for i in range(1, 10)), households_per_postcode=4.0,
        ethnicity={
            "WBRI": 0.30, "WIRI": 0.02, "WIRT": 0.005, "WROM": 0.01, "WOTH": 0.115,
            "MWBC": 0.035, "MWBA": 0.025, "MWAS": 0.02, "MOTH": 0.02,
            "AIND": 0.07, "APKN": 0.07, "ABAN": 0.08, "AOTH": 0.03,
            "BAFR": 0.10, "BCRB": 0.04, "BOTH": 0.01, "CHNE": 0.015, "OOTH": 0.035,
        },
        fsm_factor=1.25, sen_factor=1.0, semh_factor=1.0, absence_factor=1.0,
        suspension_factor=1.05, within_20_weeks=0.40, wait_factor=1.05, dna_rate=0.09,
        care_factor=1.15, move_factor=1.5,
    ),
    Area(
        la_code="E10000099", name="Shirehampton", kind="county", size=10000, la_number="992",
        districts=tuple(f"SH{i}" for i in range(1, 21)), households_per_postcode=2.0,
        ethnicity={
            "WBRI": 0.86, "WIRI": 0.01, "WIRT": 0.005, "WROM": 0.005, "WOTH": 0.04,
            "MWBC": 0.01, "MWBA": 0.005, "MWAS": 0.01, "MOTH": 0.01,
            "AIND": 0.015, "APKN": 0.01, "ABAN": 0.003, "AOTH": 0.005,
            "BAFR": 0.006, "BCRB": 0.003, "BOTH": 0.001, "CHNE": 0.003, "OOTH": 0.004,
        },
        fsm_factor=0.68, sen_factor=0.94, semh_factor=0.9, absence_factor=0.92,
        suspension_factor=0.83, within_20_weeks=0.55, wait_factor=0.9, dna_rate=0.07,
        care_factor=0.8, move_factor=0.7,
    ),
    Area(
        # SX, not SM: SM is a real postcode area (Sutton); SX is not allocated.
        la_code="E07000099", name="Saltmarsh", kind="coastal district", size=4000,
        la_number="993", districts=tuple(f"SX{i}" for i in range(1, 7)),
        households_per_postcode=2.5,
        ethnicity={
            "WBRI": 0.88, "WIRI": 0.005, "WIRT": 0.01, "WROM": 0.01, "WOTH": 0.04,
            "MWBC": 0.01, "MWBA": 0.005, "MWAS": 0.008, "MOTH": 0.007,
            "AIND": 0.005, "APKN": 0.004, "ABAN": 0.003, "AOTH": 0.003,
            "BAFR": 0.003, "BCRB": 0.001, "BOTH": 0.001, "CHNE": 0.002, "OOTH": 0.003,
        },
        fsm_factor=1.35, sen_factor=1.15, semh_factor=1.5, absence_factor=1.2,
        suspension_factor=1.4, within_20_weeks=0.35, wait_factor=1.2, dna_rate=0.10,
        care_factor=1.35, move_factor=1.1,
    ),
)

# --- Population -----------------------------------------------------------------------------
MALE_SHARE = 0.51
TWIN_SHARE = 0.03  # share of children who are one of a pair of twins
SAME_SEX_TWINS = 0.65
HOUSEHOLD_SIZES = {1: 0.45, 2: 0.38, 3: 0.12, 4: 0.05}  # children 0-25 per household
SIBLING_GAP_YEARS = (1.2, 6.0)
HALF_SIBLING_SHARE = 0.12  # households whose younger children carry another surname
SCHOOL_AGES = (4, 17)  # age on 31 August: reception to year 13
ON_CENSUS_SHARE = 0.94
SPECIAL_SCHOOL_SHARE = 0.42  # EHC plan pupils in special schools

# --- Education (DfE figures; see the domain notes) ------------------------------------------
EHC_SHARE = 0.053
SEN_SUPPORT_SHARE = 0.142
BOYS_SHARE = {"E": 0.71, "K": 0.64}
EHC_SHARE_OUTSIDE_SCHOOL = {0: 0.002, 1: 0.004, 2: 0.008, 3: 0.012, 18: 0.045, 19: 0.035}
EHC_SHARE_ADULT = 0.01  # ages 20-25
EHC_NEEDS = {
    "ASD": 31.5, "SLCN": 21.3, "SEMH": 20.7, "MLD": 10.6, "SLD": 4.0, "PD": 3.9, "SPLD": 2.3,
    "HI": 1.4, "PMLD": 1.3, "OTH": 1.2, "VI": 0.8, "DS": 0.7, "MSI": 0.3,
}
SEN_SUPPORT_NEEDS = {
    "SLCN": 24.0, "SEMH": 20.0, "MLD": 14.0, "SPLD": 13.0, "ASD": 10.0, "NSA": 7.0, "OTH": 4.5,
    "PD": 2.5, "HI": 1.6, "VI": 0.8, "SLD": 0.6, "DS": 0.2, "MSI": 0.2, "PMLD": 0.1,
}
NEED_AGE_FACTORS = {  # under 5, 5-10, 11 and over
    "early": {"SPLD": 0.0, "MLD": 0.3, "SEMH": 0.3, "SLCN": 2.0, "PD": 1.5},
    "primary": {"SLCN": 1.2, "SEMH": 0.85, "SPLD": 0.85},
    "secondary": {"SLCN": 0.8, "SEMH": 1.15, "SPLD": 1.15},
}
SECONDARY_NEED_SHARE = 0.25
FSM_SHARE = {"E": 0.438, "K": 0.393, "N": 0.222}
ABSENCE = {"E": (0.124, 0.346), "K": (0.103, 0.299), "N": (0.061, 0.182)}  # mean, persistent
PERSISTENT_ABSENCE = 0.10
FSM_ABSENCE_RATIO = 1.4
UNAUTHORISED_SHARE = {False: 0.30, True: 0.42}  # of absence, by FSM
UNAUTHORISED_CONCENTRATION = 4.0
FULL_YEAR_SESSIONS = (370, 390)
PART_YEAR_SESSIONS = (300, 369)
PART_YEAR_SHARE = 0.10
SUSPENSIONS_PER_100 = {"E": 29.0, "K": 33.0, "N": 6.35}  # 11.3 overall
PERMANENT_PER_100 = {"E": 0.27, "K": 0.39, "N": 0.075}  # 0.13 overall; 3.6x and 5.2x no SEN
FSM_SUSPENSION_RATIO = 2.0
SUSPENSION_DISPERSION = 0.1  # gamma shape of pupil propensity: ~5% suspended, ~2 each
SUSPENSION_YEAR_WEIGHT = np.array([0.15] * 3 + [0.4] * 4 + [2.2] * 5 + [0.5] * 2)  # ncyear 0-13
LUNCHTIME_SHARE = 0.03
SUSPENSION_SESSIONS = {1: 0.06, 2: 0.45, 3: 0.04, 4: 0.20, 6: 0.11, 8: 0.05, 10: 0.06, 20: 0.03}
REINSTATEMENT_RECORDED = 0.92
SUSPENSION_REASONS = {
    "DB": 40, "VA": 14, "PA": 10, "PP": 10, "VP": 8, "DA": 4, "DM": 3, "OW": 2, "BU": 2,
    "MT": 2, "TH": 1, "RA": 1, "SM": 1, "LG": 0.5, "DS": 0.5, "PH": 0.5,
}
PERMANENT_REASONS = {"DB": 30, "PA": 18, "PP": 15, "DA": 10, "VA": 10, "OW": 8, "SM": 3, "BU": 2}
# SEN2: requests, assessments, plans
REQUESTS_PER_CHILD_YEAR = 0.01
AGREED_TO_ASSESS = 0.654
PLAN_AFTER_ASSESSMENT = 0.936
OVER_52_WEEKS = 0.072
WEEK20_EXCEPTION = 0.03  # of assessments
DECISION_DAYS = (42.0, 6.0, 7, 112)  # mean, gamma shape, min, max
REQUEST_LOOKBACK_DAYS = 600  # older requests still open in the period are included
NOT_AGREED = {"N": 0.82, "W": 0.18}
NOT_ISSUED = {"N": 0.75, "W": 0.25}
REQUEST_SOURCES = {"SCH": 45, "PAR": 38, "HLT": 6, "OTH": 6, "SC": 3, "YP": 2}
NEW_PLAN_AGE_WEIGHT = {2: 3.0, 5: 3.0, 11: 1.5, 16: 0.4}  # age band start -> weight
OTHER_REQUEST_AGE_WEIGHT = {1: 1.5, 5: 1.0, 16: 0.5}

# --- Health (CSDS/MHSDS) -------------------------------------------------------------------
HEALTH_MAX_AGE = 18
REFERRAL_SHARE = {"E": 0.60, "K": 0.30, "N": 0.06}
EARLY_YEARS_REFERRAL = 0.08  # extra, ages 0-3
EXTRA_REFERRALS = {"E": 0.35, "K": 0.20, "N": 0.08}  # Poisson mean of further services
CARRIED_OVER_SHARE = 0.20  # referrals received in the year before, still open at its start
REJECTED_SHARE = 0.04  # referrals closed without a contact
WAITS = {  # median days to first attended contact, lognormal sigma (CAMHS: ~45% in 4 weeks)
    "SLT": (112, 0.6), "OT": (98, 0.6), "PHYSIO": (56, 0.6), "PAEDS": (140, 0.55),
    "CAMHS": (36, 1.0),
}
CONTACT_INTERVAL_DAYS = {"SLT": 21, "OT": 28, "PHYSIO": 21, "PAEDS": 120, "CAMHS": 14}
DISCHARGE_SHARE = {"SLT": 0.4, "OT": 0.45, "PHYSIO": 0.5, "PAEDS": 0.3, "CAMHS": 0.5}
DISCHARGE_MEAN_DAYS = 100.0
HEALTH_DATASET = {
    "SLT": "CSDS", "OT": "CSDS", "PHYSIO": "CSDS", "PAEDS": "CSDS", "CAMHS": "MHSDS",
}
SEND_SERVICES = {"PAEDS": 3, "SLT": 2.5, "OT": 2, "CAMHS": 1.5, "PHYSIO": 1}
NEED_SERVICES = {
    "SLCN": {"SLT": 6, "PAEDS": 2, "OT": 1, "CAMHS": 1, "PHYSIO": 0.2},
    "ASD": {"PAEDS": 4, "SLT": 3, "CAMHS": 3, "OT": 2, "PHYSIO": 0.2},
    "SEMH": {"CAMHS": 6, "PAEDS": 2, "SLT": 0.5, "OT": 0.5, "PHYSIO": 0.1},
    "PD": {"PHYSIO": 5, "OT": 4, "PAEDS": 2, "SLT": 0.5, "CAMHS": 0.5},
    "PMLD": {"PAEDS": 4, "PHYSIO": 4, "OT": 3, "SLT": 3, "CAMHS": 0.2},
    "SLD": {"PAEDS": 4, "SLT": 3, "OT": 2, "PHYSIO": 2, "CAMHS": 0.5},
    "SPLD": {"OT": 3, "PAEDS": 2, "SLT": 1, "CAMHS": 1, "PHYSIO": 0.3},
}
NO_SEN_SERVICES = {"CAMHS": 5, "PAEDS": 2, "SLT": 1.5, "PHYSIO": 1.5, "OT": 1}
EARLY_YEARS_SERVICES = {"SLT": 4, "PAEDS": 3, "PHYSIO": 2.5, "OT": 0.5}
REFERRAL_SOURCES = {
    "early": {"HV": 35, "GP": 35, "ACUTE": 12, "SELF": 8, "SC": 3, "OTH": 7},
    "school": {"GP": 35, "SCH": 30, "SELF": 10, "ACUTE": 8, "SC": 4, "OTH": 13},
    "camhs": {"GP": 40, "SCH": 30, "SELF": 15, "SC": 5, "ACUTE": 5, "OTH": 5},
}

# --- Social care (CIN census, SSDA903) ------------------------------------------------------
CARE_MAX_AGE = 17
CIN_SHARE = 0.033  # children in need, including looked-after children
CIN_BY_STATUS = {"E": 0.12, "K": 0.06}  # the no-SEN rate follows from CIN_SHARE
FSM_CIN_RATIO = 2.5
LAC_SHARE = 0.007
LAC_EHC_SHARE = 0.25
CIN_OF_LAC = 0.85
CPP_SHARE = {False: 0.12, True: 0.20}  # of CIN episodes, by looked after
CIN_ONGOING_SHARE = 0.45  # episodes open at the start of the period
CIN_REREFERRAL = 0.10
N2_SHARE = {"E": 0.35, "K": 0.12, "N": 0.02}
CIN_NEEDS = {"N1": 55, "N4": 17, "N5": 14, "N8": 5, "N3": 4, "N6": 2, "N9": 2, "N7": 1}
CIN_SOURCES = {"6": 30, "2A": 20, "10": 14, "5A": 10, "3A": 8, "1A": 8, "3B": 6, "4": 3, "9": 1}
NEED_DISABILITIES = {
    "ASD": ("AUT", "COMM"), "SLCN": ("COMM",), "SEMH": ("BEH",), "MLD": ("LD",),
    "SLD": ("LD", "PC"), "PMLD": ("LD", "PC", "MOB", "HAND", "INC"), "PD": ("MOB", "HAND"),
    "HI": ("HEAR",), "VI": ("VIS",), "MSI": ("HEAR", "VIS"), "SPLD": ("LD",),
    "DS": ("LD", "COMM"), "OTH": ("DDA",), "NSA": ("DDA",),
}
NO_SEN_DISABILITIES = ("MOB", "HAND", "PC", "CON", "DDA")
LAC_ONGOING_SHARE = 0.60
LAC_STATUS_NEW = {"V2": 0.45, "C1": 0.35, "L1": 0.08, "J2": 0.02, "V3": 0.10}
LAC_STATUS_ONGOING = {"C2": 0.58, "V2": 0.18, "C1": 0.08, "E1": 0.08, "V3": 0.05, "V4": 0.03}
LAC_RNE_ONGOING = {"S": 0.6, "P": 0.3, "L": 0.05, "B": 0.05}
LAC_PLACEMENTS = {"U4": 0.55, "U1": 0.15, "K2": 0.10, "H5": 0.10, "R1": 0.05, "P1": 0.05}
LAC_END_SHARE = 0.30
LAC_REENTRY = 0.10
LAC_CEASED = {"E4A": 0.40, "E45": 0.20, "E13": 0.15, "E8": 0.15, "E41": 0.10}

# --- Identifier noise, per agency ------------------------------------------------------------
# Probability that an agency's version of a child's identity carries each kind of error. Some
# kinds apply only where possible, and their rate is among those: 'nickname' where a nickname of
# the forename is known, 'dob_swap' where day <= 12, the identifier kinds where the child has
# that identifier, 'address_abbreviated' where the street type has a short form or the address a
# house number. Education holds UPNs, not NHS numbers; health holds NHS numbers, not UPNs; care
# holds both.
# - 'moved': the agency holds another address in the area (another postcode unit, and a house
#   on one of its streets), the same for every child of the household; drawn per household and
#   multiplied by Area.move_factor.
# - 'address_typo': one keying error in the house number (as often as its share of the
#   characters) or the street name; 'address_abbreviated': the street type
#   shortened (ROAD -> RD) or, half the time and always where it has no short form, the house
#   number left out; 'address_missing': no address lines (the postcode may still be there).
# - 'duplicate_record': the agency holds the child under a second local id (a second NHS trust
#   patient id, a child re-registered in the LA system, a second EMS record after a school move).
#   Some of the child's rows go to the second record, whose identity has its own noise, drawn
#   independently at these rates but with the identifiers missing at least DUPLICATE_ID_MISSING
#   of the time. In `generate` only children with two rows or more, one of them in an extract of
#   DUPLICATE_EXTRACTS, can have one, and their chance is raised so that the rate holds over all
#   the agency's children where enough can. The second record carries 'duplicate_record' in the
#   truth's noise; truth records keep (agency, local_id, true_id) for both.
NOISE_KINDS = (
    "nickname", "forename_typo", "surname_change", "surname_typo", "dob_swap", "dob_wrong",
    "moved", "postcode_missing", "nhs_missing", "nhs_invalid", "nhs_wrong_valid", "upn_missing",
    "upn_invalid", "upn_wrong_valid", "sex_unknown", "ethnicity_unrecorded", "address_typo",
    "address_abbreviated", "address_missing", "duplicate_record",
)
NOISE_RATES: dict[str, dict[str, float]] = {
    "education": {
        "nickname": 0.01, "forename_typo": 0.005, "surname_change": 0.01, "surname_typo": 0.005,
        "dob_swap": 0.002, "dob_wrong": 0.002, "moved": 0.025, "postcode_missing": 0.005,
        "upn_missing": 0.002, "upn_invalid": 0.003, "upn_wrong_valid": 0.001,
        "sex_unknown": 0.001, "ethnicity_unrecorded": 0.01, "address_typo": 0.005,
        "address_abbreviated": 0.01, "address_missing": 0.005, "duplicate_record": 0.002,
    },
    "health": {
        "nickname": 0.15, "forename_typo": 0.02, "surname_change": 0.015, "surname_typo": 0.02,
        "dob_swap": 0.006, "dob_wrong": 0.008, "moved": 0.06, "postcode_missing": 0.02,
        "nhs_missing": 0.02, "nhs_invalid": 0.01, "nhs_wrong_valid": 0.002,
        "sex_unknown": 0.005, "ethnicity_unrecorded": 0.08, "address_typo": 0.02,
        "address_abbreviated": 0.03, "address_missing": 0.02, "duplicate_record": 0.01,
    },
    "care": {
        "nickname": 0.15, "forename_typo": 0.03, "surname_change": 0.02, "surname_typo": 0.03,
        "dob_swap": 0.008, "dob_wrong": 0.01, "moved": 0.07, "postcode_missing": 0.05,
        "nhs_missing": 0.30, "nhs_invalid": 0.01, "nhs_wrong_valid": 0.002,
        "upn_missing": 0.15, "upn_invalid": 0.01, "upn_wrong_valid": 0.002,
        "sex_unknown": 0.01, "ethnicity_unrecorded": 0.03, "address_typo": 0.03,
        "address_abbreviated": 0.05, "address_missing": 0.04, "duplicate_record": 0.01,
    },
}
DUPLICATE_ID_MISSING = 0.2  # a second record often lacks the NHS number or UPN
# The extracts whose rows can sit on a child's second record. Education's census and exclusions
# stay on the first (a pupil's suspensions are counted against the census by local id).
DUPLICATE_EXTRACTS = {
    "education": ("education_sen2",),
    "health": ("health_referrals",),
    "care": ("care_cin", "care_lac"),
}
UNRECORDED_ETHNICITY = {"education": "REFU", "health": None, "care": "NOBT"}
LOCAL_ID_PREFIX = {"education": "EDU", "health": "HLT", "care": "CSC"}


# --- How each agency's system exports, and the bad rows it lets through ----------------------
@dataclass(frozen=True)
class ExportStyle:
    """How an agency's system writes its CSV exports."""

    encoding: str  # Python codec; 'utf-8-sig' writes a byte order mark
    delimiter: str
    date_format: str  # 'iso' (YYYY-MM-DD) or 'uk' (DD/MM/YYYY)
    line_terminator: str


EXPORT_STYLES: dict[str, ExportStyle] = {
    "education": ExportStyle("utf-8-sig", ",", "iso", "\n"),
    "health": ExportStyle("utf-8", ",", "uk", "\n"),
    # A Windows case-management system: Windows-1252 (names it cannot hold lose their accents,
    # as Windows' best-fit mapping does: Wiśniewski -> Wisniewski), semicolons, CRLF.
    "care": ExportStyle("cp1252", ";", "uk", "\r\n"),
}
# How each synthetic agency delivers its pseudonymised extracts to the landing zone
# (pseudonymise_tree's output_format).
LANDING_FORMATS: dict[str, str] = {"education": "parquet", "health": "csv", "care": "parquet"}

# Bad rows: every extract of at least MIN_ROWS_FOR_BAD_ROWS rows gets round(BAD_ROW_RATE x rows)
# bad rows (at least one), each of one kind, the kinds taken in turn (in a seeded order) from
# those that apply to the extract, so every kind occurs once an extract has had enough bad rows
# across the areas. A bad row is the record itself made bad (a real record with an error), never
# a child's last good record in its agency; 'duplicate_row' adds an exact copy (both copies are
# bad: the key is ambiguous), 'duplicate_header' repeats the header line in the middle of one
# file (DUPLICATE_HEADER_EXTRACT of the first area). SEN2 records of plans issued are never made
# bad: the census-E-implies-a-plan-record rule depends on them. Every bad row is listed in
# truth/<period>/bad_rows.parquet.
BAD_ROW_RATE = 0.005
MIN_ROWS_FOR_BAD_ROWS = 20
BAD_ROW_KINDS = (
    "code_not_in_list",  # a code outside its list (INVALID_CODES)
    "missing_required",  # the first required coded payload column left empty
    "unparseable_date",  # the second date of the extract's first order rule: BAD_DATES
    "non_numeric_integer",  # the first integer column: NON_NUMERIC
    "date_order",  # that second date set before the first (first contact before referral)
    "after_period_end",  # the period-rule date (not_after_period_end, in_period) after the end
    "perm_with_reinstatement",  # a permanent exclusion with a reinstatement date
    "absence_exceeds_possible",  # sessions authorised + unauthorised above sessions possible
    "sen_without_primary_need",  # SEN support or EHC plan pupil without a primary need
    "missing_local_id",
    "bad_dob",  # date of birth missing or impossible (30 February)
    "invalid_sex",  # INVALID_SEX_CODES
    "duplicate_row",  # an exact copy of the row right after it
    "ragged_row",  # a trailing delimiter: one field more than the header
    "duplicate_header",  # the header line again, mid-file
)
STRUCTURAL_KINDS = frozenset({"ragged_row", "duplicate_header"})  # left out at source
EXTRACT_KINDS = {  # kinds about one extract's own rules
    "perm_with_reinstatement": "education_exclusions",
    "absence_exceeds_possible": "education_census",
    "sen_without_primary_need": "education_census",
}
INVALID_CODES = {  # extract -> (column, a plausible code outside its list)
    "education_census": ("sen_provision", "S"),  # the pre-2014 School Action code
    "education_exclusions": ("reason", "OT"),  # 'Other', withdrawn from the return in 2020
    "education_sen2": ("request_source", "LA"),
    "health_referrals": ("service", "SALT"),  # the usual abbreviation, not the coded value
    "care_cin": ("primary_need_code", "N0"),
    "care_lac": ("placement", "Z1"),
}
BAD_DATES = ("31/02/2024", "2024-13-01", "n/k")
NON_NUMERIC = "twelve"
INVALID_SEX_CODES = ("X", "9")
DUPLICATE_HEADER_EXTRACT = "health_referrals"
PROTECTED_ROWS = {"education_sen2": ("assessment_outcome", "I")}  # extract -> (column, value)
STANDING_PLAN_YEARS = 10  # a standing EHC plan started at most this long before the period

# Surnames: the British weights in data/surnames.csv are people per 100,000 in England and
# Wales (Smith 1,260: 1.2-1.4% in the registers since 1853, surnamestudies.org.uk) and the 365
# names hold 40.4% of people. The other 59.6% carry rarer names: rare_surnames() adds them,
# spliced from the listed ones, with shares falling by rank at the exponent of Britain's surname
# profile (GB surname profiler: Robinson 3,523 per million at rank 15, Burton 942 at 128,
# Strain 22 at 5,799: an exponent of 1.08).
# Without them Smith was 3.1% of British surnames and two British children shared a surname 5.6
# times as often as in England (sum of squared shares 0.0056, not 0.0010). The other groups'
# weights are relative: their lists stand for the whole group, which keeps their names commoner
# than in life.
PER_HEAD_SURNAME_GROUP = "british"
PER_HEAD = 100_000
SURNAME_ZIPF_EXPONENT = 1.08
SPLICED_END = 4  # letters at least in the borrowed end of a made-up surname
SPLICE_ORDER_SEED = 20240  # the made-up names and their ranks are the same for every --seed


# Names: the name groups (data/forenames.csv, data/surnames.csv) each ethnicity draws from,
# (forename groups, surname groups) with weights.
BRITISH = {"british": 1.0}
ETHNIC_NAME_GROUPS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "WBRI": ({"british": 0.97, "irish": 0.03}, {"british": 0.96, "irish": 0.04}),
    "WIRI": ({"irish": 0.5, "british": 0.5}, {"irish": 0.85, "british": 0.15}),
    "WIRT": ({"irish": 0.6, "british": 0.4}, {"irish": 0.8, "british": 0.2}),
    "WROM": ({"european": 0.8, "british": 0.2}, {"european": 1.0}),
    "WOTH": ({"european": 0.75, "british": 0.25}, {"european": 0.9, "british": 0.1}),
    "MWBC": ({"british": 0.7, "caribbean": 0.3}, BRITISH),
    "MWBA": ({"british": 0.6, "african": 0.4}, {"british": 0.5, "african": 0.5}),
    "MWAS": ({"british": 0.7, "indian": 0.15, "muslim_south_asian": 0.15},
             {"british": 0.5, "indian": 0.25, "muslim_south_asian": 0.25}),
    "MOTH": ({"british": 0.6, "european": 0.2, "middle_eastern": 0.2},
             {"british": 0.6, "european": 0.2, "middle_eastern": 0.2}),
    "AIND": ({"indian": 1.0}, {"indian": 1.0}),
    "APKN": ({"muslim_south_asian": 1.0}, {"muslim_south_asian": 1.0}),
    "ABAN": ({"muslim_south_asian": 1.0}, {"muslim_south_asian": 1.0}),
    "AOTH": ({"indian": 0.4, "muslim_south_asian": 0.3, "middle_eastern": 0.3},
             {"indian": 0.4, "muslim_south_asian": 0.3, "middle_eastern": 0.3}),
    "BCRB": ({"caribbean": 0.6, "british": 0.4}, BRITISH),
    "BAFR": ({"african": 0.85, "british": 0.15}, {"african": 1.0}),
    "BOTH": ({"african": 0.5, "caribbean": 0.3, "british": 0.2}, {"african": 0.6, "british": 0.4}),
    "CHNE": ({"chinese": 0.5, "british": 0.5}, {"chinese": 1.0}),
    "OOTH": ({"middle_eastern": 0.85, "british": 0.15}, {"middle_eastern": 1.0}),
}
# fmt: on
POSTCODE_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
# Addresses: each postcode sector has its own streets (data/streets.csv x data/street_types.csv,
# about STREETS_PER_SECTOR_UNIT per unit in the sector), each postcode unit takes a few of them
# (STREETS_PER_UNIT), and each household a house number on one; no two households of a unit
# share an address.
STREETS_PER_UNIT = {1: 0.5, 2: 0.35, 3: 0.15}
STREETS_PER_SECTOR_UNIT = 0.6
HOUSE_NUMBERS = (1, 160)
STREAMS = (
    "people",
    "names",
    "sen2",
    "census",
    "exclusions",
    "health",
    "care",
    "identifiers",
    "noise_education",
    "noise_health",
    "noise_care",
    "local_ids",
    "sen2_plans",
    "bad_rows",
    "addresses",
    "duplicates",
    "linkage",
)  # fmt: skip  (append only: a stream's position seeds it)
TYPO_LETTERS = "abcdefghijklmnopqrstuvwxyz"

Days = np.ndarray  # day numbers, float64, NaN for no date


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote: counts per area, agency and extract, and every path."""

    period: str
    seed: int
    scale: float
    children: dict[str, int]  # la_code -> true children
    records: dict[str, dict[str, int]]  # agency -> la_code -> person records
    rows: dict[str, dict[str, int]]  # extract -> la_code -> data rows written, bad ones too
    bad_rows: dict[str, dict[str, int]]  # extract -> la_code -> bad rows among them
    paths: tuple[Path, ...]

    @property
    def total_rows(self) -> int:
        return sum(sum(by_area.values()) for by_area in self.rows.values())


@dataclass
class AreaData:
    """One simulated area: its children (truth) and the agency events about them."""

    area: Area
    people: pd.DataFrame
    events: dict[str, pd.DataFrame]  # extract name -> rows keyed by true_id
    addresses: AddressBook


# --- Small helpers ---------------------------------------------------------------------------
def day_number(when: date) -> int:
    return (when - EPOCH).days


def from_day_number(day: float) -> date:
    return EPOCH + timedelta(days=int(day))


def area_rng(seed: int, area_index: int, stream: str) -> np.random.Generator:
    """An independent random stream per area and purpose, so parts do not shift each other."""
    return np.random.default_rng([seed, area_index, STREAMS.index(stream)])


def agency_rng(seed: int, area_index: int, stream: str, agency: str) -> np.random.Generator:
    """An area's stream for one agency."""
    return np.random.default_rng([seed, area_index, STREAMS.index(stream), AGENCIES.index(agency)])


def pick(rng: np.random.Generator, weights: Mapping, size: int) -> np.ndarray:
    """Draw `size` keys of `weights` in proportion to their values."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=size, p=p / p.sum())]


def split_by_flag(mean: float, flag_share: float, ratio: float) -> tuple[float, float]:
    """Rates (with flag, without) whose ratio is `ratio` and whose average is `mean`."""
    without = mean / (flag_share * ratio + 1.0 - flag_share)
    return ratio * without, without


def ratio_for_share(target_share: float, prevalence: float) -> float:
    """Rate ratio making flagged children `target_share` of a group when `prevalence` carry it."""
    prevalence = min(max(prevalence, 1e-6), 1 - 1e-6)
    return target_share * (1 - prevalence) / ((1 - target_share) * prevalence)


def ages_on(dobs: np.ndarray, when: date) -> np.ndarray:
    """Age in whole years on `when` of each date of birth (day numbers)."""
    d = dobs.astype("int64").astype("datetime64[D]")
    year = d.astype("datetime64[Y]").astype(int) + 1970
    month = d.astype("datetime64[M]").astype(int) % 12 + 1
    dom = (d - d.astype("datetime64[M]")).astype(int) + 1
    before = (month > when.month) | ((month == when.month) & (dom > when.day))
    return when.year - year - before.astype(int)


def clamp_days(days: Days, last: int) -> Days:
    """Dates after `last` become no date."""
    return np.where(days > last, np.nan, days)


def gamma_days(rng: np.random.Generator, mean: float, shape: float, size: int) -> np.ndarray:
    return np.round(rng.gamma(shape, mean / shape, size))


def beta_tail(a: float, b: float, x: float) -> float:
    """P(X >= x) for X ~ Beta(a, b) with b > 1, by numerical integration."""
    grid = np.linspace(x, 1 - 1e-12, 8001)
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    pdf = np.exp(log_norm + (a - 1) * np.log(grid) + (b - 1) * np.log1p(-grid))
    return float(np.trapezoid(pdf, grid))


@cache
def absence_concentration(mean: float, persistent_share: float) -> float:
    """Beta concentration a+b giving mean absence `mean` and P(rate >= 10%) = persistent_share."""
    low, high = 0.05, 6.0
    for _ in range(50):
        mid = (low + high) / 2
        if beta_tail(mean * mid, (1 - mean) * mid, PERSISTENT_ABSENCE) < persistent_share:
            low = mid
        else:
            high = mid
    return (low + high) / 2


# --- Names -----------------------------------------------------------------------------------
NameTable = dict[str, tuple[np.ndarray, np.ndarray]]  # key -> (names, probabilities)


def _weighted_table(rows: list[dict[str, str]], key: Callable[[dict], str], name: str) -> NameTable:
    grouped: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        grouped.setdefault(key(row), []).append((row[name], float(row["weight"])))
    table: NameTable = {}
    for k, items in grouped.items():
        weights = np.array([w for _, w in items])
        table[k] = (np.array([n for n, _ in items], dtype=object), weights / weights.sum())
    return table


def _read_csv(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@cache
def forename_table() -> NameTable:
    """'group:sex' -> forenames and their frequencies."""
    return _weighted_table(
        _read_csv("forenames.csv"), lambda r: f"{r['group']}:{r['sex']}", "forename"
    )


@cache
def surname_table() -> NameTable:
    """Name group -> surnames and their frequencies (the British list with its rare tail)."""
    rows = _read_csv("surnames.csv")
    table = _weighted_table(rows, lambda r: r["group"], "surname")
    british = [r for r in rows if r["group"] == PER_HEAD_SURNAME_GROUP]
    names = np.array([r["surname"] for r in british], dtype=object)
    shares = np.array([float(r["weight"]) for r in british]) / PER_HEAD
    rare, rare_shares = rare_surnames(names, shares, exclude={r["surname"] for r in rows})
    table[PER_HEAD_SURNAME_GROUP] = (
        np.concatenate([names, rare]),
        np.concatenate([shares, rare_shares]),
    )
    return table


def rare_surnames(
    names: np.ndarray, shares: np.ndarray, exclude: set[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Surnames of the people a list of per-head shares leaves out, and their shares (Zipf).

    The commonest is as common as the rarest listed single name, and there are as many as it
    takes to hold the rest of the people at that exponent (about 10,400 for the British list).
    """
    single = np.array([str(n).isalpha() for n in names])
    left = 1.0 - float(shares.sum())
    made_up = spliced_surnames(names[single].tolist(), exclude)
    ranks = np.arange(len(names) + 1, len(names) + 1 + len(made_up), dtype=float)
    shape = ranks**-SURNAME_ZIPF_EXPONENT
    commonest = left * shape[0] / np.cumsum(shape)  # the first share, by how many there are
    count = min(len(made_up), int(np.searchsorted(-commonest, -shares[single].min())) + 1)
    return np.array(made_up[:count], dtype=object), shape[:count] * left / shape[:count].sum()


def spliced_surnames(names: Sequence[str], exclude: set[str]) -> list[str]:
    """Made-up surnames, the start of one name and the end of another, in a fixed random order.

    A name splits after its first vowels (Smi|th, Wi|lliams), so Smi + lliams = Smilliams. Ends
    of four letters or more and names of six or more keep English words out (Fi + le, Whi + ch).
    """
    parts = [split_after_first_vowels(n) for n in sorted(names)]
    starts = sorted({start for start, _ in parts})
    ends = sorted({end for _, end in parts if len(end) >= SPLICED_END and end.islower()})
    made_up = sorted(
        {
            start + end
            for start in starts
            for end in ends
            if 6 <= len(start + end) <= 12 and not has_triple_letter(start + end)
        }
        - exclude
    )
    order = np.random.default_rng(SPLICE_ORDER_SEED).permutation(len(made_up))
    return [made_up[i] for i in order]


def has_triple_letter(name: str) -> bool:
    return any(a == b == c for a, b, c in zip(name, name[1:], name[2:], strict=False))


def split_after_first_vowels(name: str) -> tuple[str, str]:
    """'Smith' -> ('Smi', 'th'): the name up to and including its first run of vowels."""
    vowel = [c.lower() in "aeiouy" for c in name]
    first = vowel.index(True) if True in vowel else len(name)
    last = first
    while last < len(name) and vowel[last]:
        last += 1
    return name[:last], name[last:]


@cache
def nicknames_by_canonical() -> dict[str, tuple[str, ...]]:
    """Canonical forename (upper case) -> its nicknames, from pseudonymise.nickname_table()."""
    found: dict[str, list[str]] = {}
    for nick, canonical in sorted(nickname_table().items()):
        if nick != canonical:
            found.setdefault(canonical, []).append(nick)
    return {k: tuple(v) for k, v in found.items()}


def draw_names(rng: np.random.Generator, keys: np.ndarray, table: NameTable) -> np.ndarray:
    """One name per key, drawn by frequency from the key's list."""
    out = np.empty(len(keys), dtype=object)
    for key in sorted(set(keys.tolist())):
        where = np.flatnonzero(keys == key)
        names, p = table[key]
        out[where] = names[rng.choice(len(names), size=len(where), p=p)]
    return out


def draw_name_groups(rng: np.random.Generator, ethnicity: np.ndarray, which: int) -> np.ndarray:
    """Name group per person from their ethnicity (which: 0 forename, 1 surname)."""
    out = np.empty(len(ethnicity), dtype=object)
    for eth in sorted(set(ethnicity.tolist())):
        where = np.flatnonzero(ethnicity == eth)
        out[where] = pick(rng, ETHNIC_NAME_GROUPS[eth][which], len(where))
    return out


def draw_surnames(rng: np.random.Generator, ethnicity: np.ndarray) -> np.ndarray:
    return draw_names(rng, draw_name_groups(rng, ethnicity, 1), surname_table())


def draw_forenames(rng: np.random.Generator, ethnicity: np.ndarray, sex: np.ndarray) -> np.ndarray:
    groups = draw_name_groups(rng, ethnicity, 0)
    keys = np.array([f"{g}:{s}" for g, s in zip(groups, sex, strict=True)], dtype=object)
    return draw_names(rng, keys, forename_table())


# --- Identifiers -----------------------------------------------------------------------------
def nhs_number(body: str) -> str | None:
    """A valid NHS number from nine digits, or None when no check digit exists."""
    check = nhs_check_digit(body)
    return None if check is None else body + str(check)


def nhs_check_digits(bodies: np.ndarray) -> np.ndarray:
    """Modulus 11 check digit of nine-digit bodies (integers); -1 where none exists (10)."""
    digits = (bodies[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    check = 11 - (digits @ np.array(NHS_WEIGHTS)) % 11
    return np.where(check == 11, 0, np.where(check == 10, -1, check))


def valid_nhs_numbers(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` unique valid NHS numbers: from the 999 test range (never issued to a real person)
    while it lasts (0.85 of its million bodies), then from 998, 997, ... 900, ranges outside
    every range issued in England and Wales (300-799), Scotland (CHI, 010-311) and Northern
    Ireland (320-399); only populations of over 850,000 children reach them."""
    space = 1_000_000
    found: list[np.ndarray] = []
    for prefix in NHS_PREFIXES:
        need = count - sum(len(f) for f in found)
        if need <= 0:
            break
        take = min(need, int(0.85 * space))
        candidates = rng.choice(space, size=min(space, int(take * 1.2) + 100), replace=False)
        bodies = prefix * space + candidates.astype(np.int64)
        check = nhs_check_digits(bodies)
        usable = (check >= 0) & (bodies != 999_999_999)  # not all one digit
        found.append((bodies[usable] * 10 + check[usable])[:take])
    numbers = np.concatenate(found) if found else np.array([], dtype=np.int64)
    if len(numbers) < count:
        raise ValueError(f"cannot make {count} unique unissued NHS numbers; lower the scale")
    return numbers.astype(str).astype(object)


def upn(body: str) -> str:
    return upn_check_letter(body) + body


def mistype_nhs(rng: np.random.Generator, value: str) -> str:
    """Another valid NHS number one digit away (a keying error that still passes the check)."""
    while True:
        pos = int(rng.integers(3, 9))
        digit = str((int(value[pos]) + int(rng.integers(1, 10))) % 10)
        other = nhs_number(value[:pos] + digit + value[pos + 1 : 9])
        if other is not None:
            return other


def invalidate_nhs(rng: np.random.Generator, value: str) -> str:
    """The same number with a wrong check digit (fails modulus 11)."""
    return value[:9] + str((int(value[9]) + int(rng.integers(1, 10))) % 10)


def upns_of(bodies: np.ndarray) -> np.ndarray:
    """UPNs of all-digit 12-digit bodies (integers): check letter, then the body; upn() for
    many at once."""
    digits = (bodies[:, None] // 10 ** np.arange(11, -1, -1, dtype=np.int64)) % 10
    letters = np.array(list(UPN_LETTERS), dtype=object)[(digits @ np.arange(2, 14)) % 23]
    return letters + np.char.zfill(bodies.astype(str), 12).astype(object)


def mistype_upn(rng: np.random.Generator, value: str) -> str:
    """Another valid UPN with one serial digit changed and its check letter recomputed."""
    pos = int(rng.integers(10, 13))
    digit = str((int(value[pos]) + int(rng.integers(1, 10))) % 10)
    return upn(value[1:pos] + digit + value[pos + 1 :])


def invalidate_upn(rng: np.random.Generator, value: str) -> str:
    """The same UPN with a wrong check letter."""
    others = [c for c in UPN_LETTERS if c != value[0]]
    return others[int(rng.integers(len(others)))] + value[1:]


# --- Population ------------------------------------------------------------------------------
def twin_household_rate() -> float:
    """Share of multi-child households with a twin pair that makes TWIN_SHARE of children twins."""
    mean_size = sum(k * p for k, p in HOUSEHOLD_SIZES.items())
    multi = sum(p for k, p in HOUSEHOLD_SIZES.items() if k >= 2)
    return TWIN_SHARE / 2 * mean_size / multi


def household_members(
    rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(household, age in days on 31 August, is twin) of n children, oldest first per household.

    Each household's siblings are spaced by SIBLING_GAP_YEARS (twins: the two youngest, no gap)
    and placed uniformly over 0-25 widened by their span; members outside 0-25 (not born yet,
    or older) are left out, which keeps the ages of children uniform."""
    sizes = pick(rng, HOUSEHOLD_SIZES, n).astype(int)
    twins = (sizes >= 2) & (rng.random(n) < twin_household_rate())
    gaps = rng.uniform(*SIBLING_GAP_YEARS, size=(n, 3)) * YEAR_DAYS
    gaps = np.where(np.arange(3)[None, :] < (sizes - 1)[:, None], gaps, 0.0)
    twin_rows = np.flatnonzero(twins)
    gaps[twin_rows, sizes[twin_rows] - 2] = 0.0
    oldest = rng.random(n) * (MAX_AGE_DAYS + gaps.sum(axis=1))
    offsets = np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
    household = np.repeat(np.arange(n), sizes)
    rank = np.arange(len(household)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ages = np.floor(oldest[household] - offsets[household, rank])
    twin = twins[household] & (rank >= sizes[household] - 2)
    kept = np.flatnonzero((ages >= 0) & (ages <= MAX_AGE_DAYS))[:n]
    household, ages, twin = household[kept], ages[kept], twin[kept]
    twin &= np.bincount(household, weights=twin)[household] == 2
    return np.unique(household, return_inverse=True)[1], ages, twin


def postcode_pool(rng: np.random.Generator, area: Area, count: int) -> np.ndarray:
    """`count` distinct postcodes in the area's fictional districts."""
    letters = np.array(list(POSTCODE_UNIT_LETTERS), dtype=object)
    if count > 0.8 * len(area.districts) * 10 * len(letters) ** 2:
        raise ValueError(f"{area.name} has too few districts for {count} postcodes")
    found = np.array([], dtype=object)
    while len(found) < count:
        size = count * 2
        districts = np.array(area.districts, dtype=object)
        district = districts[rng.integers(len(districts), size=size)]
        sector = rng.integers(10, size=size).astype(str).astype(object)
        unit = letters[rng.integers(len(letters), size=(size, 2))]
        drawn = district + " " + sector + unit[:, 0] + unit[:, 1]
        found = pd.unique(np.concatenate([found, drawn]))[:count]
    return found


@cache
def street_catalogue() -> tuple[np.ndarray, np.ndarray]:
    """Every street name (data/streets.csv x data/street_types.csv) and its frequency."""
    types = _read_csv("street_types.csv")
    names = [f"{r['street']} {t['type']}" for r in _read_csv("streets.csv") for t in types]
    weights = np.tile([float(t["weight"]) for t in types], len(names) // len(types))
    return np.array(names, dtype=object), weights / weights.sum()


@cache
def street_abbreviations() -> dict[str, str]:
    """Street type -> its short form (ROAD -> RD), for the types that have one."""
    types = _read_csv("street_types.csv")
    return {t["type"]: t["abbreviation"] for t in types if t["abbreviation"]}


@dataclass(frozen=True)
class AddressBook:
    """An area's postcode units and the streets of each (several per unit)."""

    postcodes: np.ndarray  # distinct postcode units
    streets: np.ndarray  # (units, max(STREETS_PER_UNIT)) street names; slots past counts unused
    counts: np.ndarray  # streets in each unit


def address_book(rng: np.random.Generator, pool: np.ndarray) -> AddressBook:
    """Streets for each postcode unit, drawn from its sector's own streets."""
    sectors = pd.Series(pool).str[:-2].to_numpy()
    sector_of = np.unique(sectors, return_inverse=True)[1]
    per_sector = np.ceil(np.bincount(sector_of) * STREETS_PER_SECTOR_UNIT).astype(int)
    per_sector = np.maximum(per_sector, 2)
    first = np.cumsum(per_sector) - per_sector
    names, p = street_catalogue()
    sector_streets = names[rng.choice(len(names), size=int(per_sector.sum()), p=p)]
    slots = max(STREETS_PER_UNIT)
    chosen = np.floor(rng.random((len(pool), slots)) * per_sector[sector_of][:, None])
    streets = sector_streets[first[sector_of][:, None] + chosen.astype(int)]
    return AddressBook(pool, streets, pick(rng, STREETS_PER_UNIT, len(pool)).astype(int))


def addresses_at(rng: np.random.Generator, book: AddressBook, units: np.ndarray) -> np.ndarray:
    """A house number on one of the streets of each postcode unit ('12 Mill Lane')."""
    slot = np.floor(rng.random(len(units)) * book.counts[units]).astype(int)
    number = rng.integers(HOUSE_NUMBERS[0], HOUSE_NUMBERS[1] + 1, size=len(units))
    return number.astype(str).astype(object) + " " + book.streets[units, slot]


def household_addresses(
    rng: np.random.Generator, book: AddressBook, units: np.ndarray
) -> np.ndarray:
    """An address for each household at its postcode unit, none shared by two households."""
    addresses = addresses_at(rng, book, units)
    for _ in range(50):
        taken = pd.DataFrame({"unit": units, "address": addresses}).duplicated().to_numpy()
        if not taken.any():
            break
        addresses[taken] = addresses_at(rng, book, units[taken])
    return addresses


def unique_forenames_in_household(
    rng: np.random.Generator, frame: pd.DataFrame, forenames: np.ndarray
) -> np.ndarray:
    """Redraw forenames repeated within a household: twins and siblings have different names,
    not one name and its short form or variant (Alfie and Alfred, Sophie and Sophia)."""
    canonical = nickname_table()
    for _ in range(50):
        names = [canonical.get(f.upper(), f.upper()) for f in forenames]
        repeated = pd.DataFrame({"h": frame["household"], "f": names}).duplicated().to_numpy()
        if not repeated.any():
            break
        where = np.flatnonzero(repeated)
        forenames[where] = draw_forenames(
            rng, frame["ethnicity"].to_numpy()[where], frame["sex"].to_numpy()[where]
        )
    return forenames


def build_households(
    rng: np.random.Generator, area: Area, term: Period, n: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Children in households (dob, sex, twins, ethnicity, postcode, FSM draw); postcode pool."""
    household, ages, is_twin = household_members(rng, n)
    sizes = np.bincount(household)
    households = len(sizes)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n) - start[household]
    size = sizes[household]
    dob = float(day_number(term.start) - 1) - ages
    sex = np.where(rng.random(n) < MALE_SHARE, "M", "F").astype(object)
    second = np.flatnonzero(is_twin & (rank == size - 1))
    same = rng.random(len(second)) < SAME_SEX_TWINS
    sex[second] = np.where(same, sex[second - 1], np.where(sex[second - 1] == "M", "F", "M"))
    twin_of = np.full(n, None, dtype=object)
    pool = postcode_pool(rng, area, math.ceil(households / area.households_per_postcode))
    ethnicity = pick(rng, area.ethnicity, households)
    unit = rng.integers(len(pool), size=households)
    return pd.DataFrame(
        {
            "household": household,
            "rank": rank,
            "size": size,
            "dob": dob,
            "sex": sex,
            "is_twin": is_twin,
            "twin_of": twin_of,
            "ethnicity": ethnicity[household],
            "postcode_unit": unit[household],
            "postcode": pool[unit][household],
            "household_u": rng.random(households)[household],
            "half_sibling": (rng.random(households) < HALF_SIBLING_SHARE)[household],
        }
    ), pool


def name_people(rng: np.random.Generator, people: pd.DataFrame) -> pd.DataFrame:
    """Household surnames (half-siblings differ, twins never), distinct forenames per household."""
    first = people.groupby("household").head(1)
    eth = first["ethnicity"].to_numpy()
    surname = pd.Series(draw_surnames(rng, eth), index=first["household"].to_numpy())
    other = pd.Series(draw_surnames(rng, eth), index=first["household"].to_numpy())
    half = people["half_sibling"].to_numpy() & (people["rank"].to_numpy() >= 1)
    half &= ~(people["is_twin"].to_numpy() & (people["size"].to_numpy() == 2))
    hh = people["household"].to_numpy()
    surnames = np.where(half, other[hh].to_numpy(), surname[hh].to_numpy())
    forenames = draw_forenames(rng, people["ethnicity"].to_numpy(), people["sex"].to_numpy())
    forenames = unique_forenames_in_household(rng, people, forenames)
    return people.assign(forename=forenames, surname=surnames)


def assign_sen(rng: np.random.Generator, people: pd.DataFrame, area: Area) -> np.ndarray:
    """True SEN provision: E/K/N for pupils (by sex), E/N for everyone else (by age)."""
    n = len(people)
    male = people["sex"].to_numpy() == "M"
    age = people["age"].to_numpy()
    u = rng.random(n)
    shares = {}
    for status, overall in (("E", EHC_SHARE), ("K", SEN_SUPPORT_SHARE)):
        boys = BOYS_SHARE[status]
        shares[status] = area.sen_factor * np.where(
            male, overall * boys / MALE_SHARE, overall * (1 - boys) / (1 - MALE_SHARE)
        )
    school_age = (age >= SCHOOL_AGES[0]) & (age <= SCHOOL_AGES[1])
    outside = np.array([EHC_SHARE_OUTSIDE_SCHOOL.get(a, EHC_SHARE_ADULT) for a in age])
    p_ehc = np.where(school_age, shares["E"], outside * area.sen_factor)
    pupil = people["on_census"].to_numpy()
    sen = np.where(u < p_ehc, "E", "N").astype(object)
    sen[pupil & (u >= p_ehc) & (u < p_ehc + shares["K"])] = "K"
    return sen


def need_mix(status: str, age_band: str, area: Area) -> dict[str, float]:
    """Primary need weights for a status and age band in an area."""
    base = EHC_NEEDS if status == "E" else SEN_SUPPORT_NEEDS
    factors = NEED_AGE_FACTORS[age_band]
    mix = {k: w * factors.get(k, 1.0) for k, w in base.items()}
    mix["SEMH"] *= area.semh_factor
    return mix


def assign_needs(
    rng: np.random.Generator, sen: np.ndarray, age: np.ndarray, area: Area
) -> tuple[np.ndarray, np.ndarray]:
    """Primary and (for some) secondary need of every child with SEN."""
    primary = np.full(len(sen), None, dtype=object)
    band = np.where(age < 5, "early", np.where(age >= 11, "secondary", "primary"))
    for status in ("E", "K"):
        for age_band in NEED_AGE_FACTORS:
            where = np.flatnonzero((sen == status) & (band == age_band))
            primary[where] = pick(rng, need_mix(status, age_band, area), len(where))
    secondary = np.full(len(sen), None, dtype=object)
    has = np.flatnonzero((sen != "N") & (rng.random(len(sen)) < SECONDARY_NEED_SHARE))
    options = {k: v for k, v in SEN_SUPPORT_NEEDS.items() if k != "NSA"}
    drawn = pick(rng, options, len(has))
    keep = drawn != primary[has]
    secondary[has[keep]] = drawn[keep]
    return primary, secondary


def area_schools(area_index: int, n: int) -> dict[str, list[tuple[str, str]]]:
    """(URN, DfE establishment number) of the area's primary, secondary and special schools."""
    pupils = n * (SCHOOL_AGES[1] - SCHOOL_AGES[0] + 1) / (MAX_AGE + 1) * ON_CENSUS_SHARE
    counts = {
        "primary": max(2, round(pupils / 2 / 280)),
        "secondary": max(1, round(pupils / 2 / 900)),
        "special": max(1, round(n / 7000)),
    }
    first_estab = {"primary": 2001, "secondary": 4001, "special": 7001}
    schools: dict[str, list[tuple[str, str]]] = {}
    urn = 900000 + area_index * 10000
    for phase, count in counts.items():
        schools[phase] = [(str(urn + i), str(first_estab[phase] + i)) for i in range(count)]
        urn += count
    return schools


def assign_schools(
    rng: np.random.Generator, people: pd.DataFrame, schools: dict[str, list[tuple[str, str]]]
) -> tuple[np.ndarray, np.ndarray]:
    """School URN of each pupil and the establishment that allocated each child's UPN."""
    n = len(people)
    ncyear = people["age"].to_numpy() - SCHOOL_AGES[0]
    pupil = people["on_census"].to_numpy()
    special = (people["sen"].to_numpy() == "E") & (rng.random(n) < SPECIAL_SCHOOL_SHARE)
    phase = np.where(special, "special", np.where(ncyear <= 6, "primary", "secondary"))
    urn = np.full(n, None, dtype=object)
    estab = np.empty(n, dtype=object)
    first_primary = np.array([e for _, e in schools["primary"]], dtype=object)
    estab[:] = first_primary[rng.integers(len(first_primary), size=n)]
    for name, listed in schools.items():
        where = np.flatnonzero(pupil & (phase == name))
        chosen = rng.integers(len(listed), size=len(where))
        urn[where] = np.array([u for u, _ in listed], dtype=object)[chosen]
        if name == "primary":
            estab[where] = np.array([e for _, e in listed], dtype=object)[chosen]
    return urn, estab


def assign_upns(
    rng: np.random.Generator, people: pd.DataFrame, area: Area, term: Period, estab: np.ndarray
) -> np.ndarray:
    """UPNs for everyone who has started school: LA, establishment, entry year, serial."""
    age = people["age"].to_numpy()
    has = np.flatnonzero(age >= SCHOOL_AGES[0])
    order = rng.permutation(has)
    entry_year = (term.start.year - (age[order] - SCHOOL_AGES[0])) % 100
    frame = pd.DataFrame({"estab": estab[order], "yy": entry_year})
    serial = frame.groupby(["estab", "yy"]).cumcount().to_numpy() + 1
    if serial.max(initial=0) > 999:
        raise ValueError("more than 999 UPNs for one school and year; add schools")
    bodies = (int(area.la_number) * 10_000 + frame["estab"].astype(np.int64).to_numpy()) * 10**5
    out = np.full(len(people), None, dtype=object)
    out[order] = upns_of(bodies + entry_year * 1000 + serial)
    return out


def household_people(
    rng: np.random.Generator,
    seed: int,
    area_index: int,
    area: Area,
    term: Period,
    nhs: np.ndarray,
    first_id: int,
) -> tuple[pd.DataFrame, AddressBook]:
    """The area's true children (one per NHS number) in households, with names, address, age,
    true id and twin partner; and the area's addresses."""
    n = len(nhs)
    people, pool = build_households(rng, area, term, n)
    people = name_people(area_rng(seed, area_index, "names"), people)
    addresses = area_rng(seed, area_index, "addresses")
    book = address_book(addresses, pool)
    first = people.drop_duplicates("household")
    household_address = pd.Series(
        household_addresses(addresses, book, first["postcode_unit"].to_numpy()),
        index=first["household"].to_numpy(),
    )
    ids = (np.arange(first_id, first_id + n)).astype(str)
    ids = np.char.add("T", np.char.zfill(ids, 7)).astype(object)
    twin_of = people["twin_of"].to_numpy()
    twin_rows = np.flatnonzero(people["is_twin"].to_numpy())
    youngest = people["rank"].to_numpy() == people["size"].to_numpy() - 1
    twin_of[twin_rows] = ids[twin_rows + np.where(youngest[twin_rows], -1, 1)]
    people = people.assign(
        address=household_address[people["household"].to_numpy()].to_numpy(),
        true_id=ids,
        la_code=area.la_code,
        age=ages_on(people["dob"].to_numpy(), term.start - timedelta(days=1)),
        nhs_number=nhs,
        twin_of=twin_of,
    )
    return people, book


def build_people(
    seed: int, area_index: int, area: Area, term: Period, nhs: np.ndarray, first_id: int
) -> tuple[pd.DataFrame, AddressBook]:
    """The area's true children with identities, SEN, FSM, schools; and its addresses."""
    rng = area_rng(seed, area_index, "people")
    people, book = household_people(rng, seed, area_index, area, term, nhs, first_id)
    n = len(people)
    age = people["age"].to_numpy()
    school_age = (age >= SCHOOL_AGES[0]) & (age <= SCHOOL_AGES[1])
    people = people.assign(on_census=school_age & (rng.random(n) < ON_CENSUS_SHARE))
    sen = assign_sen(rng, people, area)
    primary, secondary = assign_needs(rng, sen, age, area)
    fsm_share = np.array([FSM_SHARE[s] for s in sen]) * area.fsm_factor
    people = people.assign(
        sen=sen,
        primary_need=primary,
        secondary_need=secondary,
        fsm=people["household_u"].to_numpy() < np.minimum(fsm_share, 0.95),
    )
    urn, estab = assign_schools(rng, people, area_schools(area_index, n))
    people = people.assign(
        school_urn=urn,
        upn=assign_upns(rng, people, area, term, estab),
        plan_start=np.nan,
    )
    return people, book


# --- Education: SEN2 requests, census, exclusions --------------------------------------------
def plan_durations(
    rng: np.random.Generator, within_20_weeks: float, exception: np.ndarray
) -> np.ndarray:
    """Days from request to plan issue: `within_20_weeks` of plans in 140 days, OVER_52_WEEKS
    after 364; plans under a 20-week exception always take longer than 20 weeks."""
    size = len(exception)
    within_share = min(within_20_weeks / (1 - WEEK20_EXCEPTION), 1 - OVER_52_WEEKS)
    u = rng.random(size)
    u = np.where(exception, within_share + u * (1 - within_share), u)
    within = 140 - np.floor(rng.triangular(0, 0, 56, size))
    middle = 141 + np.floor(223 * rng.beta(1.3, 2.5, size))
    late = 365 + np.minimum(np.floor(rng.exponential(60, size)), 235)
    return np.where(u < within_share, within, np.where(u < 1 - OVER_52_WEEKS, middle, late))


def simulate_requests(rng: np.random.Generator, area: Area, term: Period, n: int) -> pd.DataFrame:
    """A steady flow of EHC needs assessment requests, kept when received in the period or the
    year before, or still open in the period; outcomes and dates as at the period end."""
    start, end = day_number(term.start), day_number(term.end)
    window = start - 365
    first = window - REQUEST_LOOKBACK_DAYS
    count = int(rng.poisson(n * REQUESTS_PER_CHILD_YEAR * (end - first + 1) / YEAR_DAYS))
    received = rng.integers(first, end + 1, size=count).astype(float)
    mean, shape, low, high = DECISION_DAYS
    decided = received + np.clip(gamma_days(rng, mean, shape, count), low, high)
    agreed = rng.random(count) < AGREED_TO_ASSESS
    pending = decided > end
    request_outcome = np.where(pending, "P", np.where(agreed, "A", pick(rng, NOT_AGREED, count)))
    assessed = request_outcome == "A"
    exception = assessed & (rng.random(count) < WEEK20_EXCEPTION)
    durations = plan_durations(rng, area.within_20_weeks, exception)
    plan = np.maximum(received + durations, decided + 28)
    issued = rng.random(count) < PLAN_AFTER_ASSESSMENT
    not_issued_on = np.maximum(
        received + np.floor(durations * rng.uniform(0.6, 1.0, count)), decided + 14
    )
    assessed_on = np.where(issued, plan - rng.integers(0, 15, size=count), not_issued_on)
    ongoing = np.where(issued, plan, assessed_on) > end
    assessment_outcome = np.where(
        ~assessed, None, np.where(ongoing, "P", np.where(issued, "I", pick(rng, NOT_ISSUED, count)))
    )
    frame = pd.DataFrame(
        {
            "received_date": received,
            "request_source": pick(rng, REQUEST_SOURCES, count),
            "request_outcome": request_outcome,
            "request_outcome_date": np.where(pending, np.nan, decided),
            "assessment_outcome": assessment_outcome,
            "assessment_outcome_date": np.where(assessed & ~ongoing, assessed_on, np.nan),
            "week20_exception": exception,
            "plan_start_date": np.where(assessment_outcome == "I", plan, np.nan),
        }
    )
    open_now = (request_outcome == "P") | (assessment_outcome == "P")
    last = frame[["request_outcome_date", "assessment_outcome_date", "plan_start_date"]].max(axis=1)
    keep = (received >= window) | open_now | (last >= start).to_numpy()
    return frame[keep].reset_index(drop=True)


def age_weights(age_years: np.ndarray, table: Mapping[int, float]) -> np.ndarray:
    """Weight by age band: each key of `table` is the first age of its band; younger weigh 0."""
    weights = np.zeros(len(age_years))
    for first_age, weight in sorted(table.items()):
        weights[age_years >= first_age] = weight
    weights[age_years > MAX_AGE + 1] = 0.0
    return weights


def match_requesters(
    rng: np.random.Generator, requests: pd.DataFrame, people: pd.DataFrame
) -> np.ndarray:
    """Row of `people` behind each request (-1: nobody fits): plans issued go to children with
    an EHC plan, other requests to children on SEN support or with no SEN; one request each."""
    dob = people["dob"].to_numpy()
    sen = people["sen"].to_numpy()
    base = {
        True: (sen == "E").astype(float),
        False: np.where(sen == "K", 6.0, np.where(sen == "N", 1.0, 0.0)),
    }
    tables = {True: NEW_PLAN_AGE_WEIGHT, False: OTHER_REQUEST_AGE_WEIGHT}
    free = np.ones(len(people))
    chosen = np.full(len(requests), -1)
    issued = (requests["assessment_outcome"] == "I").to_numpy()
    for i, (received, plan) in enumerate(zip(requests["received_date"], issued, strict=True)):
        weights = base[plan] * free * age_weights((received - dob) / YEAR_DAYS, tables[plan])
        total = weights.sum()
        if total > 0:
            chosen[i] = rng.choice(len(weights), p=weights / total)
            free[chosen[i]] = 0.0
    return chosen


def sen2_rows(
    rng: np.random.Generator, people: pd.DataFrame, area: Area, term: Period
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SEN2 request rows, and the people with the start date of each new plan."""
    requests = simulate_requests(rng, area, term, len(people))
    who = match_requesters(rng, requests, people)
    requests = requests[who >= 0].reset_index(drop=True)
    who = who[who >= 0]
    age = (requests["received_date"].to_numpy() - people["dob"].to_numpy()[who]) / YEAR_DAYS
    source = requests["request_source"].to_numpy()
    source[(source == "YP") & (age < 16)] = "PAR"
    issued = (requests["assessment_outcome"] == "I").to_numpy()
    need = np.where(issued, people["primary_need"].to_numpy()[who], None)
    rows = requests.assign(
        true_id=people["true_id"].to_numpy()[who],
        la_code=area.la_code,
        request_source=source,
        primary_need=need,
    )
    plan_start = people["plan_start"].to_numpy().copy()
    plan_start[who[issued]] = requests["plan_start_date"].to_numpy()[issued]
    return rows, people.assign(plan_start=plan_start)


def standing_plan_rows(
    rng: np.random.Generator, people: pd.DataFrame, area: Area, term: Period
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SEN2 records of the plans that census pupils with an EHC plan hold from before the
    request flow (a request agreed and a plan issued over a year before the period), and the
    people with those plans' start dates. SEN2 is person level: it lists every plan held."""
    start = day_number(term.start)
    holds = people["on_census"] & (people["sen"] == "E") & people["plan_start"].isna()
    who = np.flatnonzero(holds.to_numpy())
    m = len(who)
    dob = people["dob"].to_numpy()[who]
    earliest = np.maximum(dob + 2 * YEAR_DAYS, start - STANDING_PLAN_YEARS * YEAR_DAYS)
    latest = start - 366.0  # before the flow: requests of the year before are in it
    plan = np.floor(earliest + rng.random(m) * np.maximum(latest - earliest, 0.0))
    received = plan - plan_durations(rng, area.within_20_weeks, np.zeros(m, dtype=bool))
    mean, shape, low, high = DECISION_DAYS
    decided = np.minimum(received + np.clip(gamma_days(rng, mean, shape, m), low, high), plan - 28)
    assessed = np.maximum(plan - rng.integers(0, 15, size=m), decided)
    source = pick(rng, REQUEST_SOURCES, m)
    source[(source == "YP") & ((received - dob) / YEAR_DAYS < 16)] = "PAR"
    rows = pd.DataFrame(
        {
            "received_date": received,
            "request_source": source,
            "request_outcome": "A",
            "request_outcome_date": decided,
            "assessment_outcome": "I",
            "assessment_outcome_date": assessed,
            "week20_exception": False,
            "plan_start_date": plan,
            "true_id": people["true_id"].to_numpy()[who],
            "la_code": area.la_code,
            "primary_need": people["primary_need"].to_numpy()[who],
        }
    )
    plan_start = people["plan_start"].to_numpy().copy()
    plan_start[who] = plan
    return rows, people.assign(plan_start=plan_start)


def flag_multiplier(flag: np.ndarray, groups: np.ndarray, ratio: float) -> np.ndarray:
    """Per-child rate multiplier: `ratio` times higher with the flag, mean 1 within each group."""
    out = np.ones(len(flag))
    for group in sorted(set(groups.tolist())):
        where = groups == group
        with_flag, without = split_by_flag(1.0, float(flag[where].mean()), ratio)
        out[where] = np.where(flag[where], with_flag, without)
    return out


def absence_rates(
    rng: np.random.Generator, sen: np.ndarray, fsm: np.ndarray, area: Area
) -> np.ndarray:
    """Share of sessions missed per pupil: Beta per SEN status fitted to the mean and the
    persistent absence share, scaled by area and FSM."""
    mean = np.array([ABSENCE[s][0] for s in sen]) * area.absence_factor
    mean *= flag_multiplier(fsm, sen, FSM_ABSENCE_RATIO)
    concentration = np.array([absence_concentration(*ABSENCE[s]) for s in sen])
    mean = np.minimum(mean, 0.9)
    return rng.beta(mean * concentration, (1 - mean) * concentration)


def census_rows(
    rng: np.random.Generator, people: pd.DataFrame, area: Area, term: Period
) -> pd.DataFrame:
    """School census rows: one per pupil on roll, with SEN, FSM and sessions."""
    pupils = people[people["on_census"]]
    n = len(pupils)
    sen = pupils["sen"].to_numpy()
    fsm = pupils["fsm"].to_numpy()
    part_year = rng.random(n) < PART_YEAR_SHARE
    possible = np.where(
        part_year,
        rng.integers(PART_YEAR_SESSIONS[0], PART_YEAR_SESSIONS[1] + 1, size=n),
        rng.integers(FULL_YEAR_SESSIONS[0], FULL_YEAR_SESSIONS[1] + 1, size=n),
    )
    absent = np.minimum(np.round(absence_rates(rng, sen, fsm, area) * possible), possible)
    share = np.where(fsm, UNAUTHORISED_SHARE[True], UNAUTHORISED_SHARE[False])
    k = UNAUTHORISED_CONCENTRATION
    unauthorised = np.round(absent * rng.beta(share * k, (1 - share) * k))
    return pd.DataFrame(
        {
            "true_id": pupils["true_id"].to_numpy(),
            "la_code": area.la_code,
            "school_urn": pupils["school_urn"].to_numpy(),
            "ncyear": pupils["age"].to_numpy() - SCHOOL_AGES[0],
            "sen_provision": sen,
            "primary_need": pupils["primary_need"].to_numpy(),
            "secondary_need": pupils["secondary_need"].to_numpy(),
            "fsm_eligible": fsm,
            "sessions_possible": possible,
            "sessions_authorised": (absent - unauthorised).astype(int),
            "sessions_unauthorised": unauthorised.astype(int),
        }
    )


def school_days(term: Period) -> np.ndarray:
    """Day numbers of term-time weekdays (approximate English school holidays)."""
    y0, y1 = term.start.year, term.start.year + 1
    holidays = [
        (date(y0, 10, 26), date(y0, 11, 3)),
        (date(y0, 12, 21), date(y1, 1, 5)),
        (date(y1, 2, 15), date(y1, 2, 23)),
        (date(y1, 4, 5), date(y1, 4, 21)),
        (date(y1, 5, 24), date(y1, 6, 1)),
    ]
    days = np.arange(day_number(date(y0, 9, 4)), day_number(date(y1, 7, 22)) + 1)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    keep = weekday < 5
    for first, last in holidays:
        keep &= (days < day_number(first)) | (days > day_number(last))
    return days[keep].astype(float)


def exclusion_events(
    rng: np.random.Generator, pupils: pd.DataFrame, area: Area, days: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pupil row, start date, category) of every suspension and permanent exclusion."""
    n = len(pupils)
    sen = pupils["sen"].to_numpy()
    ncyear = pupils["age"].to_numpy() - SCHOOL_AGES[0]
    year_weight = SUSPENSION_YEAR_WEIGHT[ncyear]
    year_weight = year_weight / year_weight.mean() if n else year_weight
    propensity = area.suspension_factor * year_weight
    propensity *= flag_multiplier(pupils["fsm"].to_numpy(), sen, FSM_SUSPENSION_RATIO)
    heterogeneity = rng.gamma(SUSPENSION_DISPERSION, 1 / SUSPENSION_DISPERSION, n)
    suspension_rate = np.array([SUSPENSIONS_PER_100[s] / 100 for s in sen])
    counts = np.minimum(rng.poisson(suspension_rate * propensity * heterogeneity), 30)
    permanent = rng.random(n) < np.array([PERMANENT_PER_100[s] / 100 for s in sen]) * propensity
    rows: list[int] = []
    starts: list[float] = []
    categories: list[str] = []
    for i in np.flatnonzero((counts > 0) | permanent):
        dates = np.sort(rng.choice(days, size=int(counts[i]), replace=False))
        lunchtime = rng.random(len(dates)) < LUNCHTIME_SHARE
        rows += [int(i)] * len(dates)
        starts += dates.tolist()
        categories += ["LNCH" if lunch else "SUSP" for lunch in lunchtime]
        if permanent[i]:
            later = days[days > dates[-1]] if len(dates) else days
            rows.append(int(i))
            starts.append(float(rng.choice(later if len(later) else days)))
            categories.append("PERM")
    return np.array(rows, dtype=int), np.array(starts), np.array(categories, dtype=object)


def reinstatement_dates(
    rng: np.random.Generator, starts: np.ndarray, sessions: np.ndarray, days: np.ndarray
) -> np.ndarray:
    """The school day a suspended pupil returns on; a few are not recorded."""
    after = np.searchsorted(days, starts) + np.ceil(sessions / 2).astype(int)
    inside = after < len(days)
    back = np.where(inside, days[np.minimum(after, len(days) - 1)], starts + np.ceil(sessions / 2))
    return np.where(rng.random(len(starts)) < REINSTATEMENT_RECORDED, back, np.nan)


def exclusion_rows(
    rng: np.random.Generator, people: pd.DataFrame, area: Area, term: Period
) -> pd.DataFrame:
    """Suspensions (SUSP, LNCH) and permanent exclusions (PERM) of pupils in the period."""
    pupils = people[people["on_census"]].reset_index(drop=True)
    days = school_days(term)
    who, starts, category = exclusion_events(rng, pupils, area, days)
    m = len(who)
    reason = np.where(
        category == "PERM", pick(rng, PERMANENT_REASONS, m), pick(rng, SUSPENSION_REASONS, m)
    )
    sessions = pick(rng, SUSPENSION_SESSIONS, m).astype(float)
    sessions = np.where(category == "LNCH", 1.0, sessions)
    sessions = np.where(category == "PERM", np.nan, sessions)
    reinstated = reinstatement_dates(rng, starts, np.nan_to_num(sessions, nan=1.0), days)
    sen = pupils["sen"].to_numpy()[who]
    before_plan = pupils["plan_start"].to_numpy()[who] > starts
    return pd.DataFrame(
        {
            "true_id": pupils["true_id"].to_numpy()[who],
            "la_code": area.la_code,
            "school_urn": pupils["school_urn"].to_numpy()[who],
            "start_date": starts,
            "category": category,
            "reason": reason,
            "sessions": sessions,
            "sen_provision": np.where(before_plan, "K", sen),
            "reinstatement_date": np.where(category == "PERM", np.nan, reinstated),
        }
    )


# --- Health: CSDS and MHSDS referrals ----------------------------------------------------------
def service_mix(sen: str, need: str | None, age: int) -> dict[str, float]:
    """Which services a child is referred to, by SEN status, primary need and age."""
    if sen == "N":
        mix = EARLY_YEARS_SERVICES if age <= 3 else NO_SEN_SERVICES
    else:
        mix = NEED_SERVICES.get(need or "", SEND_SERVICES)
    return {k: v for k, v in mix.items() if not (k == "CAMHS" and age < SCHOOL_AGES[0])}


def referred_services(
    rng: np.random.Generator, people: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """(people row, service) of every referral: children with SEND far more often."""
    sen = people["sen"].to_numpy()
    age = people["age"].to_numpy()
    share = np.array([REFERRAL_SHARE[s] for s in sen]) + np.where(age <= 3, EARLY_YEARS_REFERRAL, 0)
    referred = np.flatnonzero((age <= HEALTH_MAX_AGE) & (rng.random(len(people)) < share))
    extra = rng.poisson([EXTRA_REFERRALS[s] for s in sen[referred]])
    need = people["primary_need"].to_numpy()
    rows: list[int] = []
    services: list[str] = []
    for i, more in zip(referred, extra, strict=True):
        mix = service_mix(sen[i], need[i], int(age[i]))
        keys = list(mix)
        p = np.array([mix[k] for k in keys])
        k = min(1 + int(more), len(keys))
        picked = rng.choice(len(keys), size=k, replace=False, p=p / p.sum())
        rows += [int(i)] * k
        services += [keys[j] for j in picked]
    return np.array(rows, dtype=int), np.array(services, dtype=object)


def wait_days(
    rng: np.random.Generator, services: np.ndarray, received: np.ndarray, start: int, area: Area
) -> np.ndarray:
    """Days from referral to first attended contact; referrals from before the period were
    still waiting at its start, so their waits are drawn beyond it."""
    median = np.array([WAITS[s][0] for s in services]) * area.wait_factor
    sigma = np.array([WAITS[s][1] for s in services])
    waits = np.round(median * np.exp(sigma * rng.standard_normal(len(services))))
    for _ in range(30):
        early = np.flatnonzero(received + waits < start)
        if not len(early):
            break
        waits[early] = np.round(
            median[early] * np.exp(sigma[early] * rng.standard_normal(len(early)))
        )
    early = received + waits < start
    return np.where(early, start - received + rng.integers(0, 60, len(waits)), waits)


def referral_rows(
    rng: np.random.Generator, people: pd.DataFrame, area: Area, term: Period
) -> pd.DataFrame:
    """Referrals to SLT, OT, physiotherapy, community paediatrics and CAMHS open in the period."""
    start, end = day_number(term.start), day_number(term.end)
    who, services = referred_services(rng, people)
    m = len(who)
    dob = people["dob"].to_numpy()[who]
    age = people["age"].to_numpy()[who]
    carried = rng.random(m) < CARRIED_OVER_SHARE
    received = np.where(
        carried, rng.integers(start - 365, start, m), rng.integers(start, end + 1, m)
    ).astype(float)
    received = np.maximum(received, dob + 14)
    rejected = (received >= start) & (rng.random(m) < REJECTED_SHARE)
    first = clamp_days(received + wait_days(rng, services, received, start, area), end)
    first = np.where(rejected, np.nan, first)
    seen = ~np.isnan(first)
    discharge_share = np.array([DISCHARGE_SHARE[s] for s in services])
    discharged = seen & (rng.random(m) < discharge_share)
    after = 1 + gamma_days(rng, DISCHARGE_MEAN_DAYS, 2.0, m)
    discharge = np.where(discharged, first + after, np.nan)
    discharge = np.where(rejected, received + rng.integers(7, 43, m), discharge)
    discharge = clamp_days(discharge, end)
    interval = np.array([CONTACT_INTERVAL_DAYS[s] for s in services])
    in_care = np.where(np.isnan(discharge), end, discharge) - np.nan_to_num(first)
    attended = np.where(seen, 1 + rng.poisson(np.where(seen, in_care, 0) / interval), 0)
    attended = np.minimum(attended, 1000)
    dna = np.where(
        seen,
        rng.poisson(attended * area.dna_rate / (1 - area.dna_rate)),
        (rng.random(m) < area.dna_rate).astype(int),
    )
    group = np.where(services == "CAMHS", "camhs", np.where(age < 5, "early", "school"))
    source = np.empty(m, dtype=object)
    for name, mix in REFERRAL_SOURCES.items():
        where = np.flatnonzero(group == name)
        source[where] = pick(rng, mix, len(where))
    return pd.DataFrame(
        {
            "true_id": people["true_id"].to_numpy()[who],
            "la_code": area.la_code,
            "dataset": [HEALTH_DATASET[s] for s in services],
            "service": services,
            "referral_received_date": received,
            "referral_source": source,
            "first_attended_contact_date": first,
            "discharge_date": discharge,
            "contacts_attended": attended,
            "contacts_dna": np.minimum(dna, 1000),
        }
    )


# --- Social care: children in need and looked-after children ----------------------------------
def care_flags(
    rng: np.random.Generator, people: pd.DataFrame, area: Area
) -> tuple[np.ndarray, np.ndarray]:
    """Who is looked after and who is a child in need (0-17), by SEN status and FSM."""
    n = len(people)
    sen = people["sen"].to_numpy()
    eligible = people["age"].to_numpy() <= CARE_MAX_AGE
    ehc = sen == "E"
    ehc_share = float(ehc[eligible].mean()) if eligible.any() else 0.0
    ratio = ratio_for_share(LAC_EHC_SHARE, ehc_share)
    with_plan, without = split_by_flag(LAC_SHARE * area.care_factor, ehc_share, ratio)
    lac = eligible & (rng.random(n) < np.where(ehc, with_plan, without))
    share = {s: float((sen[eligible] == s).mean()) if eligible.any() else 0.0 for s in "EK"}
    outside_lac = CIN_SHARE - CIN_OF_LAC * LAC_SHARE
    no_sen = (outside_lac - sum(share[s] * CIN_BY_STATUS[s] for s in "EK")) / (
        1 - share["E"] - share["K"]
    )
    rate = np.array([CIN_BY_STATUS.get(s, no_sen) for s in sen]) * area.care_factor
    rate *= flag_multiplier(people["fsm"].to_numpy(), sen, FSM_CIN_RATIO)
    u = rng.random(n)
    cin = eligible & np.where(lac, u < CIN_OF_LAC, u < rate)
    return cin, lac


def disability_codes(rng: np.random.Generator, sen: str, need: str | None, n2: bool) -> str | None:
    """Space-separated CIN disability codes consistent with the child's SEN and need code."""
    if sen != "N" and need in NEED_DISABILITIES and (sen == "E" or n2 or rng.random() < 0.2):
        listed = NEED_DISABILITIES[need]
        return " ".join([listed[0], *[c for c in listed[1:] if rng.random() < 0.5]])
    if n2:
        return str(rng.choice(NO_SEN_DISABILITIES))
    return "NONE" if rng.random() < 0.5 else None


def cin_episode_dates(
    rng: np.random.Generator, dob: np.ndarray, term: Period
) -> tuple[np.ndarray, np.ndarray]:
    """(referral, closure) of one episode per child, open at some point in the period."""
    start, end = day_number(term.start), day_number(term.end)
    m = len(dob)
    ongoing = rng.random(m) < CIN_ONGOING_SHARE
    referral = np.where(
        ongoing, rng.integers(start - 730, start, m), rng.integers(start, end + 1, m)
    ).astype(float)
    referral = np.maximum(referral, dob)
    closes_ongoing = rng.integers(start, end + 1, m) * (rng.random(m) < 0.45)
    closes_new = np.where(rng.random(m) < 0.5, referral + 1 + gamma_days(rng, 150, 2.0, m), 0)
    closure = np.where(referral < start, closes_ongoing, closes_new).astype(float)
    closure = np.where(closure == 0, np.nan, np.maximum(closure, referral))
    return referral, clamp_days(closure, end)


def cin_rows(
    rng: np.random.Generator,
    people: pd.DataFrame,
    cin: np.ndarray,
    lac: np.ndarray,
    area: Area,
    term: Period,
) -> pd.DataFrame:
    """Children-in-need episodes open in the period, with protection plans and disabilities."""
    end = day_number(term.end)
    who = np.flatnonzero(cin)
    referral, closure = cin_episode_dates(rng, people["dob"].to_numpy()[who], term)
    again = ~np.isnan(closure) & (rng.random(len(who)) < CIN_REREFERRAL)
    second = closure + rng.integers(30, 200, len(who))
    again &= second <= end
    second_closure = clamp_days(second + 1 + gamma_days(rng, 150, 2.0, len(who)), end)
    second_closure = np.where(rng.random(len(who)) < 0.3, second_closure, np.nan)
    who = np.concatenate([who, who[again]])
    referral = np.concatenate([referral, second[again]])
    closure = np.concatenate([closure, second_closure[again]])
    m = len(who)
    sen = people["sen"].to_numpy()[who]
    looked_after = lac[who]
    n2 = rng.random(m) < np.array([N2_SHARE[s] for s in sen])
    need = np.where(n2, "N2", pick(rng, CIN_NEEDS, m))
    need = np.where(looked_after & ~n2 & (rng.random(m) < 0.5), "N1", need)
    cpp_start = referral + rng.integers(10, 121, m)
    has_cpp = rng.random(m) < np.array([CPP_SHARE[bool(x)] for x in looked_after])
    has_cpp &= (cpp_start <= end) & ~(cpp_start > closure)
    cpp_end = np.where(rng.random(m) < 0.4, cpp_start + 1 + gamma_days(rng, 270, 2.0, m), np.nan)
    cpp_end = np.where(np.isnan(closure), clamp_days(cpp_end, end), closure)
    primary_need = people["primary_need"].to_numpy()[who]
    return pd.DataFrame(
        {
            "true_id": people["true_id"].to_numpy()[who],
            "la_code": area.la_code,
            "cin_referral_date": referral,
            "referral_source": pick(rng, CIN_SOURCES, m),
            "primary_need_code": need,
            "cin_closure_date": closure,
            "cpp_start_date": np.where(has_cpp, cpp_start, np.nan),
            "cpp_end_date": np.where(has_cpp, cpp_end, np.nan),
            "disabilities": [
                disability_codes(rng, s, p, bool(x))
                for s, p, x in zip(sen, primary_need, n2, strict=True)
            ],
        }
    )


def legal_statuses(
    rng: np.random.Generator, ongoing: np.ndarray, age: np.ndarray, ehc: np.ndarray
) -> np.ndarray:
    """Legal status per episode: placement orders for young children only, remand for older,
    short breaks (V3/V4) for disabled children only."""
    m = len(ongoing)
    status = np.where(ongoing, pick(rng, LAC_STATUS_ONGOING, m), pick(rng, LAC_STATUS_NEW, m))
    status = np.where((status == "E1") & (age >= 8), "C2", status)
    status = np.where((status == "J2") & (age < 10), "V2", status)
    return np.where(np.isin(status, ["V3", "V4"]) & ~ehc, "V2", status)


def placements(rng: np.random.Generator, status: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Placement per episode, consistent with legal status and age."""
    place = pick(rng, LAC_PLACEMENTS, len(status))
    place = np.where((place == "H5") & (age < 16), "U4", place)
    place = np.where((place == "P1") & ~np.isin(status, ["C1", "C2"]), "U4", place)
    place = np.where(np.isin(status, ["V3", "V4"]), np.where(age < 10, "U4", "R1"), place)
    return np.where(status == "E1", "A3", place)


def ceased_reasons(rng: np.random.Generator, status: np.ndarray, age: np.ndarray) -> np.ndarray:
    m = len(status)
    reason = pick(rng, LAC_CEASED, m)
    reason = np.where((age >= 16) & (rng.random(m) < 0.5), "E8", reason)
    return np.where(status == "E1", np.where(rng.random(m) < 0.5, "E11", "E12"), reason)


def lac_rows(
    rng: np.random.Generator, people: pd.DataFrame, lac: np.ndarray, area: Area, term: Period
) -> pd.DataFrame:
    """Looked-after episodes open in the period, and re-entries after a return home."""
    start, end = day_number(term.start), day_number(term.end)
    who = np.flatnonzero(lac)
    m = len(who)
    dob = people["dob"].to_numpy()[who]
    age = people["age"].to_numpy()[who]
    ehc = people["sen"].to_numpy()[who] == "E"
    decom = np.where(
        rng.random(m) < LAC_ONGOING_SHARE,
        rng.integers(start - 4 * 365, start, m),
        rng.integers(start, end + 1, m),
    ).astype(float)
    decom = np.maximum(decom, dob)
    ongoing = decom < start
    status = legal_statuses(rng, ongoing, age, ehc)
    ends = rng.random(m) < LAC_END_SHARE
    ceased = np.where(
        ongoing, rng.integers(start, end + 1, m), decom + 1 + gamma_days(rng, 120, 1.5, m)
    )
    dec = clamp_days(np.where(ends, ceased, np.nan), end)
    rec = np.where(np.isnan(dec), None, ceased_reasons(rng, status, age))
    back = ~np.isnan(dec) & np.isin(rec, ["E4A", "E13"]) & (rng.random(m) < LAC_REENTRY)
    reentry = dec + rng.integers(30, 200, m)
    back &= reentry <= end
    k = int(back.sum())
    status_again = legal_statuses(rng, np.zeros(k, dtype=bool), age[back], ehc[back])
    return pd.DataFrame(
        {
            "true_id": people["true_id"].to_numpy()[np.concatenate([who, who[back]])],
            "la_code": area.la_code,
            "decom": np.concatenate([decom, reentry[back]]),
            "rne": np.concatenate(
                [
                    np.where(ongoing, pick(rng, LAC_RNE_ONGOING, m), "S"),
                    np.full(k, "S", dtype=object),
                ]
            ),
            "legal_status": np.concatenate([status, status_again]),
            "placement": np.concatenate(
                [placements(rng, status, age), placements(rng, status_again, age[back])]
            ),
            "dec": np.concatenate([dec, np.full(k, np.nan)]),
            "rec": np.concatenate([rec, np.full(k, None, dtype=object)]),
        }
    )


# --- Agency identities and their noise -------------------------------------------------------
def typo(rng: np.random.Generator, word: str) -> str:
    """One keying error: a letter inserted, deleted, substituted or two letters transposed
    (never the first letter)."""
    while True:
        kind = int(rng.integers(4))
        pos = int(rng.integers(1, len(word))) if len(word) > 1 else 0
        letter = TYPO_LETTERS[int(rng.integers(len(TYPO_LETTERS)))]
        if kind == 0:
            new = word[:pos] + letter + word[pos:]
        elif kind == 1 and len(word) > 2:
            new = word[:pos] + word[pos + 1 :]
        elif kind == 2:
            new = word[:pos] + letter + word[pos + 1 :]
        elif kind == 3 and pos < len(word) - 1:
            new = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
        else:
            continue
        if new != word:
            return new


def forename_noise(
    rng: np.random.Generator, names: np.ndarray, rates: Mapping[str, float]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Nicknames (for forenames with a known nickname) and typos."""
    nicks = nicknames_by_canonical()
    n = len(names)
    known = pd.Series(names, dtype=object).str.upper().isin(list(nicks)).to_numpy()
    nickname = known & (rng.random(n) < rates.get("nickname", 0.0))
    mistyped = ~nickname & (rng.random(n) < rates.get("forename_typo", 0.0))
    out = names.copy()
    for i in np.flatnonzero(nickname):
        options = nicks[names[i].upper()]
        out[i] = options[int(rng.integers(len(options)))].title()
    for i in np.flatnonzero(mistyped):
        out[i] = typo(rng, names[i])
    return out, {"nickname": nickname, "forename_typo": mistyped}


def surname_noise(
    rng: np.random.Generator, names: np.ndarray, ethnicity: np.ndarray, rates: Mapping[str, float]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Changed surnames (another surname entirely, or double-barrelled) and typos."""
    n = len(names)
    changed = rng.random(n) < rates.get("surname_change", 0.0)
    mistyped = ~changed & (rng.random(n) < rates.get("surname_typo", 0.0))
    out = names.copy()
    rows = np.flatnonzero(changed)
    own = names[rows]
    other = draw_surnames(rng, ethnicity[rows])
    for _ in range(100):
        same = np.flatnonzero(other == own)
        if not len(same):
            break
        other[same] = draw_surnames(rng, ethnicity[rows[same]])
    style = rng.integers(3, size=len(rows))
    out[rows] = np.where(
        style == 0, other, np.where(style == 1, own + "-" + other, other + "-" + own)
    )
    for i in np.flatnonzero(mistyped):
        out[i] = typo(rng, names[i])
    return out, {"surname_change": changed, "surname_typo": mistyped}


def wrong_dob(rng: np.random.Generator, dob: date, latest: date) -> date:
    """The date of birth with one of day, month or year wrong, not after `latest`."""
    for _ in range(50):
        part = int(rng.integers(3))
        sign = 1 if rng.random() < 0.5 else -1
        try:
            if part == 0:
                new = dob.replace(day=dob.day + sign * int(rng.integers(1, 4)))
            elif part == 1:
                new = dob.replace(month=dob.month + sign)
            else:
                new = dob.replace(year=dob.year + sign)
        except ValueError:
            continue
        if new <= latest:
            return new
    return dob - timedelta(days=1)


def dob_noise(
    rng: np.random.Generator, dobs: np.ndarray, rates: Mapping[str, float], latest: date
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Day and month swapped (where that is another valid date), or one component wrong."""
    n = len(dobs)
    days = dobs.astype("int64").astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    year = months.astype("datetime64[Y]")
    month = (months - year).astype(int) + 1
    day = (days - months).astype(int) + 1
    swapped_dob = (year + (day - 1).astype("timedelta64[M]")).astype("datetime64[D]") + (month - 1)
    swappable = (day <= 12) & (day != month) & (swapped_dob <= np.datetime64(latest))
    swapped = swappable & (rng.random(n) < rates.get("dob_swap", 0.0))
    wrong = ~swapped & (rng.random(n) < rates.get("dob_wrong", 0.0))
    out = np.where(swapped, swapped_dob.astype("int64").astype(float), dobs)
    for i in np.flatnonzero(wrong):
        out[i] = day_number(wrong_dob(rng, from_day_number(dobs[i]), latest))
    return out, {"dob_swap": swapped, "dob_wrong": wrong}


def mistype_address(rng: np.random.Generator, address: str) -> str:
    """One keying error in an address: in its house number as often as the number's share of
    the characters, else in the street name."""
    number, _, street = address.partition(" ")
    if rng.random() < len(number) / (len(number) + len(street)):
        return f"{mistype_number(rng, number)} {street}"
    return f"{number} {typo(rng, street)}"


def mistype_number(rng: np.random.Generator, number: str) -> str:
    """One keying error in a house number: a digit substituted, dropped or doubled, or two
    adjacent digits transposed; never a leading zero."""
    while True:
        kind = int(rng.integers(4))
        pos = int(rng.integers(len(number)))
        digit = str(int(rng.integers(10)))
        if kind == 0:
            new = number[:pos] + digit + number[pos + 1 :]
        elif kind == 1 and len(number) > 1:
            new = number[:pos] + number[pos + 1 :]
        elif kind == 2:
            new = number[:pos] + number[pos] + number[pos:]
        elif kind == 3 and pos < len(number) - 1:
            new = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2 :]
        else:
            continue
        if new != number and not new.startswith("0"):
            return new


def abbreviate_address(rng: np.random.Generator, address: str) -> str:
    """The street type in its short form (Road -> Rd) or, half the time and always where it has
    none, the address without its house number."""
    number, _, street = address.partition(" ")
    name, _, kind = street.rpartition(" ")
    short = street_abbreviations().get(kind)
    if short and rng.random() < 0.5:
        return f"{number} {name} {short}"
    return street


def address_noise(
    rng: np.random.Generator,
    people: pd.DataFrame,
    book: AddressBook,
    rates: Mapping[str, float],
    moved_rate: float,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(postcode, address lines, flags): moves (another address and postcode in the area, the
    same for the whole household), gaps, keying errors and abbreviations."""
    n = len(people)
    _, first, inverse = np.unique(
        people["household"].to_numpy(), return_index=True, return_inverse=True
    )
    units = len(book.postcodes)
    other = people["postcode_unit"].to_numpy()[first] + rng.integers(1, max(units, 2), len(first))
    other %= units
    other_address = addresses_at(rng, book, other)
    moved = (rng.random(len(first)) < moved_rate)[inverse] & (units > 1)
    postcode = np.where(moved, book.postcodes[other][inverse], people["postcode"].to_numpy())
    address = np.where(moved, other_address[inverse], people["address"].to_numpy())
    postcode_missing = rng.random(n) < rates.get("postcode_missing", 0.0)
    u = rng.random(n)
    bands = np.cumsum(
        [rates.get(k, 0.0) for k in ("address_missing", "address_typo", "address_abbreviated")]
    )
    kind = np.searchsorted(bands, u, side="right")  # 0 missing, 1 typo, 2 abbreviated, 3 none
    for i in np.flatnonzero(kind == 1):
        address[i] = mistype_address(rng, address[i])
    for i in np.flatnonzero(kind == 2):
        address[i] = abbreviate_address(rng, address[i])
    flags = {
        "moved": moved & ~(postcode_missing & (kind == 0)),
        "postcode_missing": postcode_missing,
        "address_missing": kind == 0,
        "address_typo": kind == 1,
        "address_abbreviated": kind == 2,
    }
    return np.where(postcode_missing, None, postcode), np.where(kind == 0, None, address), flags


def identifier_noise(
    rng: np.random.Generator,
    values: np.ndarray,
    rates: Mapping[str, float],
    kind: str,
    invalidate: Callable[[np.random.Generator, str], str],
    mistype: Callable[[np.random.Generator, str], str],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A recorded identifier: missing, failing its check, or another valid one by a keying slip."""
    present = pd.notna(values)
    u = rng.random(len(values))
    p_missing = rates.get(f"{kind}_missing", 0.0)
    p_invalid = p_missing + rates.get(f"{kind}_invalid", 0.0)
    p_wrong = p_invalid + rates.get(f"{kind}_wrong_valid", 0.0)
    missing = present & (u < p_missing)
    invalid = present & (u >= p_missing) & (u < p_invalid)
    wrong = present & (u >= p_invalid) & (u < p_wrong)
    out = np.where(missing, None, values)
    for i in np.flatnonzero(invalid):
        out[i] = invalidate(rng, values[i])
    for i in np.flatnonzero(wrong):
        out[i] = mistype(rng, values[i])
    flags = {f"{kind}_missing": missing, f"{kind}_invalid": invalid, f"{kind}_wrong_valid": wrong}
    return out, flags


def noise_labels(flags: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The noise kinds of each record, comma-separated in NOISE_KINDS order ('' for none)."""
    code = np.zeros(n, dtype=np.int64)
    for bit, kind in enumerate(NOISE_KINDS):
        if kind in flags:
            code |= flags[kind].astype(np.int64) << bit
    unique, inverse = np.unique(code, return_inverse=True)
    labels = [",".join(k for b, k in enumerate(NOISE_KINDS) if c >> b & 1) for c in unique]
    return np.array(labels, dtype=object)[inverse]


def noisy_identity(
    rng: np.random.Generator,
    agency: str,
    people: pd.DataFrame,
    area: Area,
    book: AddressBook,
    latest: date,
    rates: Mapping[str, float],
    extra: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The agency's version of each child's identity with noise at `rates`, and the noise kinds
    applied to it (with any `extra` flags, such as duplicate_record)."""
    n = len(people)
    forename, f_flags = forename_noise(rng, people["forename"].to_numpy(), rates)
    surname, s_flags = surname_noise(
        rng, people["surname"].to_numpy(), people["ethnicity"].to_numpy(), rates
    )
    dob, d_flags = dob_noise(rng, people["dob"].to_numpy(), rates, latest)
    moved_rate = rates.get("moved", 0.0) * area.move_factor
    postcode, address, a_flags = address_noise(rng, people, book, rates, moved_rate)
    nhs, n_flags = identifier_noise(
        rng, people["nhs_number"].to_numpy(), rates, "nhs", invalidate_nhs, mistype_nhs
    )
    upns, u_flags = identifier_noise(
        rng, people["upn"].to_numpy(), rates, "upn", invalidate_upn, mistype_upn
    )
    unknown_sex = rng.random(n) < rates.get("sex_unknown", 0.0)
    unrecorded = rng.random(n) < rates.get("ethnicity_unrecorded", 0.0)
    flags = {
        **f_flags,
        **s_flags,
        **d_flags,
        **a_flags,
        **n_flags,
        **u_flags,
        "sex_unknown": unknown_sex,
        "ethnicity_unrecorded": unrecorded,
        **(extra or {}),
    }
    return pd.DataFrame(
        {
            "true_id": people["true_id"].to_numpy(),
            "nhs_number": nhs,
            "upn": upns,
            "forename": forename,
            "surname": surname,
            "dob": dob,
            "sex": np.where(unknown_sex, "U", people["sex"].to_numpy()),
            "postcode": postcode,
            "address": address,
            "ethnicity": np.where(
                unrecorded, UNRECORDED_ETHNICITY[agency], people["ethnicity"].to_numpy()
            ),
            "noise": noise_labels(flags, n),
        }
    )


def duplicate_rates(agency: str) -> dict[str, float]:
    """The noise rates of a child's second record: its agency's, with identifiers more often
    missing."""
    rates = dict(NOISE_RATES[agency])
    for kind in ("nhs_missing", "upn_missing"):
        rates[kind] = max(rates.get(kind, 0.0), DUPLICATE_ID_MISSING)
    return rates


def draw_duplicates(rng: np.random.Generator, rate: float, eligible: np.ndarray) -> np.ndarray:
    """Which children have a second record: `rate` of all of them, drawn among the eligible."""
    chance = min(1.0, rate * len(eligible) / max(int(eligible.sum()), 1))
    return eligible & (rng.random(len(eligible)) < chance)


def agency_identities(
    rng: np.random.Generator,
    agency: str,
    people: pd.DataFrame,
    twice: np.ndarray,
    area: Area,
    book: AddressBook,
    latest: date,
) -> pd.DataFrame:
    """The agency's person records: one identity version per child (record 0) and a second,
    independently noisy one (record 1) for the children in `twice`."""
    first = noisy_identity(rng, agency, people, area, book, latest, NOISE_RATES[agency])
    again = people[twice]
    extra = {"duplicate_record": np.ones(len(again), dtype=bool)}
    second = noisy_identity(rng, agency, again, area, book, latest, duplicate_rates(agency), extra)
    return pd.concat([first.assign(record=0), second.assign(record=1)], ignore_index=True)


def with_local_ids(
    identity: pd.DataFrame, agency: str, area: Area, rng: np.random.Generator
) -> pd.DataFrame:
    """The records with the agency, area and a local id each ('HLT-E09000099-004217')."""
    serial = rng.permutation(len(identity) * 3)[AGENCIES.index(agency) :: 3][: len(identity)] + 1
    prefix = f"{LOCAL_ID_PREFIX[agency]}-{area.la_code}-"
    local_id = np.char.add(prefix, np.char.zfill(serial.astype(str), 6)).astype(object)
    return identity.assign(agency=agency, la_code=area.la_code, local_id=local_id)


def rows_per_child(frames: Sequence[pd.DataFrame], true_ids: pd.Series) -> np.ndarray:
    """How many rows of the frames each child (true_ids) has."""
    if not frames:
        return np.zeros(len(true_ids), dtype=int)
    counts = pd.concat([f["true_id"] for f in frames]).value_counts()
    return true_ids.map(counts).fillna(0).to_numpy().astype(int)


def movable_rows(agency: str, name: str, frame: pd.DataFrame) -> np.ndarray:
    """Rows that can sit on a child's second record: those of DUPLICATE_EXTRACTS, but rows
    other extracts' rules find by local id (PROTECTED_ROWS: SEN2's issued plans)."""
    if name not in DUPLICATE_EXTRACTS[agency]:
        return np.zeros(len(frame), dtype=bool)
    if name in PROTECTED_ROWS:
        column, value = PROTECTED_ROWS[name]
        return (frame[column] != value).to_numpy()
    return np.ones(len(frame), dtype=bool)


def duplicable(agency: str, events: Mapping[str, pd.DataFrame], true_ids: pd.Series) -> np.ndarray:
    """Children whose rows can be shared between two records: at least two rows, one of them
    movable."""
    movable = [f[movable_rows(agency, n, f)] for n, f in events.items()]
    fixed = [f[~movable_rows(agency, n, f)] for n, f in events.items()]
    m, k = rows_per_child(movable, true_ids), rows_per_child(fixed, true_ids)
    return (m >= 1) & (m + k >= 2)


def split_events(
    rng: np.random.Generator, agency: str, events: Mapping[str, pd.DataFrame], twice: pd.Series
) -> dict[str, pd.DataFrame]:
    """The agency's rows with the record each belongs to: 0, or 1 for some of the movable rows
    of the children in `twice` (true ids), leaving each of their two records at least one."""
    out = {name: frame.assign(record=0) for name, frame in events.items()}
    movable = pd.concat(
        [
            pd.DataFrame({"extract": name, "row": rows, "true_id": f["true_id"].to_numpy()[rows]})
            for name, f in events.items()
            for rows in [np.flatnonzero(movable_rows(agency, name, f) & f["true_id"].isin(twice))]
        ],
        ignore_index=True,
    )
    fixed = [f[~movable_rows(agency, n, f)] for n, f in events.items()]
    fixed_rows = rows_per_child(fixed, movable["true_id"])
    order = np.lexsort((rng.random(len(movable)), movable["true_id"].to_numpy()))
    movable, fixed_rows = movable.iloc[order].reset_index(drop=True), fixed_rows[order]
    rank = movable.groupby("true_id").cumcount().to_numpy()
    record = (rng.random(len(movable)) < 0.5).astype(int)
    record = np.where(rank == 0, (fixed_rows > 0).astype(int), record)
    record = np.where((rank == 1) & (fixed_rows == 0), 1, record)
    for name in events:
        mine = movable[movable["extract"] == name]
        column = out[name]["record"].to_numpy().copy()
        column[mine["row"].to_numpy()] = record[mine.index.to_numpy()]
        out[name] = out[name].assign(record=column)
    return out


def agency_records(
    seed: int, area_index: int, agency: str, data: AreaData, term: Period
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The agency's person records (a local id and identity version each; a few children held
    twice) and the rows of its extracts, each with the record (0 or 1) it belongs to."""
    events = {c.name: data.events[c.name] for c in agency_contracts(agency)}
    known = pd.unique(pd.concat([f["true_id"] for f in events.values()]))
    people = data.people[data.people["true_id"].isin(known)]
    rate = NOISE_RATES[agency].get("duplicate_record", 0.0)
    pick_rng = agency_rng(seed, area_index, "duplicates", agency)
    twice = draw_duplicates(pick_rng, rate, duplicable(agency, events, people["true_id"]))
    events = split_events(pick_rng, agency, events, people["true_id"][twice])
    rng = area_rng(seed, area_index, f"noise_{agency}")
    latest = term.start - timedelta(days=1)
    identity = agency_identities(rng, agency, people, twice, data.area, data.addresses, latest)
    ids = area_rng(seed, area_index, "local_ids")
    return with_local_ids(identity, agency, data.area, ids), events


# --- Writing ---------------------------------------------------------------------------------
def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def iso_dates(days: np.ndarray) -> list[str]:
    days = days.astype(float)
    out = np.full(len(days), "", dtype=object)
    has = ~np.isnan(days)
    out[has] = np.datetime_as_string(days[has].astype("int64").astype("datetime64[D]"))
    return out.tolist()


def styled_dates(days: np.ndarray, style: ExportStyle) -> list[str]:
    """Dates as the export writes them: ISO, or UK DD/MM/YYYY; empty for no date."""
    iso = iso_dates(days)
    if style.date_format == "iso":
        return iso
    return [f"{d[8:10]}/{d[5:7]}/{d[:4]}" if d else "" for d in iso]


def styled_date(day: float, style: ExportStyle) -> str:
    return styled_dates(np.array([day]), style)[0]


def format_column(values: np.ndarray, kind: str, style: ExportStyle) -> list[str]:
    """CSV text of a column: dates in the export's style, true/false, integers, empty for
    null."""
    if kind == "date":
        return styled_dates(values, style)
    if kind == "bool":
        return ["true" if v else "false" for v in values]
    if kind == "int32":
        return ["" if is_missing(v) else str(int(v)) for v in values]
    return ["" if is_missing(v) else str(v) for v in values]


def extract_frame(contract: Contract, events: pd.DataFrame, identity: pd.DataFrame) -> pd.DataFrame:
    """The extract as the agency exports it: identity block then payload, ordered by local id.
    Rows and identities meet on (true_id, record): record 1 is a child's second record."""
    merged = events.drop(columns=["la_code"]).merge(
        identity, on=["true_id", "record"], how="left", validate="many_to_one"
    )
    order = ["local_id" if k == "person_token" else k for k in contract.key]
    merged = merged.sort_values(order, kind="mergesort")
    return merged.loc[:, [c.name for c in contract.raw_columns]].reset_index(drop=True)


@dataclass
class Line:
    """One data line of an export: its fields, whose record it is, and how it was made bad."""

    fields: list[str]
    local_id: str | None
    kind: str | None = None  # one of BAD_ROW_KINDS, or None for a good row
    column: str | None = None  # the column made bad, where there is one


def export_lines(contract: Contract, frame: pd.DataFrame, style: ExportStyle) -> list[Line]:
    columns = [format_column(frame[c.name].to_numpy(), c.type, style) for c in contract.raw_columns]
    ids = frame["local_id"].tolist()
    return [Line(list(f), i) for f, i in zip(zip(*columns, strict=True), ids, strict=True)]


def representable(text: str, encoding: str) -> str:
    """The text as a system limited to `encoding` holds it: characters it cannot hold are
    written without their accents (best fit: Wiśniewski -> Wisniewski), else as '?'."""
    if text.isascii():
        return text
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for char in text:
        try:
            char.encode(encoding)
            out.append(char)
        except UnicodeEncodeError:
            out.append(fold_accents(char).encode("ascii", "replace").decode("ascii"))
    return "".join(out)


def write_export(path: Path, contract: Contract, lines: Sequence[Line], style: ExportStyle) -> None:
    """The CSV file as the agency's system writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=style.encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=style.delimiter, lineterminator=style.line_terminator)
        writer.writerow([c.name for c in contract.raw_columns])
        writer.writerows(
            [representable(value, style.encoding) for value in line.fields] for line in lines
        )


# --- Bad rows --------------------------------------------------------------------------------
def order_pair(contract: Contract) -> tuple[str, str] | None:
    """The first two dates of the extract's first order rule (referral, first contact)."""
    rules = [r["columns"] for r in contract.date_rules if r["rule"] == "order"]
    return (rules[0][0], rules[0][1]) if rules else None


def period_column(contract: Contract) -> str | None:
    """The date a period rule (not after the period end, in the period) applies to."""
    rules = [r for r in contract.date_rules if r["rule"] in ("not_after_period_end", "in_period")]
    return rules[0]["column"] if rules else None


def required_code_column(contract: Contract) -> str | None:
    """The first required coded payload column outside the key."""
    found = [
        c.name for c in contract.payload if c.required and c.codes and c.name not in contract.key
    ]
    return found[0] if found else None


def integer_column(contract: Contract) -> str | None:
    found = [c.name for c in contract.payload if c.type == "int32"]
    return found[0] if found else None


def applicable_kinds(contract: Contract) -> tuple[str, ...]:
    """The kinds of bad row (but the duplicate header) an extract can have."""
    has = {
        "code_not_in_list": contract.name in INVALID_CODES,
        "missing_required": required_code_column(contract) is not None,
        "unparseable_date": order_pair(contract) is not None,
        "non_numeric_integer": integer_column(contract) is not None,
        "date_order": order_pair(contract) is not None,
        "after_period_end": period_column(contract) is not None,
        "duplicate_header": False,
    }
    return tuple(
        kind
        for kind in BAD_ROW_KINDS
        if has.get(kind, True) and EXTRACT_KINDS.get(kind, contract.name) == contract.name
    )


def bad_kind_cycles(seed: int) -> dict[str, Iterator[str]]:
    """Per extract, its applicable kinds in a seeded order, repeated (shared by the areas)."""
    rng = np.random.default_rng([seed, STREAMS.index("bad_rows")])
    return {
        name: itertools.cycle(rng.permutation(applicable_kinds(c)).tolist())
        for name, c in sorted(contracts().items())
    }


def bad_row_count(rows: int, rate: float) -> int:
    if rate <= 0 or rows < MIN_ROWS_FOR_BAD_ROWS:
        return 0
    return max(1, round(rate * rows))


def may_hold(frame: pd.DataFrame, contract: Contract, column: str) -> np.ndarray:
    """Rows whose column no null_if rule requires to be empty."""
    allowed = np.ones(len(frame), dtype=bool)
    for rule in contract.row_rules:
        if rule["rule"] == "null_if" and rule["column"] == column:
            applies = np.ones(len(frame), dtype=bool)
            for other, values in rule["when"].items():
                applies &= frame[other].isin(values).to_numpy()
            allowed &= ~applies
    return allowed


def alone_in_rules(frame: pd.DataFrame, contract: Contract, column: str) -> np.ndarray:
    """Rows whose other dates in the order rules with this column are empty, so moving the
    column breaks no order rule."""
    alone = np.ones(len(frame), dtype=bool)
    for rule in contract.date_rules:
        if rule["rule"] == "order" and column in rule["columns"]:
            for other in rule["columns"]:
                if other != column:
                    alone &= frame[other].isna().to_numpy()
    return alone


def bad_row_candidates(kind: str, contract: Contract, frame: pd.DataFrame) -> np.ndarray:
    """Rows that can be made bad of this kind and of no other."""
    if kind == "unparseable_date":
        return may_hold(frame, contract, order_pair(contract)[1])
    if kind == "date_order":
        return frame[order_pair(contract)[1]].notna().to_numpy()
    if kind == "after_period_end":
        return alone_in_rules(frame, contract, period_column(contract))
    if kind == "perm_with_reinstatement":
        return ((frame["category"] == "PERM") | frame["reinstatement_date"].notna()).to_numpy()
    if kind == "sen_without_primary_need":
        return frame["sen_provision"].isin(["K", "E"]).to_numpy()
    return np.ones(len(frame), dtype=bool)


def impossible_date(day: float, style: ExportStyle) -> str:
    """30 February of the date's year, in the export's style."""
    year = from_day_number(day).year
    return f"{year}-02-30" if style.date_format == "iso" else f"30/02/{year}"


def make_bad(
    rng: np.random.Generator,
    kind: str,
    line: Line,
    row: pd.Series,
    contract: Contract,
    style: ExportStyle,
    term: Period,
) -> None:
    """Turn a good line into a bad one of the kind (a duplicate's copy is the caller's)."""
    index = {c.name: i for i, c in enumerate(contract.raw_columns)}
    column, value = None, ""
    if kind == "code_not_in_list":
        column, value = INVALID_CODES[contract.name]
    elif kind == "missing_required":
        column = required_code_column(contract)
    elif kind == "unparseable_date":
        column, value = order_pair(contract)[1], str(rng.choice(BAD_DATES))
    elif kind == "non_numeric_integer":
        column, value = integer_column(contract), NON_NUMERIC
    elif kind == "date_order":
        first, column = order_pair(contract)
        value = styled_date(row[first] - int(rng.integers(1, 31)), style)
    elif kind == "after_period_end":
        column = period_column(contract)
        value = styled_date(day_number(term.end) + int(rng.integers(1, 61)), style)
    elif kind == "perm_with_reinstatement" and row["category"] == "PERM":
        column = "reinstatement_date"
        value = styled_date(row["start_date"] + int(rng.integers(1, 15)), style)
    elif kind == "perm_with_reinstatement":
        column, value = "category", "PERM"
    elif kind == "absence_exceeds_possible":
        column = "sessions_authorised"
        over = row["sessions_possible"] - row["sessions_unauthorised"] + rng.integers(1, 11)
        value = str(int(over))
    elif kind == "sen_without_primary_need":
        column = "primary_need"
    elif kind == "missing_local_id":
        column = "local_id"
    elif kind == "bad_dob":
        column = "dob"
        value = impossible_date(row["dob"], style) if rng.random() < 0.5 else ""
    elif kind == "invalid_sex":
        column, value = "sex", str(rng.choice(INVALID_SEX_CODES))
    elif kind == "ragged_row":
        line.fields.append("")
    if column is not None:
        line.fields[index[column]] = value
    line.kind, line.column = kind, column


def inject_bad_rows(
    rng: np.random.Generator,
    contract: Contract,
    frame: pd.DataFrame,
    lines: list[Line],
    kinds: Iterator[str],
    count: int,
    good_rows: Counter[str],
    term: Period,
) -> list[Line]:
    """The export's lines with `count` of them made bad; a line is made bad only while its
    record keeps another good line in the agency (good_rows counts them, and is updated)."""
    style = EXPORT_STYLES[contract.agency]
    usable = np.ones(len(frame), dtype=bool)
    if contract.name in PROTECTED_ROWS:
        column, value = PROTECTED_ROWS[contract.name]
        usable &= (frame[column] != value).to_numpy()
    local_ids = frame["local_id"].to_numpy()
    copies: dict[int, Line] = {}
    tries = len(applicable_kinds(contract))
    for _ in range(count):
        eligible = usable & np.array([good_rows[i] >= 2 for i in local_ids], dtype=bool)
        for _ in range(tries):
            kind = next(kinds)
            found = np.flatnonzero(eligible & bad_row_candidates(kind, contract, frame))
            if len(found):
                break
        else:
            break
        position = int(rng.choice(found))
        make_bad(rng, kind, lines[position], frame.iloc[position], contract, style, term)
        if kind == "duplicate_row":
            copies[position] = Line(list(lines[position].fields), local_ids[position], kind)
        usable[position] = False
        good_rows[local_ids[position]] -= 1
    out: list[Line] = []
    for position, line in enumerate(lines):
        out += [line, copies[position]] if position in copies else [line]
    return out


def with_duplicate_header(contract: Contract, lines: list[Line]) -> list[Line]:
    """The lines with the header repeated in the middle (two exports pasted together)."""
    header = Line([c.name for c in contract.raw_columns], None, "duplicate_header")
    middle = len(lines) // 2
    return [*lines[:middle], header, *lines[middle:]]


def agency_exports(
    rng: np.random.Generator,
    frames: Mapping[str, pd.DataFrame],
    kinds: Mapping[str, Iterator[str]],
    rate: float,
    term: Period,
    duplicate_header: bool,
) -> dict[str, list[Line]]:
    """Every extract of one agency and area as lines of its export, bad rows included."""
    good_rows: Counter[str] = Counter()
    for frame in frames.values():
        good_rows.update(frame["local_id"])
    exports: dict[str, list[Line]] = {}
    for name, frame in frames.items():
        spec = contracts()[name]
        lines = export_lines(spec, frame, EXPORT_STYLES[spec.agency])
        count = bad_row_count(len(frame), rate)
        lines = inject_bad_rows(rng, spec, frame, lines, kinds[name], count, good_rows, term)
        if duplicate_header and name == DUPLICATE_HEADER_EXTRACT and count:
            lines = with_duplicate_header(spec, lines)
        exports[name] = lines
    return exports


def bad_row_records(
    lines: Sequence[Line], contract: Contract, la_code: str
) -> list[dict[str, object]]:
    """The truth of an export's bad lines: the data row each is in the raw file (1-based), and
    in the pseudonymised file (landed_row; none for rows left out at source)."""
    index = {c.name: i for i, c in enumerate(contract.raw_columns)}
    records: list[dict[str, object]] = []
    landed = 0
    for row, line in enumerate(lines, start=1):
        structural = line.kind in STRUCTURAL_KINDS
        landed += not structural
        if line.kind is None:
            continue
        value = line.fields[index[line.column]] if line.column else None
        records.append(
            {
                "agency": contract.agency,
                "la_code": la_code,
                "extract": contract.name,
                "row": row,
                "landed_row": None if structural else landed,
                "kind": line.kind,
                "local_id": line.local_id,
                "column": line.column,
                "value": value or None,
            }
        )
    return records


BAD_ROWS_SCHEMA = pa.schema(
    [
        ("agency", pa.string()),
        ("la_code", pa.string()),
        ("extract", pa.string()),
        ("row", pa.int32()),
        ("landed_row", pa.int32()),
        ("kind", pa.string()),
        ("local_id", pa.string()),
        ("column", pa.string()),
        ("value", pa.string()),
    ]
)


def arrow_column(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """An Arrow array from a column using NaN or None for null."""
    if kind in (pa.date32(), pa.int32()):
        floats = values.astype(float)
        mask = np.isnan(floats)
        return pa.array(np.nan_to_num(floats).astype("int32"), type=kind, mask=mask)
    if kind == pa.bool_():
        return pa.array(values.astype(bool), type=kind)
    return pa.array([None if is_missing(v) else str(v) for v in values], type=kind)


TRUTH_CHILDREN: tuple[tuple[str, str, pa.DataType], ...] = (
    ("true_id", "true_id", pa.string()),
    ("la_code", "la_code", pa.string()),
    ("household_id", "household_id", pa.string()),
    ("forename", "forename", pa.string()),
    ("surname", "surname", pa.string()),
    ("dob", "dob", pa.date32()),
    ("sex", "sex", pa.string()),
    ("ethnicity", "ethnicity", pa.string()),
    ("postcode", "postcode", pa.string()),
    ("address", "address", pa.string()),
    ("nhs_number", "nhs_number", pa.string()),
    ("upn", "upn", pa.string()),
    ("age", "age", pa.int32()),
    ("on_census", "on_census", pa.bool_()),
    ("ncyear", "ncyear", pa.int32()),
    ("school_urn", "school_urn", pa.string()),
    ("sen_provision", "sen", pa.string()),
    ("primary_need", "primary_need", pa.string()),
    ("secondary_need", "secondary_need", pa.string()),
    ("fsm", "fsm", pa.bool_()),
    ("twin_of", "twin_of", pa.string()),
    ("plan_start_date", "plan_start", pa.date32()),
    ("health_referrals", "health_referrals", pa.int32()),
    ("child_in_need", "child_in_need", pa.bool_()),
    ("protection_plan", "protection_plan", pa.bool_()),
    ("looked_after", "looked_after", pa.bool_()),
)
TRUTH_RECORDS = ("agency", "la_code", "local_id", "true_id", "noise")


def write_truth(
    path: Path, frame: pd.DataFrame, columns: Sequence[tuple[str, str, pa.DataType]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {name: arrow_column(frame[src].to_numpy(), kind) for name, src, kind in columns}
    )
    pq.write_table(table, path)


# --- The whole run ---------------------------------------------------------------------------
def simulate_area(
    seed: int, area_index: int, area: Area, term: Period, nhs: np.ndarray, first_id: int
) -> AreaData:
    """Children of one area and every agency's events about them."""
    people, book = build_people(seed, area_index, area, term, nhs, first_id)
    sen2, people = sen2_rows(area_rng(seed, area_index, "sen2"), people, area, term)
    standing, people = standing_plan_rows(
        area_rng(seed, area_index, "sen2_plans"), people, area, term
    )
    sen2 = pd.concat([sen2, standing], ignore_index=True)
    rng = area_rng(seed, area_index, "care")
    cin, lac = care_flags(rng, people, area)
    events = {
        "education_census": census_rows(area_rng(seed, area_index, "census"), people, area, term),
        "education_exclusions": exclusion_rows(
            area_rng(seed, area_index, "exclusions"), people, area, term
        ),
        "education_sen2": sen2,
        "health_referrals": referral_rows(area_rng(seed, area_index, "health"), people, area, term),
        "care_cin": cin_rows(rng, people, cin, lac, area, term),
        "care_lac": lac_rows(rng, people, lac, area, term),
    }
    missing = sorted(set(contracts()) - set(events))
    if missing:
        raise NotImplementedError(f"synth makes no rows for contracts {missing}")
    cpp = events["care_cin"].loc[events["care_cin"]["cpp_start_date"].notna(), "true_id"]
    referrals = events["health_referrals"]["true_id"].value_counts()
    people = people.assign(
        household_id=[f"{area.la_code}-H{h:06d}" for h in people["household"]],
        ncyear=np.where(people["on_census"], people["age"] - SCHOOL_AGES[0], np.nan),
        health_referrals=people["true_id"].map(referrals).fillna(0).to_numpy(),
        child_in_need=cin,
        protection_plan=people["true_id"].isin(set(cpp)).to_numpy(),
        looked_after=lac,
    )
    return AreaData(area=area, people=people, events=events, addresses=book)


# --- Identity rows only, for the linkage benchmarks ----------------------------------------
LINKAGE_COVERAGE = 0.8  # share of the population each agency holds in a linkage population
LINKAGE_PERIOD = "2024-25"
EXTRA_DISTRICT_SUFFIXES = "ABCDEFGHJKLMNPQRSTUVWXY"  # SH1A-style outward codes beyond SH99
POSTCODE_DENSITY = 0.25  # at most this share of an area's possible postcode units in use
# A linkage population bigger than the three areas at LARGEST_AREA_SCALE is spread over copies of
# them (each its own area), so that no area outgrows the largest real authorities of its kind:
# look-alike children (one name and birthday) in an area grow with the square of its size. At
# scale 15 Riverside holds 120,000 children and young people aged 0-25, about as many as the
# largest London boroughs (Barnet, Croydon: 390,000 residents in the 2021 census, some 30% aged
# 0-25), and Saltmarsh 60,000, as the largest coastal district (East Suffolk, 246,000 residents);
# Shirehampton's 150,000 is a middling county (Kent: about 490,000 aged 0-25).
LARGEST_AREA_SCALE = 15.0
MAX_AREA_COPIES = 5  # copy k has LA numbers 991-993 minus 10k: 951-953 at most, none of them real


@dataclass(frozen=True)
class LinkagePopulation:
    """Identity rows of a synthetic population as each agency holds them, and the truth."""

    raw: dict[str, pd.DataFrame]  # agency -> one row per record: its raw identity fields, la_code
    truth: pd.DataFrame  # agency, local_id, true_id (a child held twice has two), la_code, noise


def agency_identity_fields(agency: str) -> list[str]:
    """The raw identity fields the agency's contracts hold, in identity.json order."""
    held = {f for c in agency_contracts(agency) for f in c.identity}
    return [c.name for c in identity_columns("raw") if c.name in held]


def linkage_copies(total: int) -> int:
    """How many copies of the three areas hold `total` children with no area bigger than at
    LARGEST_AREA_SCALE."""
    per_copy = sum(a.size for a in AREAS) * LARGEST_AREA_SCALE
    copies = math.ceil(total / per_copy)
    if copies > MAX_AREA_COPIES:
        raise ValueError(
            f"a linkage population holds at most {MAX_AREA_COPIES} copies of the areas "
            f"({MAX_AREA_COPIES * per_copy:,.0f} children), not {total:,}"
        )
    return max(1, copies)


def linkage_sizes(total: int, copies: int = 1) -> list[int]:
    """`total` children shared among `copies` copies of the areas in proportion to their size
    (copy 0's areas first)."""
    weights = np.array([a.size for a in AREAS] * copies, dtype=float)
    sizes = np.floor(total * weights / weights.sum()).astype(int)
    sizes[np.argsort(-weights, kind="stable")[: total - sizes.sum()]] += 1
    return sizes.tolist()


def district_codes(area: Area) -> list[str]:
    """Every outward code the area may use: PREFIX1 to PREFIX99, then PREFIX1A-style ones."""
    prefix = area.districts[0].rstrip("0123456789")
    codes = [f"{prefix}{i}" for i in range(1, 100)]
    return codes + [f"{prefix}{i}{x}" for i in range(1, 10) for x in EXTRA_DISTRICT_SUFFIXES]


def districts_needed(area: Area, n: int) -> int:
    """Postcode districts that hold n children at the area's household density."""
    units = 10 * len(POSTCODE_UNIT_LETTERS) ** 2  # per district
    return math.ceil(n / area.households_per_postcode / (units * POSTCODE_DENSITY))


def copy_la_code(la_code: str, copy: int) -> str:
    """The area's code in copy `copy`: E09000099 -> E09000199 for copy 1 (copy 0 keeps it)."""
    return f"{la_code[:-3]}{copy}{la_code[-2:]}"


def area_copies(template: Area, sizes: Sequence[int]) -> list[Area]:
    """The template as len(sizes) distinct areas of those sizes, each with enough postcode
    districts for its children at the template's household density (as many as the template's
    at least), the districts of all copies disjoint: copy 0 is the template itself, each further
    copy has its own code and LA number (so its UPNs are its own)."""
    codes = district_codes(template)
    counts = [max(districts_needed(template, n), len(template.districts)) for n in sizes]
    if sum(counts) > len(codes):
        raise ValueError(f"{template.name} cannot hold {sum(sizes)} children")
    ends = np.cumsum(counts).tolist()
    return [
        replace(
            template,
            la_code=copy_la_code(template.la_code, copy),
            name=template.name if copy == 0 else f"{template.name} {copy + 1}",
            la_number=str(int(template.la_number) - 10 * copy),
            districts=tuple(codes[end - count : end]),
        )
        for copy, (count, end) in enumerate(zip(counts, ends, strict=True))
    ]


def linkage_areas(total: int) -> list[tuple[Area, int]]:
    """The areas of a linkage population of `total` children, each with its size: the three
    areas, in as many copies as keep each within LARGEST_AREA_SCALE (copy 0's areas first)."""
    copies = linkage_copies(total)
    sizes = np.array(linkage_sizes(total, copies)).reshape(copies, len(AREAS))
    per_template = [area_copies(t, sizes[:, i].tolist()) for i, t in enumerate(AREAS)]
    return [
        (per_template[i][copy], int(sizes[copy, i]))
        for copy in range(copies)
        for i in range(len(AREAS))
    ]


def linkage_people(
    seed: int, area_index: int, area: Area, nhs: np.ndarray, first_id: int
) -> tuple[pd.DataFrame, AddressBook]:
    """An area's true children with identities (households, names, addresses, NHS numbers,
    UPNs from the area's primary schools) and its addresses, without SEN or events."""
    term = Period(LINKAGE_PERIOD)
    people, book = household_people(
        area_rng(seed, area_index, "people"), seed, area_index, area, term, nhs, first_id
    )
    rng = area_rng(seed, area_index, "linkage")
    primary = [e for _, e in area_schools(area_index, len(people))["primary"]]
    estab = np.array(primary, dtype=object)[rng.integers(len(primary), size=len(people))]
    return people.assign(upn=assign_upns(rng, people, area, term, estab)), book


def linkage_population(children_per_agency: int, seed: int) -> LinkagePopulation:
    """Identity rows for the linkage benchmarks: a population of children_per_agency /
    LINKAGE_COVERAGE children over the areas, each agency holding a random LINKAGE_COVERAGE of
    them with its NOISE_RATES, second records and twins as in `generate`. Dates of birth are
    ISO text, as the raw extracts hold them."""
    term = Period(LINKAGE_PERIOD)
    latest = term.start - timedelta(days=1)
    areas = linkage_areas(math.ceil(children_per_agency / LINKAGE_COVERAGE))
    nhs = valid_nhs_numbers(area_rng(seed, len(AREAS), "identifiers"), sum(n for _, n in areas))
    raw: dict[str, list[pd.DataFrame]] = {agency: [] for agency in AGENCIES}
    first_id = 0
    for index, (area, n) in enumerate(areas):
        people, book = linkage_people(seed, index, area, nhs[first_id : first_id + n], first_id)
        first_id += n
        for agency in AGENCIES:
            held = people[agency_rng(seed, index, "linkage", agency).random(n) < LINKAGE_COVERAGE]
            twice = draw_duplicates(
                agency_rng(seed, index, "duplicates", agency),
                NOISE_RATES[agency].get("duplicate_record", 0.0),
                np.ones(len(held), dtype=bool),
            )
            rng = area_rng(seed, index, f"noise_{agency}")
            identity = agency_identities(rng, agency, held, twice, area, book, latest)
            ids = agency_rng(seed, index, "local_ids", agency)
            raw[agency].append(with_local_ids(identity, agency, area, ids))
    frames = {agency: pd.concat(parts, ignore_index=True) for agency, parts in raw.items()}
    truth = pd.concat(
        [f[["agency", "local_id", "true_id", "la_code", "noise"]] for f in frames.values()],
        ignore_index=True,
    )
    return LinkagePopulation(
        raw={
            agency: frame.assign(dob=iso_dates(frame["dob"].to_numpy()))[
                [*agency_identity_fields(agency), "la_code"]
            ]
            for agency, frame in frames.items()
        },
        truth=truth,
    )


def area_sizes(scale: float) -> list[int]:
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    return [max(MIN_CHILDREN, round(area.size * scale)) for area in AREAS]


def generate(
    settings: Settings,
    period: str = "2024-25",
    seed: int = 20241,
    scale: float = 1.0,
    bad_row_rate: float = BAD_ROW_RATE,
) -> SynthSummary:
    """Write every agency's raw extracts for the three synthetic areas, in each agency's export
    style and with bad rows at `bad_row_rate` (0 for none), and the ground truth. An extract
    with no rows (possible at small scales) is not written: the agency has nothing to send."""
    term = Period(period)
    sizes = area_sizes(scale)
    nhs = valid_nhs_numbers(area_rng(seed, len(AREAS), "identifiers"), sum(sizes))
    kinds = bad_kind_cycles(seed)
    paths: list[Path] = []
    rows: dict[str, dict[str, int]] = {name: {} for name in contracts()}
    bad_counts: dict[str, dict[str, int]] = {name: {} for name in contracts()}
    records: dict[str, dict[str, int]] = {agency: {} for agency in AGENCIES}
    identities: list[pd.DataFrame] = []
    children: list[pd.DataFrame] = []
    bad_rows: list[dict[str, object]] = []
    first_id = 0
    for index, (area, n) in enumerate(zip(AREAS, sizes, strict=True)):
        data = simulate_area(seed, index, area, term, nhs[first_id : first_id + n], first_id)
        first_id += n
        children.append(data.people)
        rng = area_rng(seed, index, "bad_rows")
        for agency in AGENCIES:
            identity, events = agency_records(seed, index, agency, data, term)
            identities.append(identity)
            records[agency][area.la_code] = len(identity)
            frames = {
                c.name: extract_frame(c, events[c.name], identity) for c in agency_contracts(agency)
            }
            exports = agency_exports(rng, frames, kinds, bad_row_rate, term, index == 0)
            for c in agency_contracts(agency):
                lines = exports[c.name]
                found = bad_row_records(lines, c, area.la_code)
                bad_rows += found
                rows[c.name][area.la_code] = len(lines)
                bad_counts[c.name][area.la_code] = len(found)
                if not lines:
                    continue  # nothing to report (small scales): the agency sends no file
                path = settings.raw_dir / agency / period / area.la_code / f"{c.name}.csv"
                write_export(path, c, lines, EXPORT_STYLES[agency])
                paths.append(path)
    truth = settings.truth_dir / period
    write_truth(truth / "children.parquet", pd.concat(children, ignore_index=True), TRUTH_CHILDREN)
    all_records = pd.concat(identities, ignore_index=True).sort_values(
        ["agency", "local_id"], kind="mergesort"
    )
    write_truth(
        truth / "records.parquet", all_records, [(c, c, pa.string()) for c in TRUTH_RECORDS]
    )
    pq.write_table(
        pa.Table.from_pylist(bad_rows, schema=BAD_ROWS_SCHEMA), truth / "bad_rows.parquet"
    )
    paths += [truth / "children.parquet", truth / "records.parquet", truth / "bad_rows.parquet"]
    return SynthSummary(
        period=period,
        seed=seed,
        scale=scale,
        children={area.la_code: n for area, n in zip(AREAS, sizes, strict=True)},
        records=records,
        rows=rows,
        bad_rows=bad_counts,
        paths=tuple(paths),
    )
