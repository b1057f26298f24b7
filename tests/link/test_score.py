"""Tests of joinedup.link.score: scored pairs of two agencies and of one agency with itself."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pandas as pd
import pytest

from joinedup import pseudonymise as ps
from joinedup.link.compare import prepare_side
from joinedup.link.score import ScoredPairs, score_agency_pair, score_within_agency
from joinedup.settings import Settings

KEY = b"score-test-key-" + b"x" * 32
SETTINGS = Settings()
FORENAMES = [
    "OLIVER",
    "JACK",
    "HARRY",
    "GEORGE",
    "NOAH",
    "AMELIA",
    "ISLA",
    "AVA",
    "EMILY",
    "GRACE",
    "AISHA",
    "FATIMA",
    "ZARA",
]
SURNAMES = [
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "PATEL",
    "KHAN",
    "BEGUM",
    "OKAFOR",
    "NOWAK",
    "MURPHY",
    "KELLY",
    "SCOTT",
]
PAIR_COLUMNS = [
    "agency_l",
    "person_token_l",
    "agency_r",
    "person_token_r",
    "match_weight",
    "match_probability",
    "agreement",
    "identifier_agrees",
    "may_link",
    "twin_like",
    "names_birth_home",
    "one_child",
    "numbers_disagree",
]


def person(agency: str, local_id: str, **raw: object) -> dict:
    """A pseudonymised person record from raw identity fields, via the real derivers."""
    row = {"agency": agency, "person_token": ps.person_token(KEY, agency, local_id)}
    row |= ps.nhs_number_values(raw.get("nhs"), KEY) | ps.upn_values(raw.get("upn"), KEY)
    row |= ps.name_values(raw["forename"], KEY, "forename")
    row |= ps.name_values(raw["surname"], KEY, "surname")
    row |= ps.dob_values(raw["dob"], KEY) | ps.postcode_values(raw["postcode"], KEY)
    row |= ps.address_values(raw["address"], KEY)
    return row | {"sex": raw["sex"]}


def nhs_number(rng: random.Random) -> str:
    """A valid NHS number (modulus 11 check digit)."""
    while (check := ps.nhs_check_digit(nine := f"{rng.randrange(10**8, 10**9)}")) is None:
        pass
    return f"{nine}{check}"


def population(n: int = 400, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Education and health records of n children (health knows 60%, one in eight with a typo or
    a move), a pair of twins split between the agencies and one child twice in health."""
    rng = random.Random(seed)
    education, health = [], []
    for child in range(n):
        raw = {
            "forename": rng.choice(FORENAMES),
            "surname": rng.choice(SURNAMES),
            "dob": date(2008, 1, 1) + timedelta(days=rng.randrange(4000)),
            "sex": rng.choice("MF"),
            "postcode": f"LS{rng.randrange(1, 20)} {rng.randrange(1, 9)}AB",
            "address": f"{rng.randrange(1, 90)} {rng.choice(['Mill', 'Oak', 'Park'])} Road",
            "nhs": nhs_number(rng),
        }
        education.append(person("education", f"c{child}", **(raw | {"nhs": None})))
        if rng.random() < 0.6:
            noisy = dict(raw)
            if rng.random() < 0.125:
                noisy["surname"] = noisy["surname"][:-1] + "E"
            health.append(person("health", f"c{child}", **noisy))
        if child == 0:
            health.append(person("health", "c0-again", **(raw | {"postcode": "M1 1AE"})))
    twin = {"surname": "BARRACLOUGH", "dob": date(2014, 6, 3), "sex": "M", "postcode": "BD7 1DP"}
    twin["address"] = "4 Mill Road"
    education.append(person("education", "twin-a", forename="OLIVER", **twin))
    health.append(person("health", "twin-b", forename="OSCAR", **twin))
    return pd.DataFrame(education), pd.DataFrame(health)


@pytest.fixture(scope="module")
def scored() -> tuple[ScoredPairs, ScoredPairs]:
    education, health = population()
    left = prepare_side("education", education, SETTINGS.link.bloom_bits)
    right = prepare_side("health", health, SETTINGS.link.bloom_bits)
    return score_agency_pair(left, right, SETTINGS), score_within_agency(right, SETTINGS)


def token(agency: str, local_id: str) -> str:
    return ps.person_token(KEY, agency, local_id)


def test_agency_pair_keeps_likely_pairs_with_their_explanation(scored) -> None:
    across, _ = scored
    assert across.name == "education-health" and list(across.pairs.columns) == PAIR_COLUMNS
    assert (across.pairs.match_probability >= SETTINGS.link.keep_probability).all()
    assert across.candidates >= len(across.pairs)
    assert not across.pairs.identifier_agrees.any()  # education holds no NHS number


def test_agency_pair_finds_the_same_children(scored) -> None:
    across, _ = scored
    links = across.pairs[(across.pairs.match_probability >= 0.9) & across.pairs.may_link]
    ids = {v: k for k, v in ((f"c{i}", token("education", f"c{i}")) for i in range(400))}
    ids_r = {v: k for k, v in ((f"c{i}", token("health", f"c{i}")) for i in range(400))}
    same = [
        ids.get(a) == ids_r.get(b)
        for a, b in zip(links.person_token_l, links.person_token_r, strict=True)
    ]
    in_health = set(across.records.person_token[across.records.agency == "health"])
    known = len(in_health & set(ids_r))
    assert sum(same) >= 0.95 * known and sum(same) >= 0.99 * len(links)


def test_twins_may_not_link(scored) -> None:
    across, _ = scored
    pairs = across.pairs
    twins = pairs[
        (pairs.person_token_l == token("education", "twin-a"))
        & (pairs.person_token_r == token("health", "twin-b"))
    ]
    assert len(twins) == 1 and not twins.may_link.any()


def test_twins_are_counted_as_twin_like(scored) -> None:
    """The split twins are the one twin-like pair across; health's own records hold none."""
    across, within = scored
    pairs = across.pairs
    assert pairs.twin_like.sum() == across.twin_like_pairs == 1
    twin = pairs[pairs.twin_like].iloc[0]
    assert (twin.person_token_l, twin.person_token_r) == (
        token("education", "twin-a"),
        token("health", "twin-b"),
    )
    assert within.twin_like_pairs == 0


def test_record_summary_has_each_record_of_each_side_once(scored) -> None:
    across, _ = scored
    records = across.records
    assert set(zip(records.agency, records.other_agency, strict=True)) == {
        ("education", "health"),
        ("health", "education"),
    }
    assert not records.duplicated(["agency", "person_token"]).any()
    assert records.candidates.sum() == 2 * across.candidates
    assert records.match_mass.between(0, 1).all()


def test_within_agency_scores_each_pair_once_and_each_record_once(scored) -> None:
    _, within = scored
    assert within.name == "health-health"
    pairs = within.pairs
    assert (pairs.person_token_l < pairs.person_token_r).all()  # each pair once, never a self-pair
    assert set(within.records.other_agency) == {"health"}
    assert within.records.candidates.sum() == 2 * within.candidates
    assert within.records.person_token.is_unique


def within_health_links(with_duplicate: bool) -> tuple[pd.DataFrame, set[str]]:
    """Health's within-agency links (probability >= 0.9, twin guard passed), m taken from the
    education-health model; with a second record planted for one child (another postcode, no
    NHS number) or none. Also returns the planted pair's tokens."""
    education, health = population()
    first = health.iloc[5]
    second = first.copy()
    second["person_token"] = token("health", "planted-second")
    for column, value in (
        ps.nhs_number_values(None, KEY) | ps.postcode_values("M1 1AE", KEY)
    ).items():
        second[column] = value
    if with_duplicate:
        health = pd.concat([health, second.to_frame().T], ignore_index=True)
    left = prepare_side("education", education, SETTINGS.link.bloom_bits)
    right = prepare_side("health", health, SETTINGS.link.bloom_bits)
    cross = score_agency_pair(left, right, SETTINGS)
    pairs = score_within_agency(right, SETTINGS, [cross.model]).pairs
    links = pairs[(pairs.match_probability >= 0.9) & pairs.may_link]
    return links, {first["person_token"], second["person_token"]}


def test_within_agency_with_cross_agency_m_finds_the_planted_duplicate() -> None:
    links, pair = within_health_links(with_duplicate=True)
    assert [set(p) for p in zip(links.person_token_l, links.person_token_r, strict=True)] == [pair]


def test_within_agency_with_cross_agency_m_links_nothing_without_duplicates() -> None:
    links, _ = within_health_links(with_duplicate=False)
    assert links.empty
