"""Tests of joinedup.link.duplicates: twins as the alternative at one birth and home, and the
corroboration of duplicate pairs by the other agencies' records."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup.link.compare import COMPARISON_NAMES, COMPARISONS, RESIDENCE_LEVELS, level_code
from joinedup.link.duplicates import (
    CORROBORATION_LEVELS,
    bridged,
    corroborated,
    corroboration_levels,
    crossing_records,
    ends_of_links,
    fit_corroboration,
    fit_twin_alternative,
    strongest_links,
    with_twin_alternative,
)
from joinedup.link.model import TWIN_SURNAME_LEVELS, FSModel
from tests.link.levels import pairs_at

# ----------------------------------------------------------------------------------------------
# Twins as the alternative
# ----------------------------------------------------------------------------------------------

AT_HOME = {"surname": "exact", "dob": "exact", "residence": "postcode_address"}


def duplicate_model(expected: float) -> FSModel:
    """m: a duplicate agrees on the best level 0.9 of the time, the rest spread evenly; u even."""
    m = tuple(
        np.array([0.0, 0.9, *np.full(len(c.levels) - 2, 0.1 / (len(c.levels) - 2))])
        for c in COMPARISONS
    )
    u = tuple(np.full(len(c.levels), 1.0 / len(c.levels)) for c in COMPARISONS)
    return FSModel(m=m, u=u, prior=1e-6, expected_matches=expected)


# A duplicate's share at one birth and home under duplicate_model: surname exact or close (0.9,
# and 0.1 spread over the other surname levels, four of them close: Dice 0.9, 0.75, one keying
# error, Dice 0.5), the same birth date (0.9), one home (0.9 on postcode and address, and 0.1
# spread over the other residence levels, three of them at home: postcode, address, similar
# address).
SURNAME_LEVELS = COMPARISONS[COMPARISON_NAMES.index("surname")].levels
FORENAME_LEVELS = COMPARISONS[COMPARISON_NAMES.index("forename")].levels
CLOSE_SURNAME_SHARE = 0.9 + (len(TWIN_SURNAME_LEVELS) - 1) * 0.1 / (len(SURNAME_LEVELS) - 2)
AT_HOME_SHARE = CLOSE_SURNAME_SHARE * 0.9 * (0.9 + 3 * 0.1 / (len(RESIDENCE_LEVELS) - 2))


def twins_and_duplicates() -> np.ndarray:
    """An agency's candidates: 500 twin pairs with numbers that disagree (forenames: 90% two
    names, 10% close, Dice 0.5) and 100 duplicates at home, without numbers."""
    return np.vstack(
        [
            pairs_at(450, forename="disagree", nhs="disagree", **AT_HOME),
            pairs_at(50, forename="dice50", nhs="disagree", **AT_HOME),
            pairs_at(100, forename="exact", **AT_HOME),
        ]
    )


def test_twins_count_the_pairs_at_home_less_the_duplicates_the_model_expects() -> None:
    levels = twins_and_duplicates()
    model = duplicate_model(expected=100 / AT_HOME_SHARE)
    twins = fit_twin_alternative(levels, model)
    assert np.isclose(twins.duplicates, 100.0)
    assert np.isclose(twins.twins, 500.0)
    forename = twins.factors[0]
    dice50 = level_code("forename", "dice50")
    exact = level_code("forename", "exact")
    # twins are close at Dice 0.5 one time in ten, duplicates 0.1 / 7 of the time (spread over
    # the seven levels after 'exact'); a pseudo-count of one pair is spread as u spreads any two
    # children (evenly here, over the eight levels observed)
    observed = len(FORENAME_LEVELS) - 1
    expected = np.log2((0.1 / (observed - 1)) / ((50 + 1 / observed) / 501))
    assert np.isclose(forename[dice50], expected)
    assert forename[exact] > 10  # twins are never seen with one forename


def test_a_close_forename_at_one_birth_and_home_no_longer_outweighs_the_twins() -> None:
    """Against a random pair, one surname, birth date and home weigh heavily; against twins,
    who share them, only the forename counts: a Dice 0.5 forename without numbers is twins as
    likely as not, while the same forename still links. Pairs elsewhere keep their weight."""
    levels = twins_and_duplicates()
    model = duplicate_model(expected=100 / AT_HOME_SHARE)
    twins = fit_twin_alternative(levels, model)
    pairs = np.vstack(
        [
            pairs_at(1, forename="dice50", **AT_HOME),
            pairs_at(1, forename="exact", **AT_HOME),
            pairs_at(1, forename="dice50", surname="exact", dob="exact", residence="disagree"),
        ]
    )
    weight = np.array([20.0, 25.0, 5.0])
    combined = with_twin_alternative(weight, pairs, model, twins)
    assert combined[0] < 0 < 3.17 < combined[1] <= weight[1]
    assert combined[2] == weight[2]
    against_twins = np.log2(100 / 500) + twins.factors[0][level_code("forename", "dice50")]
    assert np.isclose(combined[0], -np.logaddexp2(-20.0, -against_twins))


def test_a_sex_that_differs_at_one_birth_and_home_says_twins() -> None:
    """Half of all twins are of the other sex; one child recorded twice is not (m of a sex
    disagreement 0.1 / 1 here, against 0.5 among twins). So of two pairs at one birth and home
    with Dice 0.5 forenames, the one whose sexes differ weighs log2((0.1 / 1) / 0.5) less
    against twins, and the one whose sexes agree log2(0.9 / 0.5) more."""
    levels = np.vstack(
        [
            pairs_at(250, forename="disagree", sex="agree", nhs="disagree", **AT_HOME),
            pairs_at(250, forename="disagree", sex="disagree", nhs="disagree", **AT_HOME),
            pairs_at(100, forename="exact", **AT_HOME),
        ]
    )
    model = duplicate_model(expected=100 / AT_HOME_SHARE)
    twins = fit_twin_alternative(levels, model)
    sex = twins.factors[1]
    assert np.isclose(sex[level_code("sex", "agree")], np.log2(0.9 / ((250 + 0.5) / 501)))
    assert np.isclose(sex[level_code("sex", "disagree")], np.log2(0.1 / ((250 + 0.5) / 501)))
    pairs = np.vstack(
        [
            pairs_at(1, forename="dice50", sex="agree", **AT_HOME),
            pairs_at(1, forename="dice50", sex="disagree", **AT_HOME),
        ]
    )
    combined = with_twin_alternative(np.array([20.0, 20.0]), pairs, model, twins)
    assert combined[1] < combined[0] - 2


# ----------------------------------------------------------------------------------------------
# Corroboration by the other agencies
# ----------------------------------------------------------------------------------------------


def link_rows(*rows_: tuple[str, str, str, str, float]) -> pd.DataFrame:
    columns = ["agency_l", "person_token_l", "agency_r", "person_token_r", "match_weight"]
    return pd.DataFrame(list(rows_), columns=columns)


def duplicate_pairs(*rows_: tuple[str, str, float, bool]) -> pd.DataFrame:
    """(left token, right token, weight, agree on a number) pairs of health records."""
    frame = pd.DataFrame(rows_, columns=["person_token_l", "person_token_r", "w", "agrees"])
    return pd.DataFrame(
        {
            "agency_l": "health",
            "person_token_l": frame["person_token_l"],
            "agency_r": "health",
            "person_token_r": frame["person_token_r"],
            "match_weight": frame["w"].astype(float),
            "match_probability": 1 / (1 + np.exp2(-frame["w"].astype(float))),
            "agreement": "forename:exact",
            "identifier_agrees": frame["agrees"].astype(bool),
        }
    )


def test_strongest_links_take_each_records_best_link_in_each_other_agency() -> None:
    links = link_rows(
        ("education", "e1", "health", "h1", 9.0),
        ("education", "e2", "health", "h1", 12.0),
        ("health", "h1", "care", "c1", 5.0),
    )
    best = strongest_links(ends_of_links(links))
    assert best[("health", "education")].to_dict() == {"h1": "e2"}
    assert best[("education", "health")].to_dict() == {"e1": "h1", "e2": "h1"}
    assert best[("health", "care")].to_dict() == {"h1": "c1"}
    assert best[("care", "health")].to_dict() == {"c1": "h1"}


def test_corroboration_levels_say_whether_the_other_agencies_hold_one_record_or_two() -> None:
    links = link_rows(
        ("education", "e1", "health", "h1", 10.0),
        ("education", "e1", "health", "h2", 10.0),  # h1 and h2: one education record
        ("education", "e3", "health", "h3", 10.0),
        ("education", "e4", "health", "h4", 10.0),  # h3 and h4: two education records
        ("health", "h3", "care", "c1", 10.0),
        ("health", "h4", "care", "c1", 10.0),  # and one care record: mixed
        ("education", "e5", "health", "h5", 10.0),  # h6 is linked nowhere
    )
    pairs = duplicate_pairs(
        ("h1", "h2", 1.0, False),
        ("h3", "h4", 1.0, False),
        ("h5", "h6", 1.0, False),
        ("h1", "h4", 1.0, True),
    )
    named = [
        CORROBORATION_LEVELS[i]
        for i in corroboration_levels(pairs, strongest_links(ends_of_links(links)))
    ]
    assert named == ["shared", "mixed", "none", "number"]


def test_a_shared_record_reached_among_two_children_is_crossed_not_shared() -> None:
    """A record whose links in health go to two children (h1 and h3, not one child's records)
    lives among namesakes: the pair sharing h1 through it is 'crossed'. A second link to h1's
    own duplicate (h2) is one child, and the pair sharing h4 stays 'shared'."""
    links = link_rows(
        ("education", "e1", "health", "h1", 12.0),
        ("education", "e2", "health", "h1", 10.0),
        ("education", "e2", "health", "h3", 9.0),  # e2 also reaches another child
        ("education", "e4", "health", "h4", 12.0),
        ("education", "e5", "health", "h4", 10.0),
        ("education", "e5", "health", "h5", 9.0),  # h5 is h4's duplicate
    )
    within = link_rows(("health", "h4", "health", "h5", 20.0))
    crossing = crossing_records(ends_of_links(links), within)
    assert {c for c in crossing if c[0] == "education"} == {("education", "e2", "health")}
    # h1 and h4 reach two education records that no link within education makes one child
    assert {c for c in crossing if c[0] == "health"} == {
        ("health", "h1", "education"),
        ("health", "h4", "education"),
    }
    pairs = pd.DataFrame(
        {
            "agency_l": "education",
            "person_token_l": ["e1", "e4"],
            "agency_r": "education",
            "person_token_r": ["e2", "e5"],
            "identifier_agrees": False,
        }
    )
    named = [
        CORROBORATION_LEVELS[i]
        for i in corroboration_levels(pairs, strongest_links(ends_of_links(links)), crossing)
    ]
    assert named == ["crossed", "shared"]
    without = corroboration_levels(
        pairs, strongest_links(ends_of_links(links))
    )  # no record reaches two
    assert [CORROBORATION_LEVELS[i] for i in without] == ["shared", "shared"]


def test_corroboration_weighs_what_sure_duplicates_show_against_what_sure_pairs_of_two_show() -> (
    None
):
    """m from the pairs surely one child (names, birth date, home), u from those surely two
    (numbers disagree): 'shared' counts for a duplicate, 'split' against; 'number' never."""
    none, shared, split, mixed, crossed, number = range(len(CORROBORATION_LEVELS))
    levels = np.array([shared] * 96 + [none] * 4 + [split] * 70 + [shared] * 20 + [mixed] * 10)
    sure = np.arange(200) < 100
    fitted = fit_corroboration(
        np.append(levels, number), np.append(sure, True), np.append(~sure, True)
    )
    np.testing.assert_allclose(fitted.m, np.array([4.2, 96.2, 0.2, 0.2, 0.2]) / 101)
    np.testing.assert_allclose(fitted.u, np.array([0.2, 20.2, 70.2, 10.2, 0.2]) / 101)
    assert fitted.factors[shared] > 2 and fitted.factors[split] < -8
    assert fitted.factors[number] == 0


def test_corroborated_adjusts_only_duplicate_pairs_and_shows_the_level() -> None:
    cross = link_rows(("education", "e1", "health", "h1", 10.0))
    cross = cross.assign(match_probability=0.999, agreement="x", identifier_agrees=False)
    links = link_rows(
        ("education", "e1", "health", "h1", 10.0), ("education", "e1", "health", "h2", 10.0)
    )
    duplicates = duplicate_pairs(("h1", "h2", 2.0, False), ("h3", "h4", 20.0, True))
    pairs = pd.concat([cross, duplicates], ignore_index=True)
    pairs = pairs.assign(names_birth_home=[False, False, True], numbers_disagree=False)
    out, fitted = corroborated(pairs, links)
    assert out.columns.tolist() == pairs.columns.tolist()
    pd.testing.assert_frame_equal(out.iloc[:1], pairs.iloc[:1])
    factor = fitted["health"].factors[CORROBORATION_LEVELS.index("shared")]
    assert np.isclose(out.match_weight[1], 2.0 + factor)
    assert np.isclose(out.match_probability[1], 1 / (1 + np.exp2(-(2.0 + factor))))
    assert out.agreement[1] == "forename:exact|others:shared"
    assert out.match_weight[2] == 20.0 and out.agreement[2].endswith("|others:number")


def sure_links(*rows_: tuple[str, str, str, str, float, bool, bool]) -> pd.DataFrame:
    """Cross-agency links with (number agrees, names, birth date and home agree) flags."""
    frame = link_rows(*(r[:5] for r in rows_))
    return frame.assign(
        identifier_agrees=[r[5] for r in rows_], names_birth_home=[r[6] for r in rows_]
    )


def test_a_record_both_surely_match_bridges_a_pair_whatever_its_own_weight() -> None:
    """h1 matches e1 by its number and h2 matches e1 by names, birth date and home: one child
    unless a link is wrong, P >= p1 + p2 - 1. A pair whose records reach e2 by a link that is
    not sure, or whose twin guard holds, or whose numbers disagree, is not bridged."""
    links = sure_links(
        ("education", "e1", "health", "h1", 10.0, True, False),
        ("education", "e1", "health", "h2", 12.0, False, True),
        ("education", "e2", "health", "h3", 30.0, True, False),
        ("education", "e2", "health", "h4", 30.0, False, False),  # by the model alone
    )
    pairs = duplicate_pairs(("h1", "h2", -9.0, False), ("h3", "h4", -9.0, False))
    pairs = pairs.assign(may_link=True, numbers_disagree=False)
    weight, via = bridged(pairs, links)
    wrong = 1 / (1 + 2.0**10) + 1 / (1 + 2.0**12)
    assert np.isclose(weight[0], np.log2((1 - wrong) / wrong))
    assert via.tolist() == ["education", ""] and weight[1] == -np.inf
    held = pairs.assign(may_link=[False, True])
    assert bridged(held, links)[0][0] == -np.inf
    apart = pairs.assign(numbers_disagree=[True, False])
    assert bridged(apart, links)[0][0] == -np.inf


def test_corroborated_takes_the_bridge_where_it_weighs_more_and_shows_it() -> None:
    links = sure_links(
        ("education", "e1", "health", "h1", 10.0, True, False),
        ("education", "e1", "health", "h2", 12.0, False, True),
    )
    pairs = duplicate_pairs(("h1", "h2", -9.0, False)).assign(
        may_link=True, numbers_disagree=False, names_birth_home=False
    )
    out, _ = corroborated(pairs, links)
    assert out.match_weight[0] > 9.5 and out.match_probability[0] > 0.998  # from -9
    assert out.agreement[0] == "forename:exact|others:shared|via:education"
