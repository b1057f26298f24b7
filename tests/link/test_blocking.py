"""Tests of joinedup.link.blocking on integer-coded records: rule keys, the union of rules,
pairs within one agency, the oversized-block guard, near-token rules on mistyped numbers and
Bloom-band rules on similar addresses."""

from __future__ import annotations

import numpy as np
import pandas as pd

from joinedup import pseudonymise as ps
from joinedup.link.blocking import (
    BlockingRule,
    BloomBandRule,
    NearTokenRule,
    band_value,
    candidate_pairs,
    candidate_pairs_of,
    codes_of_pairs,
    pairs_sharing,
    rule_keys,
    rule_pairs,
    same_on,
)
from joinedup.link.compare import Side, prepare_side

KEY = b"blocking-test-key-" + b"x" * 32
BITS = 1024

RULES = (same_on("a", "a"), same_on("bc", "b", "c"))


def coded(**columns: list[int]) -> pd.DataFrame:
    return pd.DataFrame({k: np.array(v, dtype=np.int64) for k, v in columns.items()})


def test_rule_keys_are_null_when_any_column_is_null_and_differ_by_column_order() -> None:
    frame = coded(b=[1, 1, -1, 2], c=[2, 2, 2, 1])
    keys = rule_keys(frame, ("b", "c"))
    assert keys[0] == keys[1] != -1 and keys[2] == -1
    assert keys[3] != keys[0]  # (2, 1) is not (1, 2)


def test_candidate_pairs_are_the_deduplicated_union_of_the_rules() -> None:
    left = coded(a=[1, 2, -1], b=[5, 6, 7], c=[0, 0, 0])
    right = coded(a=[1, 1, 3], b=[5, 9, 7], c=[0, 0, 0])
    pairs = candidate_pairs(left, right, RULES)
    # (0, 0) shares both rules but appears once; (2, 2) shares b and c only.
    assert pairs.tolist() == [[0, 0], [0, 1], [2, 2]]


def test_pairs_within_one_agency_have_left_row_below_right_row() -> None:
    frame = coded(a=[1, 1, 1, 2], b=[0, 0, 0, 0], c=[-1, -1, -1, -1])
    assert candidate_pairs(frame, None, RULES).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_oversized_blocks_are_skipped() -> None:
    left = coded(s=[1, 1, 2])
    right = coded(s=[1, 1, 1, 2])
    rule = [BlockingRule("s", ("s",), ("s",))]  # block 1: 2 x 3 pairs, block 2: 1 x 1
    assert len(candidate_pairs(left, right, rule, max_block_pairs=6)) == 7
    assert candidate_pairs(left, right, rule, max_block_pairs=5).tolist() == [[2, 3]]


def side_of(agency: str, rows: list[dict]) -> Side:
    """A prepared side from raw NHS numbers, addresses, names and dates of birth (real
    derivers)."""
    records = []
    for i, row in enumerate(rows):
        record = {"person_token": f"{agency}-{i:03d}", "dob_token": row.get("dob")}
        record |= ps.nhs_number_values(row.get("nhs"), KEY)
        record |= ps.address_values(row.get("address"), KEY)
        for field in ("forename", "surname"):
            record |= ps.name_values(row.get(field), KEY, field)
        if "postcode" in row:
            record |= ps.postcode_values(row["postcode"], KEY)
            household = ps.PAIR_SEPARATOR.join((row["postcode"], row["surname"], row["born"]))
            record |= ps.household_birthday_values(household, KEY)
        records.append(record)
    return prepare_side(agency, pd.DataFrame(records), BITS)


def test_within_one_side_repeated_keys_pair_and_oversized_blocks_are_skipped_as_across() -> None:
    """A side met with itself pairs only rows whose key repeats, and a block is measured as
    across two sides (3 rows: 3 x 3 pairs), so the guard skips the same blocks."""
    frame = coded(s=[1, 1, 1, 2, 3, 3])
    rule = [BlockingRule("s", ("s",), ("s",))]
    assert candidate_pairs(frame, None, rule, max_block_pairs=9).tolist() == [
        [0, 1], [0, 2], [1, 2], [4, 5]
    ]  # fmt: skip
    assert candidate_pairs(frame, None, rule, max_block_pairs=8).tolist() == [[4, 5]]


def test_near_token_rule_pairs_numbers_equal_or_one_character_apart_only() -> None:
    left = side_of("education", [{"nhs": "1234567"}, {"nhs": "7654321"}, {}])
    right = side_of("health", [{"nhs": "1234567"}, {"nhs": "1234867"}, {"nhs": "2134567"}, {}])
    pairs = candidate_pairs(left, right, [NearTokenRule("nhs_near", "nhs_near")])
    by_token = {
        (left.records.person_token[i], right.records.person_token[j]) for i, j in pairs.tolist()
    }
    # 2134567 is a transposition (two positions differ): no shared near token.
    assert by_token == {("education-000", "health-000"), ("education-000", "health-001")}


def test_transposition_rule_pairs_numbers_equal_or_with_two_adjacent_digits_swapped() -> None:
    """2062273 and 2026273 (adjacent 6 and 2 swapped) meet; one digit apart or two non-adjacent
    digits swapped do not."""
    left = side_of("education", [{"nhs": "2062273"}, {"nhs": "5550123"}])
    right = side_of(
        "health", [{"nhs": "2026273"}, {"nhs": "2062273"}, {"nhs": "2062274"}, {"nhs": "2762203"}]
    )
    pairs = candidate_pairs(left, right, [NearTokenRule("nhs_near2", "nhs_near2")])
    by_token = {
        (left.records.person_token[i], right.records.person_token[j]) for i, j in pairs.tolist()
    }
    assert by_token == {("education-000", "health-000"), ("education-000", "health-001")}


def test_near_token_rule_within_one_agency_pairs_each_typo_once() -> None:
    side = side_of("health", [{"nhs": "9434765919"}, {"nhs": "9434765910"}, {"nhs": "1"}])
    pairs = candidate_pairs(side, None, [NearTokenRule("nhs_near", "nhs_near")])
    assert pairs.tolist() == [[0, 1]]


def test_bloom_band_rule_pairs_similar_addresses_with_equal_columns() -> None:
    home = "12 ACACIA AVENUE FLAT 3 LITTLE WHINGING"
    left = side_of("education", [{"dob": "d1", "address": home}, {"dob": "d2", "address": home}])
    right = side_of(
        "health",
        [
            {"dob": "d1", "address": home.replace("ACACIA", "ACCACIA")},  # a typo: found
            {"dob": "d1", "address": "221B BAKER STREET MARYLEBONE"},  # another home
            {"dob": "d1"},  # no address
        ],
    )
    rule = BloomBandRule("dob_address", ("dob_token",))
    assert candidate_pairs(left, right, [rule]).tolist() == [[0, 0]]


HOME = "12 ACACIA AVENUE FLAT 3 LITTLE WHINGING"


def test_a_rule_gives_each_pair_once_though_it_meets_in_several_bands() -> None:
    """An address met in every band of a Bloom-band rule is one pair, not one per band: each
    rule's repeats are dropped before the rules are combined."""
    left = side_of("education", [{"dob": "d1", "address": HOME}])
    right = side_of("health", [{"dob": "d1", "address": HOME}, {"dob": "d1", "address": HOME}])
    rule = BloomBandRule("dob_address", ("dob_token",), bands=6)
    sides = {"education": left, "health": right}
    codes = rule_pairs(sides, [("education", "health")], rule, max_block_pairs=100)
    assert (
        codes[("education", "health")].tolist()
        == codes_of_pairs(np.array([[0, 0], [0, 1]]), len(right)).tolist()
    )


def test_default_rules_pair_a_surname_typo_at_the_same_address_without_date_of_birth() -> None:
    """names_address: the forename and the surname's Soundex code (WHITE, WHTE) at one address
    meet, with no date of birth and no number to block on; another forename does not."""
    left = side_of("education", [{"forename": "MITCHELL", "surname": "WHITE", "address": HOME}])
    right = side_of(
        "health",
        [
            {"forename": "MITCHELL", "surname": "WHTE", "address": HOME},
            {"forename": "OSCAR", "surname": "WHITE", "address": HOME},
        ],
    )
    assert candidate_pairs(left, right).tolist() == [[0, 0]]


def test_default_rules_pair_garbled_names_with_one_date_of_birth_and_address() -> None:
    """dob_address: names swapped and mistyped (no name key agrees) still meet on the date of
    birth at the same address lines; the same date of birth elsewhere does not."""
    left = side_of(
        "education",
        [{"forename": "ISABELLA", "surname": "CTERCTEKO", "dob": "d1", "address": HOME}],
    )
    right = side_of(
        "health",
        [
            {"forename": "CTERCTEKO", "surname": "ISABELA", "dob": "d1", "address": HOME},
            {"forename": "JOHN", "surname": "DOE", "dob": "d1", "address": "1 HIGH STREET LEEDS"},
        ],
    )
    assert candidate_pairs(left, right).tolist() == [[0, 0]]


def test_default_rules_pair_a_wrong_birth_year_and_a_forename_typo_in_one_household() -> None:
    """household_birthday: a birth year keyed wrong and a forename typo (no name, date or year
    key agrees) meet on the day and month of birth with the postcode and surname; a sibling born
    on another day, and the same birthday in another household, do not."""

    def child(forename: str, born: str, postcode: str = "LS6 2AB", surname: str = "THOBSON"):
        return {
            "forename": forename,
            "surname": surname,
            "born": born,
            "dob": born,
            "postcode": postcode,
            "address": HOME,
        }

    left = side_of("education", [child("OISIN", "2014-08-23")])
    right = side_of(
        "health",
        [
            child("OINSIN", "2013-08-23"),
            child("OSCAR", "2013-08-22"),
            child("OINSIN", "2013-08-23", surname="THOMSON"),
            child("OINSIN", "2013-08-23", postcode="LS6 2AD"),
        ],
    )
    assert candidate_pairs(left, right).tolist() == [[0, 0]]


def test_band_value_sets_bit_j_from_the_filter_bit_at_the_jth_position() -> None:
    """Bit p of a filter is bit p % 64 of word p // 64; the band's value reads its positions in
    order, so the same filter bits in another order give another value."""
    words = np.zeros((2, 2), dtype=np.uint64)
    words[0, 0] = np.uint64(1) << np.uint64(3)  # bit 3
    words[0, 1] = np.uint64(1) << np.uint64(63)  # bit 127
    by_word = np.ascontiguousarray(words.T)
    assert band_value(by_word, np.array([127, 5, 3])).tolist() == [0b101, 0]
    assert band_value(by_word, np.array([3, 127])).tolist() == [0b11, 0]
    assert band_value(by_word, np.array([5, 3])).tolist() == [0b10, 0]


def test_records_frame_without_side_gets_no_near_token_or_band_keys() -> None:
    frame = coded(dob_token=[1, 1])
    rules = [NearTokenRule("nhs_near", "nhs_near"), BloomBandRule("b", ("dob_token",))]
    assert candidate_pairs(frame, frame, rules).tolist() == []


def brute_force_pairs(
    left: pd.DataFrame, right: pd.DataFrame, rules: tuple[BlockingRule, ...], within: bool
) -> list[list[int]]:
    """Every (i, j) that some rule's columns pair, equal and non-null, by looking at all pairs."""
    found = []
    for i in range(len(left)):
        for j in range(i + 1 if within else 0, len(right)):
            for rule in rules:
                a = left.loc[i, list(rule.left_on)].to_numpy()
                b = right.loc[j, list(rule.right_on)].to_numpy()
                if (a >= 0).all() and (b >= 0).all() and (a == b).all():
                    found.append([i, j])
                    break
    return found


def test_pairs_of_several_sides_at_once_are_each_pairs_true_candidates() -> None:
    """candidate_pairs_of shares each side's sorted keys across the pairs it takes part in (as
    left, as right and within itself); every pair's candidates must still be exactly the record
    pairs some rule pairs, also under a rule whose left and right columns differ."""
    rng = np.random.default_rng(7)

    def random_side(n: int) -> pd.DataFrame:
        return coded(**{c: rng.integers(-1, 4, n).tolist() for c in ("a", "b", "c", "d")})

    sides = {"x": random_side(40), "y": random_side(30), "z": random_side(20)}
    rules = (*RULES, BlockingRule("cross", ("c", "d"), ("d", "c")))
    wanted = [("x", "y"), ("x", "z"), ("y", "z"), ("x", "x"), ("y", "y"), ("z", "z")]
    together = candidate_pairs_of(sides, wanted, rules)
    for name_l, name_r in wanted:
        expected = brute_force_pairs(sides[name_l], sides[name_r], rules, name_l == name_r)
        assert expected  # the random sides do meet
        assert together[(name_l, name_r)].tolist() == expected


def dob_side(agency: str, dobs: list[str | None]) -> Side:
    return side_of(agency, [{"dob": dob} for dob in dobs])


def test_pairs_sharing_gives_every_pair_equal_on_the_columns_when_there_are_few() -> None:
    left, right = dob_side("education", ["a", "a", "b", None]), dob_side("health", ["a", "b", "b"])
    pairs, total = pairs_sharing(left, right, ("dob_token",), size=100)
    assert total == 4 and sorted(map(tuple, pairs.tolist())) == [(0, 0), (1, 0), (2, 1), (2, 2)]
    within, total = pairs_sharing(left, left, ("dob_token",), size=100)
    assert total == 1 and within.tolist() == [[0, 1]]  # never a record with itself, once


def test_pairs_sharing_samples_all_equal_pairs_uniformly_when_there_are_many() -> None:
    """Blocks of 30 x 30 and 10 x 10 records: 1,000 pairs, 90% of them in the first block."""
    left = dob_side("education", ["a"] * 30 + ["b"] * 10)
    right = dob_side("health", ["b"] * 10 + ["a"] * 30)
    pairs, total = pairs_sharing(left, right, ("dob_token",), size=2_000)
    assert (total, len(pairs)) == (1_000, 1_000)  # all of them: no more than size
    pairs, total = pairs_sharing(left, right, ("dob_token",), size=500)
    codes_l = left.records["dob_token"].to_numpy()[pairs[:, 0]]
    assert total == 1_000 and len(pairs) == 500
    assert (codes_l == right.records["dob_token"].to_numpy()[pairs[:, 1]]).all()
    assert abs((pairs[:, 0] < 30).mean() - 0.9) < 0.05
    assert np.array_equal(pairs, pairs_sharing(left, right, ("dob_token",), size=500)[0])
    within, total = pairs_sharing(left, left, ("dob_token",), size=100)
    codes = left.records["dob_token"].to_numpy()
    assert total == 30 * 29 // 2 + 10 * 9 // 2 and len(within) == 100
    assert (within[:, 0] != within[:, 1]).all() and (
        codes[within[:, 0]] == codes[within[:, 1]]
    ).all()
