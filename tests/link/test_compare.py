"""Tests of joinedup.link.compare: integer coding of pseudonymised columns and the graded
comparison features (identifiers with near tokens, addresses) computed through recordlinkage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from joinedup import pseudonymise as ps
from joinedup.link.compare import (
    COMPARISON_NAMES,
    COMPARISONS,
    NULL_CODE,
    agreement_pattern_table,
    agreement_patterns,
    comparison_levels,
    hex_words,
    prepare_side,
    value_codes,
)

KEY = b"compare-test-key-" + b"x" * 32
BITS = 1024


def record(local_id: str, **fields: str | None) -> dict:
    """A pseudonymised person record from raw identity fields, via the real derivers."""
    row: dict = {"person_token": ps.person_token(KEY, "education", local_id)}
    if "nhs" in fields:
        row |= ps.nhs_number_values(fields["nhs"], KEY)
    if "upn" in fields:
        row |= ps.upn_values(fields["upn"], KEY)
    if "address" in fields:
        row |= ps.address_values(fields["address"], KEY)
    if "postcode" in fields:
        row |= ps.postcode_values(fields["postcode"], KEY)
    home = f"{fields.get('postcode') or ''}{ps.PAIR_SEPARATOR}{fields.get('address') or ''}"
    row |= ps.premises_values(home, KEY)
    if "ethnicity" in fields:
        row["ethnicity"] = fields["ethnicity"]
    forename, surname = fields.get("forename", "ANN"), fields.get("surname", "SMITH")
    row |= ps.name_values(forename, KEY, "forename")
    row |= ps.name_values(surname, KEY, "surname")
    row |= ps.name_pair_values(f"{forename}{ps.PAIR_SEPARATOR}{surname}", KEY)
    row["sex"] = fields.get("sex", "F")
    return row


def level_of(comparison: str, left: dict, right: dict) -> str:
    """The level of one comparison for one pair of records."""
    a = prepare_side("education", pd.DataFrame([left]), BITS)
    b = prepare_side("health", pd.DataFrame([right]), BITS)
    levels = comparison_levels(a, b, np.array([[0, 0]]))
    k = COMPARISON_NAMES.index(comparison)
    return COMPARISONS[k].levels[levels[0, k]]


def test_value_codes_agree_across_frames_and_code_null_as_minus_one() -> None:
    first = value_codes(pa.array(["a", None, "b", "a"]))
    second = value_codes(pa.array(["b", "c", "a"]))
    assert first[0] == first[3] == second[2] and first[2] == second[0]
    assert first[1] == NULL_CODE and (first[[0, 2, 3]] >= 0).all()
    assert len({first[0], first[2], second[1]}) == 3


def test_hex_words_decode_fixed_width_hex_and_zero_a_null() -> None:
    words = hex_words(pa.array(["00" * 7 + "0a" + "ff" * 8, None]).cast(pa.large_string()), 2)
    assert words.dtype == np.uint64
    assert words[0].tolist() == [10, 2**64 - 1] and words[1].tolist() == [0, 0]
    with pytest.raises(ValueError, match="hex characters"):
        hex_words(pa.array(["abc"]).cast(pa.large_string()), 2)


def test_prepare_side_orders_by_person_token_and_treats_absent_columns_as_missing() -> None:
    rows = [record(str(i)) for i in range(5)]
    side = prepare_side("education", pd.DataFrame(rows), BITS)
    assert list(side.records.person_token) == sorted(r["person_token"] for r in rows)
    assert (side.records.nhs_token == NULL_CODE).all()
    assert not side.address_bits.any() and not side.upn_near.any()
    assert side.forename_bits.shape == (5, BITS // 64)


@pytest.mark.parametrize(
    ("left", "right", "level"),
    [
        ("9434765919", "9434765919", "agree"),  # same valid number: equal tokens
        ("9434765918", "9434765918", "agree"),  # same invalid number: every near token equal
        ("9434765919", "9434765910", "one_character"),  # one digit mistyped
        ("9434765919", "9437465919", "transposed"),  # two adjacent digits swapped
        ("9434765919", "9434765927", "disagree"),  # a twin's: the next number, its check digit
        ("9434765919", "9434765928", "disagree"),  # two adjacent digits changed, not swapped
        ("9434765919", "9434765870", "disagree"),
        ("9434765919", None, "missing"),
    ],
)
def test_nhs_levels_grade_near_numbers(left: str, right: str | None, level: str) -> None:
    assert level_of("nhs", record("1", nhs=left), record("2", nhs=right)) == level


def test_upn_one_character_level_and_missing_when_a_side_lacks_the_column() -> None:
    upn = ps.upn_check_letter("801234567890") + "801234567890"
    mistyped = upn[:5] + ("1" if upn[5] != "1" else "2") + upn[6:]
    assert level_of("upn", record("1", upn=upn), record("2", upn=mistyped)) == "one_character"
    assert level_of("upn", record("1", upn=upn), record("2")) == "missing"


@pytest.mark.parametrize(
    ("postcode", "other", "level"),
    [
        ("LS6 2AB", "12 Acorn Road Headingley", "postcode_address"),
        ("LS6 2AB", "12 Acorn Rd Headingley", "postcode_address"),  # abbreviation normalised
        ("LS6 2AB", "12 Acorn Raod Headingley", "postcode_address"),  # one keying error
        ("LS6 2AB", None, "postcode"),
        ("LS6 2AB", "21 Acorn Road Headingley", "postcode_street"),  # a neighbour's house
        ("LS6 2AB", "Flat 3 12 Acorn Road Headingley", "postcode_street"),  # a flat in it
        ("LS6 2AB", "Acorn Road Headingley", "postcode_address"),  # the number left out
        ("LS6 2AB", "Flat 3 21 Acorn Road Headingley", "postcode_street"),  # flat next door
        ("LS6 2AB", "7 Mill Lane Bramley", "postcode_other_address"),
        ("LS6 9ZZ", "12 Acorn Road Headingley", "address"),  # postcode mistyped
        (None, "12 Acorn Road Headingley", "address"),
        ("M1 1AE", "12 Acron Raod Hedingley", "address_similar"),  # three keying errors
        ("M1 1AE", "12 Acorn Road", "address_partial"),  # the locality lost
        ("LS6 2XY", "7 Mill Lane Bramley", "sector"),
        ("LS6 5XY", "7 Mill Lane Bramley", "district"),
        ("M1 1AE", "7 Mill Lane Bramley", "disagree"),
        (None, None, "missing"),
    ],
)
def test_residence_levels_grade_postcode_and_address_together(
    postcode: str | None, other: str | None, level: str
) -> None:
    home = record("1", address="12 Acorn Road Headingley", postcode="LS6 2AB")
    assert level_of("residence", home, record("2", address=other, postcode=postcode)) == level


@pytest.mark.parametrize(
    ("postcode", "other", "level"),
    [
        ("SX2 1JS", "Well Court", "postcode_address"),  # the number left out of a short name
        ("SX2 1JS", "148 Well Court", "postcode_street"),  # the house next door
        ("SX2 1JS", "Mill Court", "postcode_other_address"),  # another street in the postcode
        ("SX2 1JT", "Well Court", "address_partial"),  # another postcode: the filter alone
    ],
)
def test_a_short_address_without_its_number_is_still_the_same_street(
    postcode: str, other: str, level: str
) -> None:
    """'146 Well Court' without its number falls under ADDRESS_SAME (the number's bigrams are
    lost); in one postcode its street token still says the same street."""
    home = record("1", address="146 Well Court", postcode="SX2 1JS")
    assert level_of("residence", home, record("2", address=other, postcode=postcode)) == level


@pytest.mark.parametrize(
    ("other", "level"),
    [
        ("WBRI", "exact"),
        ("WIRI", "group"),
        ("AIND", "disagree"),
        ("REFU", "missing"),
        (None, "missing"),
    ],
)
def test_ethnicity_levels_use_the_code_list_groups_and_ignore_refusals(
    other: str | None, level: str
) -> None:
    assert (
        level_of("ethnicity", record("1", ethnicity="WBRI"), record("2", ethnicity=other)) == level
    )


def test_sex_is_no_extra_evidence_where_forenames_agree() -> None:
    assert level_of("sex", record("1", forename="ANN"), record("2", forename="ANN")) == "missing"
    assert level_of("sex", record("1", forename="ANN"), record("2", forename="ZOE")) == "agree"
    male = record("2", forename="ANN", sex="M")
    assert level_of("sex", record("1", forename="ANN"), male) == "disagree"


def test_swapped_names_are_surname_swapped_and_forename_missing() -> None:
    """Forename and surname the wrong way round: one 'swapped' agreement, not two disagreements;
    other different names still disagree."""
    left = record("1", forename="JACK", surname="STEINERT")
    swapped = record("2", forename="Steinert", surname="Jack")
    assert level_of("surname", left, swapped) == "swapped"
    assert level_of("forename", left, swapped) == "missing"
    other = record("3", forename="JACK", surname="STEIN")
    assert level_of("surname", left, other) != "swapped"
    assert level_of("forename", left, other) == "exact"
    stranger = record("4", forename="OSCAR", surname="BLOGGS")
    assert level_of("surname", left, stranger) == "disagree"


def test_a_garbled_forename_with_the_same_soundex_is_phonetic_not_disagree() -> None:
    assert level_of("forename", record("1", forename="JANE"), record("2", forename="JOHN")) == (
        "phonetic"
    )
    assert level_of("forename", record("1", forename="OLIVER"), record("2", forename="OSCAR")) == (
        "disagree"
    )


@pytest.mark.parametrize(
    ("surname", "other"),
    [
        ("ZOE", "ZOIE"),  # a letter inserted: bigram Dice 0.67
        ("SANA", "SAAN"),  # two letters transposed: 0.6
        ("ALI", "ALY"),  # a letter substituted: 0.5
        ("RUTH", "RTH"),  # a letter deleted: 0.67
    ],
)
def test_names_one_keying_error_apart_below_dice_075_are_one_edit(surname: str, other: str) -> None:
    """A short name's keying error leaves a Dice coefficient of about 0.5, where different names
    (DINA and DIANE) also fall; the shared edit token sets it apart as 'one_edit'."""
    left, right = record("1", surname=surname), record("2", surname=other)
    assert level_of("surname", left, right) == "one_edit"
    assert level_of("surname", left, record("3", surname="ROSS")) != "one_edit"


def test_names_two_keying_errors_apart_are_not_one_edit() -> None:
    """WILLIAM and WILHELM (Dice 0.5) differ by more than one letter each: 'dice50'."""
    left, right = record("1", forename="WILLIAM"), record("2", forename="WILHELM")
    assert level_of("forename", left, right) == "dice50"


def test_agreement_pattern_table_counts_distinct_rows() -> None:
    levels = np.array([[1] * len(COMPARISONS), [2] * len(COMPARISONS), [1] * len(COMPARISONS)])
    table = agreement_pattern_table(levels.astype(np.int8))
    assert table.counts.tolist() == [2.0, 1.0]
    np.testing.assert_array_equal(table.levels[table.inverse], levels)
    assert agreement_patterns(levels.astype(np.int8))[0].startswith("nhs:agree|upn:agree|")


def novelty_of(left_names: list[str], right_names: list[str]) -> str:
    """The novelty level of the pair of first records of two sides whose records have these
    forenames (surname SMITH throughout), each side counting its own names."""
    sides = []
    for agency, names in (("education", left_names), ("health", right_names)):
        rows = [record(f"{agency}{i}", forename=name) for i, name in enumerate(names)]
        side = prepare_side(agency, pd.DataFrame(rows), BITS)
        first = rows[0]["person_token"]
        sides.append((side, int(np.flatnonzero(side.records.person_token == first)[0])))
    (a, i), (b, j) = sides
    levels = comparison_levels(a, b, np.array([[i, j]]))
    return COMPARISONS[-1].levels[levels[0, COMPARISON_NAMES.index("novelty")]]


def test_novelty_grades_how_much_rarer_a_differing_name_is_than_the_other() -> None:
    """A keying error is a name far rarer than the one it garbles (SAAN once or five times, SANA
    40 times, in 80 records on each side); two real names are alike in frequency (LINA and DINA,
    20 times each); names that agree leave novelty missing."""
    common = ["SANA"] * 40 + ["DINA"] * 20 + ["OTHER"] * 20
    assert novelty_of(["SAAN", *common[1:]], common) == "rarer_20"
    assert novelty_of(["SAAN", *["SAAN"] * 4, *common[5:]], common) == "rarer_4"
    lina, dina = ["LINA"] * 20 + common[20:], ["DINA"] * 20 + common[20:]
    assert novelty_of(lina, dina) == "alike"
    assert novelty_of(common, common) == "missing"
    assert COMPARISONS[-1].name == "novelty"
