"""Clerical review: the pairs the model is unsure of, and the decisions a data engineer makes.

The loop:

1. a link run writes `review.csv` in its link directory: every pair scored between
   settings.link.review_probability and settings.link.match_probability that passes the twin
   guard, is not already decided and does not already sit in one child, with its weight,
   agreement pattern and clear context (birth year-month, sex, postcode district, area) of
   each side; no identifier;
2. a data engineer fills `decision` with accept or reject (and `reviewer`, optionally `note`)
   and runs `joinedup review --period P --file review.csv`, which validates the file and
   appends the decisions to the persistent settings.data_dir/review/decisions.csv (the whole
   history is kept there; the latest decision for a pair is the one that counts);
3. the next link run applies them: an accepted pair links (decided_by 'clerical') unless that
   would break a spine constraint, which is reported as a conflict instead; a rejected pair
   never links, whatever its weight; decided pairs no longer appear in review.csv.

A pair is named by `pair_id`, a hash of its two record keys that does not depend on their
order, so a decision survives reruns and new periods.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from joinedup.contracts import Period
from joinedup.link.spine import write_atomically
from joinedup.settings import AGENCIES, Settings

log = logging.getLogger(__name__)

ACCEPT = "accept"
REJECT = "reject"
DECISIONS = (ACCEPT, REJECT)
PAIR_KEY = ("agency_l", "person_token_l", "agency_r", "person_token_r")
CONTEXT = ("birth_ym", "sex", "postcode_district", "la_code")
REVIEW_COLUMNS = (
    "pair_id",
    *PAIR_KEY,
    "match_weight",
    "match_probability",
    "agreement",
    *(f"{c}_{side}" for c in CONTEXT for side in ("l", "r")),
    "decision",
    "reviewer",
    "note",
)
REQUIRED_REVIEW_COLUMNS = ("pair_id", *PAIR_KEY, "decision", "reviewer")
DECISION_COLUMNS = ("pair_id", *PAIR_KEY, "decision", "reviewer", "note", "period", "decided_at")


class ReviewFileError(ValueError):
    """A review or decisions file cannot be used; the message names the file, line and problem."""


def decisions_path(settings: Settings) -> Path:
    """The persistent clerical decisions, shared by every run and period."""
    return settings.data_dir / "review" / "decisions.csv"


def review_path(settings: Settings, period: str) -> Path:
    """The review file a link run of the period writes."""
    return settings.work_dir / period / "link" / "review.csv"


def pair_id(agency_l: str, token_l: str, agency_r: str, token_r: str) -> str:
    """'P' + 16 hex digits of sha256 of the two record keys in sorted order."""
    first, second = sorted([f"{agency_l}|{token_l}", f"{agency_r}|{token_r}"])
    return "P" + hashlib.sha256(f"{first}||{second}".encode()).hexdigest()[:16]


def pair_ids(pairs: pd.DataFrame) -> list[str]:
    return [pair_id(*key) for key in zip(*(pairs[c] for c in PAIR_KEY), strict=True)]


# ----------------------------------------------------------------------------------------------
# Pairs for review
# ----------------------------------------------------------------------------------------------


def in_review_band(pairs: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Pairs between the review and match thresholds that pass the twin guard."""
    probability = pairs["match_probability"].to_numpy(float)
    return (
        (probability >= settings.link.review_probability)
        & (probability < settings.link.match_probability)
        & pairs["may_link"].to_numpy(bool)
    )


def review_rows(pairs: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """The review file's rows for pairs: id, keys, weight, agreement, each side's context and
    empty decision columns; most probable first."""
    context = records.reindex(columns=["agency", "person_token", *CONTEXT])
    rows = pairs.reindex(columns=[*PAIR_KEY, "match_weight", "match_probability", "agreement"])
    for side in ("l", "r"):
        renamed = context.rename(columns=lambda c, s=side: f"{c}_{s}")
        rows = rows.merge(renamed, on=[f"agency_{side}", f"person_token_{side}"], how="left")
    rows["pair_id"] = pair_ids(rows)
    rows = rows.assign(decision="", reviewer="", note="")
    ordered = rows.sort_values(
        ["match_probability", *PAIR_KEY], ascending=[False, True, True, True, True]
    )
    return ordered.reindex(columns=list(REVIEW_COLUMNS)).reset_index(drop=True)


def write_review_file(rows: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, rows.reindex(columns=list(REVIEW_COLUMNS)).to_csv)


# ----------------------------------------------------------------------------------------------
# Decisions
# ----------------------------------------------------------------------------------------------


def read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV file as strings (empty cells stay ''); unreadable files raise ReviewFileError."""
    if not path.is_file():
        raise ReviewFileError(f"{path}: no such file")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ReviewFileError(f"{path}: not a readable CSV file ({error})") from error


def decided_rows(
    frame: pd.DataFrame, path: Path, reviewer: str | None = None, history: bool = False
) -> pd.DataFrame:
    """The rows of a review or decisions file that carry a decision, checked and normalised
    (decision lower case, blank reviewer filled from reviewer). Only a history (the decisions
    file) may decide one pair twice differently. Raises ReviewFileError naming the file, each
    bad line (the header is line 1) and its problem."""
    missing = [c for c in REQUIRED_REVIEW_COLUMNS if c not in frame.columns]
    if missing:
        raise ReviewFileError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame.assign(
        decision=frame["decision"].str.strip().str.lower(),
        reviewer=frame["reviewer"].str.strip().replace("", reviewer or ""),
        note=frame["note"] if "note" in frame.columns else "",
        line=np.arange(len(frame)) + 2,
    )
    frame = frame[frame["decision"] != ""]
    problems = [
        f"line {row.line}: {problem}"
        for row in frame.itertuples(index=False)
        if (problem := row_problem(row))
    ]
    problems += [] if history else conflicting_lines(frame)
    if problems:
        shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
        raise ReviewFileError(f"{path}: {len(problems)} problem(s):\n  {shown}")
    return frame.drop(columns="line").reset_index(drop=True)


def row_problem(row) -> str | None:
    """What is wrong with one decided row (None: nothing)."""
    if row.decision not in DECISIONS:
        return f"decision {row.decision!r} is not one of {', '.join(DECISIONS)} (or empty)"
    for side in ("l", "r"):
        agency = getattr(row, f"agency_{side}")
        if agency not in AGENCIES:
            return f"agency_{side} {agency!r} is not one of {', '.join(AGENCIES)}"
        if not getattr(row, f"person_token_{side}"):
            return f"person_token_{side} is empty"
    if row.pair_id != pair_id(row.agency_l, row.person_token_l, row.agency_r, row.person_token_r):
        return f"pair_id {row.pair_id!r} does not match the row's record keys"
    if not row.reviewer:
        return "a decision without a reviewer (fill the reviewer column or pass --reviewer)"
    return None


def conflicting_lines(frame: pd.DataFrame) -> list[str]:
    """A pair decided twice in one file with different decisions."""
    counts = frame.groupby("pair_id")["decision"].nunique()
    return [
        f"lines {', '.join(map(str, frame.loc[frame.pair_id == pid, 'line']))}: "
        f"pair {pid} is both accepted and rejected"
        for pid in counts[counts > 1].index
    ]


def read_decisions(path: Path) -> pd.DataFrame:
    """Every decision ever recorded (oldest first); empty when there are none yet."""
    if not path.exists():
        return pd.DataFrame(columns=list(DECISION_COLUMNS), dtype=object)
    return decided_rows(read_csv_text(path), path, history=True).reindex(
        columns=list(DECISION_COLUMNS)
    )


def current_decisions(history: pd.DataFrame) -> pd.DataFrame:
    """The latest decision per pair (a later decision replaces an earlier one)."""
    return history.drop_duplicates("pair_id", keep="last").reset_index(drop=True)


def record_decisions(
    reviewed: Path,
    settings: Settings,
    period: str,
    reviewer: str | None = None,
    decided_at: str | None = None,
) -> pd.DataFrame:
    """Validate a reviewed file and append its decisions to the persistent decisions file
    (skipping those identical to the pair's current decision); returns the rows appended."""
    period = Period(period).label
    rows = decided_rows(read_csv_text(reviewed), reviewed, reviewer)
    rows = rows.drop_duplicates("pair_id", keep="last")
    stamp = decided_at or datetime.now(UTC).isoformat(timespec="seconds")
    new = rows.assign(period=period, decided_at=stamp).reindex(columns=list(DECISION_COLUMNS))
    path = decisions_path(settings)
    history = read_decisions(path)
    fields = ["pair_id", "decision", "reviewer", "note"]
    current = set(current_decisions(history)[fields].itertuples(index=False, name=None))
    unchanged = [row in current for row in new[fields].itertuples(index=False, name=None)]
    new = new[~np.array(unchanged, dtype=bool)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, pd.concat([history, new], ignore_index=True).to_csv)
    return new.reset_index(drop=True)


def matching_pairs(pairs: pd.DataFrame, decided: pd.DataFrame) -> np.ndarray:
    """True for each pair whose two records (in either order) form a pair of decided."""
    key = list(PAIR_KEY)
    if decided.empty or pairs.empty:  # the usual case: no merge over every pair's record keys
        return np.zeros(len(pairs), dtype=bool)
    swapped = decided.rename(
        columns={
            "agency_l": "agency_r",
            "person_token_l": "person_token_r",
            "agency_r": "agency_l",
            "person_token_r": "person_token_l",
        }
    )
    both = pd.concat([decided[key], swapped[key]]).drop_duplicates().assign(_hit=True)
    hits = pairs[key].reset_index(drop=True).merge(both, on=key, how="left")["_hit"]
    return hits.notna().to_numpy()
