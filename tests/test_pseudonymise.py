"""Pseudonymisation at source: normalisation, identifier checks, tokens, Bloom filters, near
tokens, identity frames, files."""

from __future__ import annotations

import hmac
import json
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from joinedup import pseudonymise as pseudonymise_module
from joinedup.contracts import Column, Contract, codes, contract, contracts
from joinedup.pseudonymise import (
    EDIT_TOKENS,
    MISSING_NEAR_TOKEN,
    NHS_NEAR_POSITIONS,
    ROW_COLUMN,
    UPN_NEAR_POSITIONS,
    FileRejected,
    TextFormat,
    address_values,
    bigrams,
    bloom_encode,
    bloom_to_array,
    canonical_forename,
    deletion_forms,
    dice,
    dice_of_rows,
    edit_token_column,
    edit_token_overlap,
    filter_sizes,
    identifier_status,
    is_valid_nhs_number,
    is_valid_upn,
    keyed_digest,
    landed_schema,
    name_pair_values,
    name_values,
    near_columns,
    near_token_agreement,
    near_token_column,
    near_token_key,
    near_tokens_to_array,
    near_values,
    nhs_check_digit,
    nickname_table,
    normalise_address,
    normalise_name,
    normalise_postcode,
    parse_date,
    person_token,
    premises_numbers,
    premises_values,
    pseudonymise_file,
    pseudonymise_identity_frame,
    pseudonymise_table,
    pseudonymise_tree,
    read_delimited,
    read_delimited_text,
    read_raw_extract,
    recorded_identifier,
    siphash24,
    street_words,
    token,
    upn_check_letter,
)
from joinedup.settings import LinkSettings, MissingKeyError, load_key

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
PERIOD = "2024-25"
LA_CODE = "E08000035"

# Identifiable rows of our own. Every name has a letter outside a-f, so no lowercase form can
# occur inside a hex token by chance.
PEOPLE: tuple[dict[str, object], ...] = (
    {
        "local_id": "EMS-00417731",
        "nhs_number": "943 476 5919",
        "upn": "B801200005001",
        "forename": "Siobhan",
        "surname": "O'Brien",
        "dob": date(2015, 3, 7),
        "sex": "F",
        "postcode": "LS6 2AB",
        "address": "Flat 2, 14 Whinmoor Road, Headingley",
        "ethnicity": "WIRI",
    },
    {
        "local_id": "EMS-00982214",
        "nhs_number": "4010232137",
        "upn": "H801200001001",
        "forename": "Bill",
        "surname": "Whittaker-Lowry",
        "dob": date(2012, 11, 23),
        "sex": "M",
        "postcode": "BD7 1DP",
        "address": "3 Kirkstall Lane",
        "ethnicity": "WBRI",
    },
    {
        "local_id": "EMS-01266058",
        "nhs_number": "485 777 3457",
        "upn": "A380211002005",
        "forename": "Zoë",
        "surname": "Nowakowska",
        "dob": date(2017, 7, 3),
        "sex": "F",
        "postcode": "HX1 5QT",
        "address": "27 Lister Gardens",
        "ethnicity": "WOTH",
    },
)


def payload_value(column: Column) -> object:
    """A plausible value of a payload column, from its type and code list."""
    if column.type == "date":
        return date(2024, 10, 1)
    if column.type == "int32":
        return 3
    if column.type == "bool":
        return True
    if column.codes:
        return codes(column.codes)[0]
    return LA_CODE if column.name == "la_code" else "107745"


def raw_table(spec: Contract, people: tuple[dict[str, object], ...] = PEOPLE) -> pa.Table:
    """A raw extract of the contract holding the given people."""
    arrays = [
        pa.array(
            [p[c.name] if c.name in p else payload_value(c) for p in people], type=c.arrow_type
        )
        for c in spec.raw_columns
    ]
    return pa.Table.from_arrays(arrays, schema=spec.raw_schema())


def text_table(spec: Contract) -> pa.Table:
    """raw_table as an agency's CSV export reads: every column text, dates ISO."""
    table = raw_table(spec)
    return table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))


def write_raw_csv(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path)
    return path


def person(**changes: object) -> dict[str, object]:
    """The first test person with some fields changed."""
    return {**PEOPLE[0], **changes}


# --- identifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["943 476 5919", "9434765919", "4010232137", "485 777 3457"])
def test_valid_nhs_numbers_pass_modulus_11(value: str) -> None:
    assert is_valid_nhs_number(value)


@pytest.mark.parametrize(
    "value",
    ["943 476 5918", "943476591", "94347659190", "94347659I9", "9999999999", "0000000000", ""],
)
def test_invalid_nhs_numbers_fail(value: str) -> None:
    """Wrong check digit, wrong length, letters, and all-same-digit placeholders are invalid."""
    assert not is_valid_nhs_number(value)


def test_nhs_check_digit_is_none_when_modulus_gives_ten() -> None:
    assert nhs_check_digit("943476591") == 9
    assert nhs_check_digit("100000001") is None


def test_upn_check_letter_matches_published_examples() -> None:
    """B801200005001 is valid and A801200005001 is not (python-stdnum's gb.upn doctests)."""
    assert upn_check_letter("801200005001") == "B"
    assert is_valid_upn("B801200005001")
    assert is_valid_upn(" b801200005001 ")
    assert not is_valid_upn("A801200005001")
    assert not is_valid_upn("B80120000500")
    assert not is_valid_upn("B80120000A001")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("943 476 5919", "valid"), ("9434765918", "invalid"), ("  ", "missing"), (None, "missing")],
)
def test_identifier_status(value: str | None, expected: str) -> None:
    assert identifier_status(value, is_valid_nhs_number) == expected


# --- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("O'Brien", "OBRIEN"),
        ("Smith-Jones", "SMITHJONES"),
        ("  mary  jane ", "MARYJANE"),
        ("Zoë", "ZOE"),
        ("José", "JOSE"),
        ("Łukasz", "LUKASZ"),
        ("Strauß", "STRAUSS"),
        ("Mr John", "JOHN"),
        ("Dr. Ngozi", "NGOZI"),
        ("MISS ELLIE-MAY", "ELLIEMAY"),
        ("Mrs", None),
        ("'-", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_name(raw: str | None, expected: str | None) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(
    ("nickname", "canonical"),
    [("BILL", "WILLIAM"), ("TOMMY", "THOMAS"), ("KATIE", "KATHERINE"), ("ALFIE", "ALFRED")],
)
def test_nicknames_resolve_to_canonical_forename(nickname: str, canonical: str) -> None:
    assert canonical_forename(nickname) == canonical


def test_names_without_nickname_are_their_own_canonical_form() -> None:
    assert canonical_forename("WILLIAM") == "WILLIAM"
    assert canonical_forename("SIOBHAN") == "SIOBHAN"


def test_nickname_table_is_uppercase_and_resolves_in_one_step() -> None:
    """Every entry is A-Z and no canonical name is itself a nickname (no chains)."""
    table = nickname_table()
    assert len(table) >= 150
    assert all(re.fullmatch("[A-Z]+", name) for pair in table.items() for name in pair)
    assert not set(table.values()) & set(table)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LS6 2AB", ("LS62AB", "LS6", "LS6 2")),
        ("ls62ab", ("LS62AB", "LS6", "LS6 2")),
        (" sw1a 1aa ", ("SW1A1AA", "SW1A", "SW1A 1")),
        ("M1 1AE", ("M11AE", "M1", "M1 1")),
        ("EC1A 1BB", ("EC1A1BB", "EC1A", "EC1A 1")),
        ("B33 8TH", ("B338TH", "B33", "B33 8")),
    ],
)
def test_normalise_postcode_splits_full_district_sector(
    raw: str, expected: tuple[str, str, str]
) -> None:
    assert normalise_postcode(raw) == expected


@pytest.mark.parametrize("raw", ["LS6", "LS6 2A", "12345", "NO FIXED ABODE", "", None])
def test_normalise_postcode_rejects_non_postcodes(raw: str | None) -> None:
    assert normalise_postcode(raw) is None


def test_token_is_deterministic_hmac_hex() -> None:
    value = token(KEY, "surname", "OBRIEN")
    assert re.fullmatch("[0-9a-f]{64}", value)
    assert value == token(KEY, "surname", "OBRIEN")


@pytest.mark.parametrize("key", [KEY, b"s" * 64, b"L" * 100], ids=["32", "64", "100 bytes"])
def test_keyed_digest_is_hmac_sha256_of_field_and_value(key: bytes) -> None:
    """The precomputed-state HMAC equals the standard library's, short or long key (RFC 2104
    hashes a key longer than the 64-byte block first)."""
    expected = hmac.digest(key, b"nhs_near|3|943*765919", "sha256")
    assert keyed_digest(key, "nhs_near", "3|943*765919") == expected
    assert token(key, "surname", "OBRIEN") == hmac.new(key, b"surname|OBRIEN", "sha256").hexdigest()


def test_token_differs_between_keys_and_fields() -> None:
    assert token(KEY, "surname", "OBRIEN") != token(OTHER_KEY, "surname", "OBRIEN")
    assert token(KEY, "surname", "OBRIEN") != token(KEY, "forename", "OBRIEN")


def test_person_token_is_scoped_by_agency() -> None:
    assert person_token(KEY, "health", "123") == person_token(KEY, "health", "123")
    assert person_token(KEY, "health", "123") != person_token(KEY, "care", "123")


# --- Bloom filters ---------------------------------------------------------------------------


def name_dice(left: str, right: str) -> float:
    filters = (
        bloom_to_array([bloom_encode(KEY, "surname", left)]),
        bloom_to_array([bloom_encode(KEY, "surname", right)]),
    )
    return float(dice(*filters)[0])


def test_bloom_filter_is_keyed_field_level_hex() -> None:
    encoded = bloom_encode(KEY, "surname", "NOWAKOWSKA")
    assert re.fullmatch("[0-9a-f]{256}", encoded)
    assert encoded == bloom_encode(KEY, "surname", "NOWAKOWSKA")
    assert encoded != bloom_encode(OTHER_KEY, "surname", "NOWAKOWSKA")
    assert encoded != bloom_encode(KEY, "forename", "NOWAKOWSKA")


def test_bloom_filter_sets_hashes_bits_per_bigram_at_most() -> None:
    """ANN has 4 padded bigrams (_A AN NN N_): between 20 and 80 of the bits are set."""
    ones = int(np.bitwise_count(bloom_to_array([bloom_encode(KEY, "forename", "ANN")])).sum())
    assert 20 <= ones <= 80


def test_dice_of_identical_names_is_one() -> None:
    assert name_dice("WHITTAKER", "WHITTAKER") == 1.0


def test_dice_of_one_letter_typo_is_high() -> None:
    assert name_dice("CHRISTOPHER", "CHRISTOPHR") > 0.7
    assert name_dice("WHITTAKER", "WHITAKER") > 0.7


def test_dice_of_unrelated_names_is_low() -> None:
    assert name_dice("OBRIEN", "NOWAKOWSKA") < 0.4
    assert name_dice("SIOBHAN", "WILLIAM") < 0.4


def test_dice_is_zero_when_both_filters_empty() -> None:
    empty = bloom_to_array([None, None])
    assert not empty.any()
    assert dice(empty, empty).tolist() == [0.0, 0.0]


def test_dice_is_row_wise_and_accepts_uint64_views() -> None:
    names = ["OBRIEN", "OBRIAN", "KHAN"]
    left = bloom_to_array([bloom_encode(KEY, "surname", n) for n in names])
    right = bloom_to_array([bloom_encode(KEY, "surname", n) for n in ["OBRIEN", "OBRIEN", "CAIN"]])
    scores = dice(left, right)
    assert scores[0] == 1.0
    assert 0.5 < scores[1] < 1.0
    assert np.array_equal(scores, dice(left.view(np.uint64), right.view(np.uint64)))


def test_dice_of_rows_equals_dice_of_the_gathered_rows() -> None:
    """Filters counted once per side give each pair (rows repeated, an empty filter among
    them) the Dice of its two gathered filters."""
    names = ["OBRIEN", "OBRIAN", None, "KHAN"]
    left = bloom_to_array([bloom_encode(KEY, "surname", n) if n else None for n in names])
    right = bloom_to_array([bloom_encode(KEY, "surname", n) for n in ["OBRIEN", "CAIN"]])
    rows_l, rows_r = np.array([0, 1, 2, 3, 1, 0]), np.array([0, 0, 1, 1, 1, 1])
    sizes = filter_sizes(left), filter_sizes(right)
    assert sizes[0][2] == 0 and sizes[0][0] == int(np.bitwise_count(left[0]).sum())
    by_pair = dice_of_rows(left, right, rows_l, rows_r, *sizes)
    assert np.array_equal(by_pair, dice(left[rows_l], right[rows_r]))
    assert by_pair[0] == 1.0 and by_pair[2] == 0.0


def test_bloom_to_array_puts_bit_i_in_byte_i_div_8() -> None:
    """Bit 9 set: hex byte 1 is 0x02, the rest zero."""
    matrix = bloom_to_array(["00" + "02" + "00" * 126])
    assert matrix.shape == (1, 128)
    assert matrix[0, 1] == 2
    assert int(np.bitwise_count(matrix).sum()) == 1


def test_bloom_to_array_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="256 hex characters"):
        bloom_to_array(["00" * 64])


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12 Acacia Road", "12 ACACIA RD"),
        ("12, acacia rd.", "12 ACACIA RD"),
        ("St Mary\u2019s Street", "ST MARYS ST"),
        ("Flat 3/12  Zo\u00eb Gardens", "FLAT 3 12 ZOE GDNS"),
        ("4 The Crescent, Court Lane", "4 THE CRES CT LN"),
        (" , ", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_address(raw: str | None, expected: str | None) -> None:
    """Upper case, accents folded, punctuation a space, street types in one form."""
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    ("long", "short"),
    [
        ("ROAD", "RD"),
        ("STREET", "ST"),
        ("AVENUE", "AVE"),
        ("LANE", "LN"),
        ("CLOSE", "CL"),
        ("DRIVE", "DR"),
        ("CRESCENT", "CRES"),
        ("PLACE", "PL"),
        ("COURT", "CT"),
        ("GARDENS", "GDNS"),
        ("TERRACE", "TCE"),
        ("TERRACE", "TERR"),
        ("GROVE", "GR"),
        ("SQUARE", "SQ"),
        ("AVE", "AV"),
    ],
)
def test_street_types_agree_written_out_or_abbreviated(long: str, short: str) -> None:
    assert normalise_address(f"7 Lister {long}") == normalise_address(f"7 lister {short}.")


def address_dice(left: str, right: str) -> float:
    """Dice coefficient of the address filters of two raw addresses."""
    filters = [bloom_to_array([address_values(a, KEY)["address_bloom"]]) for a in (left, right)]
    return float(dice(*filters)[0])


def test_address_written_with_rd_or_road_has_the_same_filter() -> None:
    assert address_dice("14 Whinmoor Road", "14 WHINMOOR RD") == 1.0


def test_dice_of_a_mistyped_address_is_high_and_of_another_street_low() -> None:
    assert address_dice("14 Whinmoor Road, Headingley", "14 Whinmor Road, Headingley") > 0.85
    assert address_dice("14 Whinmoor Road", "14 Whinmoor Rd, Headingley") > 0.6
    assert address_dice("14 Whinmoor Road", "27 Lister Gardens") < 0.3


def test_address_filter_uses_its_own_field_and_fewer_hashes_than_names() -> None:
    """At most address_bloom_hashes bits per bigram, and not the surname filter of the text."""
    address = normalise_address("3 Kirkstall Lane")
    assert address is not None
    encoded = address_values("3 Kirkstall Lane", KEY)["address_bloom"]
    assert encoded is not None and re.fullmatch("[0-9a-f]{256}", encoded)
    ones = int(np.bitwise_count(bloom_to_array([encoded])).sum())
    assert 0 < ones <= LinkSettings().address_bloom_hashes * len(bigrams(address))
    assert encoded != bloom_encode(KEY, "surname", address)
    assert address_values(None, KEY) == {"address_bloom": None}


# --- near tokens -----------------------------------------------------------------------------


def nhs_near(value: str | None, key: bytes = KEY) -> str | None:
    return near_values(value, key, "nhs")["nhs_near_tokens"]


def near_agreement(left: str | None, right: str | None, positions: int) -> int:
    """Equal near-token positions of two raw identifiers (-1 when either is missing)."""
    prefix = "nhs" if positions == NHS_NEAR_POSITIONS else "upn"
    matrices = [
        near_tokens_to_array([near_values(v, KEY, prefix)[f"{prefix}_near_tokens"]], positions)
        for v in (left, right)
    ]
    return int(near_token_agreement(*matrices)[0])


# SipHash-2-4 of the messages 00, 00 01, ... 00 .. 10 under the key 00 01 .. 0f: the reference
# implementation's vectors_sip64 (Aumasson and Bernstein; 15 bytes is the paper's Appendix A).
SIPHASH_VECTORS = (
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
    0x3F2ACC7F57C29BDB, 0x699AE9F52CBE4794,
)  # fmt: skip


@pytest.mark.parametrize("length", range(len(SIPHASH_VECTORS)))
def test_siphash24_gives_the_published_test_vectors(length: int) -> None:
    """Lengths 0-17 cover an empty message, partial last words and whole words (8, 16)."""
    message = np.arange(length, dtype=np.uint8).reshape(1, length)
    assert int(siphash24(bytes(range(16)), message)[0]) == SIPHASH_VECTORS[length]


def test_siphash24_hashes_every_row_as_it_would_alone() -> None:
    rows = np.frombuffer(b"nhs_near|0|*434765919nhs_near|0|*434765918", np.uint8).reshape(2, 21)
    together = siphash24(bytes(range(16)), rows)
    assert [int(siphash24(bytes(range(16)), row[None, :])[0]) for row in rows] == list(together)
    with pytest.raises(ValueError, match="16 bytes"):
        siphash24(b"short", rows)


def sip_hex(message: str, key: bytes = KEY) -> str:
    """The near token of one message, as 16 hex digits."""
    row = np.frombuffer(message.encode(), dtype=np.uint8).reshape(1, -1)
    return f"{int(siphash24(near_token_key(key), row)[0]):016x}"


def test_near_tokens_are_keyed_hashes_of_each_masked_form() -> None:
    """Token i is the SipHash (near-token key) of 'nhs_near|i|number with i masked', as 16 hex
    digits; the near-token key is derived from the pseudonymisation key."""
    near = nhs_near("943 476 5919")
    assert near is not None and re.fullmatch("[0-9a-f]{160}", near)
    assert near[:16] == sip_hex("nhs_near|0|*434765919")
    assert near[-16:] == sip_hex("nhs_near|9|943476591*")
    assert near != nhs_near("9434765919", OTHER_KEY)
    assert near_token_key(KEY) != near_token_key(OTHER_KEY) and len(near_token_key(KEY)) == 16


def test_near_token_column_keeps_row_order_across_lengths_and_nulls() -> None:
    """Identifiers are hashed in groups of one length; the column still lines up with its input."""
    recorded = ["9434765919", None, "B801200005001", "943476591", "9434765919", "AB"]
    column = near_token_column(recorded, KEY, "x", 1).to_pylist()
    alone = [
        None if r is None else near_token_column([r], KEY, "x", 1)[0].as_py() for r in recorded
    ]
    assert column == alone
    assert column[0] == column[4] and column[1] is None
    assert [None if c is None else len(c) for c in column] == [160, None, 208, 144, 160, 32]
    pairs = near_token_column(["AB", "BA", "AC"], KEY, "x", 2).to_pylist()
    assert pairs[0] == pairs[1] != pairs[2]  # one token each: AB and BA are a transposition


def test_near_columns_of_a_column_equal_near_values_one_by_one() -> None:
    values = ["943 476 5919", None, "0000000000", "9434765918", "b801200005001", ""]
    columns = near_columns(values, KEY, "nhs")
    for name, column in columns.items():
        assert column.to_pylist() == [near_values(v, KEY, "nhs")[name] for v in values]
    assert columns["nhs_near_tokens"].null_count == 3  # None, a placeholder, empty


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("9434765919", "943 476 5919", 10),  # the same number
        ("9434765919", "9434765918", 1),  # last digit mistyped: an invalid checksum
        ("9434765919", "9434705919", 1),  # a middle digit mistyped
        ("9434765919", "9434756919", 0),  # two digits swapped: two positions differ
        ("9434765919", "4010232137", 0),  # another number
        ("9434765919", "943476591", 0),  # a digit left out: no position lines up
        ("9434765919", None, -1),
        (None, None, -1),
    ],
)
def test_nhs_near_tokens_agree_where_the_numbers_do(
    left: str | None, right: str | None, expected: int
) -> None:
    assert near_agreement(left, right, NHS_NEAR_POSITIONS) == expected


def test_upn_near_tokens_share_exactly_one_position_one_character_apart() -> None:
    assert near_agreement("B801200005001", "b801200005001", UPN_NEAR_POSITIONS) == 13
    assert near_agreement("B801200005001", "B801200005007", UPN_NEAR_POSITIONS) == 1
    assert near_agreement("B801200005001", "H801200001001", UPN_NEAR_POSITIONS) == 0


def test_deletion_forms_are_the_name_and_each_one_letter_deletion_from_three_letters() -> None:
    assert deletion_forms("ANNA") == ["ANNA", "NNA", "ANA", "ANN"]
    assert deletion_forms("AL") == ["AL"]  # no one-letter forms of a two-letter name
    assert deletion_forms("ABCDEFGHIJKLMNOP")[0] == "ABCDEFGHIJKL"  # the first 12 letters


def test_edit_tokens_are_keyed_hashes_of_the_deletion_forms_in_ascending_order() -> None:
    """Token set of SANA: SipHash (near-token key) of 'surname_edit|form', sorted as numbers;
    the forms are those of the normalised name."""
    tokens = name_values("Saña", KEY, "surname")["surname_edit_tokens"]
    expected = sorted(sip_hex(f"surname_edit|{form}") for form in deletion_forms("SANA"))
    assert tokens == "".join(expected)
    assert name_values(None, KEY, "surname")["surname_edit_tokens"] is None
    assert tokens != name_values("SANA", OTHER_KEY, "surname")["surname_edit_tokens"]
    forename = name_values("SANA", KEY, "forename")["forename_edit_tokens"]
    assert not set(split_tokens(forename)) & set(split_tokens(tokens))  # fields hash apart


def split_tokens(joined: str) -> list[str]:
    return [joined[i : i + 16] for i in range(0, len(joined), 16)]


def test_edit_token_column_keeps_row_order_across_lengths_and_nulls() -> None:
    names = ["Reid", None, "Reyid", "", "Al", "Reid"]
    column = edit_token_column(names, KEY, "surname").to_pylist()
    alone = [edit_token_column([n], KEY, "surname")[0].as_py() for n in names]
    assert column == alone
    assert column[0] == column[5] and column[1] is None and column[3] is None
    assert [None if c is None else len(c) // 16 for c in column] == [5, None, 6, None, 1, 5]


@pytest.mark.parametrize(
    ("left", "right", "shared"),
    [
        ("REID", "REYID", True),  # a letter inserted
        ("REYID", "REID", True),  # a letter deleted
        ("SANA", "SAAN", True),  # two adjacent letters transposed
        ("BANSON", "BANYON", True),  # a letter substituted
        ("CIAN", "CANE", True),  # one letter short of CAN each
        ("SANA", "SANA", True),
        ("DINA", "DIANE", False),  # two letters apart
        ("REID", "ROSS", False),
        ("REID", None, False),
    ],
)
def test_edit_tokens_overlap_within_one_keying_error(
    left: str, right: str | None, shared: bool
) -> None:
    matrices = [
        near_tokens_to_array(edit_token_column([name], KEY, "surname"), EDIT_TOKENS)
        for name in (left, right)
    ]
    rows = np.array([0])
    assert edit_token_overlap(*matrices, rows, rows).tolist() == [shared]


def transposition_agreement(left: str | None, right: str | None) -> int:
    """Equal transposition-token positions of two raw NHS numbers (-1 when either is missing)."""
    matrices = [
        near_tokens_to_array([near_values(v, KEY, "nhs")["nhs_near2_tokens"]], 9)
        for v in (left, right)
    ]
    return int(near_token_agreement(*matrices)[0])


def test_transposition_tokens_are_keyed_hashes_of_each_masked_pair_with_its_characters() -> None:
    """Token i is the SipHash (near-token key) of 'nhs_near2|i|masked|sorted pair'."""
    near2 = near_values("943 476 5919", KEY, "nhs")["nhs_near2_tokens"]
    assert near2 is not None and re.fullmatch("[0-9a-f]{144}", near2)
    assert near2[:16] == sip_hex("nhs_near2|0|**34765919|49")
    assert near2[-16:] == sip_hex("nhs_near2|8|94347659**|19")
    assert near_values(None, KEY, "nhs") == {"nhs_near_tokens": None, "nhs_near2_tokens": None}


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("9434765919", "9434765919", 9),  # the same number
        ("9434765919", "9437465919", 1),  # two adjacent digits swapped
        ("9434765919", "9434765918", 0),  # one digit mistyped: found by the near tokens
        ("9434765919", "9434765928", 0),  # two adjacent digits changed, not swapped
        ("9434765919", "9634745919", 0),  # two digits swapped, not adjacent
        ("9434765919", "9434765927", 0),  # a twin's consecutive number
        ("9434765919", None, -1),
    ],
)
def test_transposition_tokens_agree_only_for_the_same_number_or_a_swap(
    left: str | None, right: str | None, expected: int
) -> None:
    assert transposition_agreement(left, right) == expected


def test_name_pair_token_is_the_same_whichever_way_round_the_names_are() -> None:
    def pair(forename: str | None, surname: str | None) -> str | None:
        return name_pair_values(f"{forename or ''}\x1f{surname or ''}", KEY)["name_pair_token"]

    assert pair("Jack", "Steinert") == pair("STEINERT", "jack") == pair("Mr Jack", "Steinert")
    assert pair("Jack", "Steinert") != pair("Jack", "Steiner")
    assert (
        pair("Jack", "Steinert")
        != name_pair_values("Jack\x1fSteinert", OTHER_KEY)["name_pair_token"]
    )
    assert pair("Jack", None) is None and name_pair_values(None, KEY)["name_pair_token"] is None


@pytest.mark.parametrize(
    ("address", "numbers"),
    [
        ("12 Acorn Road", "12"),
        ("Flat 2, 10a High Street", "2 10A"),
        ("Rose Cottage, Mill Lane", None),
    ],
)
def test_premises_numbers_are_the_words_of_the_address_that_hold_a_digit(
    address: str, numbers: str | None
) -> None:
    assert premises_numbers(normalise_address(address)) == numbers


def test_premises_token_tells_houses_in_one_postcode_apart_and_ignores_street_keying_errors() -> (
    None
):
    def premises(postcode: str | None, address: str | None, key: bytes = KEY) -> str | None:
        value = f"{postcode or ''}\x1f{address or ''}"
        return premises_values(value, key)["premises_token"]

    home = premises("LS6 2AB", "12 Acorn Road")
    assert home is not None
    assert home == premises("ls62ab", "12 ACORN RD") == premises("LS6 2AB", "12 Acron Raod")
    assert home != premises("LS6 2AB", "21 Acorn Road")  # a neighbour
    assert home != premises("LS6 2AC", "12 Acorn Road")  # another postcode unit
    assert home != premises("LS6 2AB", "12 Acorn Road", OTHER_KEY)
    assert premises("LS6 2AB", "Acorn Road") is None  # no number to compare
    assert premises(None, "12 Acorn Road") is None and premises("not a postcode", "12 A") is None


def test_street_token_is_the_postcode_and_the_words_without_a_digit() -> None:
    def street(postcode: str | None, address: str | None) -> str | None:
        return premises_values(f"{postcode or ''}\x1f{address or ''}", KEY)["street_token"]

    home = street("LS6 2AB", "12 Acorn Road")
    assert home is not None
    assert home == street("LS6 2AB", "Acorn Rd") == street("LS6 2AB", "21 Acorn Road")
    assert home != street("LS6 2AB", "12 Acron Road") and home != street("LS6 2AC", "Acorn Road")
    assert street("LS6 2AB", "12") is None and street(None, "Acorn Road") is None
    assert street_words(normalise_address("Flat 2, 10a High Street")) == "FLAT HIGH ST"


@pytest.mark.parametrize(
    ("sources", "values", "derived"),
    [
        (
            ("forename", "surname"),
            (["Jack", "Steinert", None], ["Steinert", "Jack", "Steinert"]),
            ("name_pair_token",),
        ),
        (
            ("postcode", "address"),
            (["LS6 2AB", "LS6 2AB", None], ["12 Acorn Road", "12 Acorn Rd", "12 Acorn Road"]),
            ("premises_token", "street_token"),
        ),
        (
            ("postcode", "surname", "dob"),
            (["LS6 2AB", "ls62ab", None], ["Smith", "SMITH", "Smith"], ["2013-08-23"] * 3),
            ("household_birthday_token",),
        ),
    ],
)
def test_identity_frame_derives_joined_field_tokens_from_all_fields_listed_under_the_last(
    sources: tuple[str, ...], values: tuple[list, ...], derived: tuple[str, ...]
) -> None:
    """The name pair (forename, surname), the premises and street tokens (postcode, address) and
    the household birthday (postcode, surname, dob): equal for rows 1 and 2, null where a field
    is missing or not pseudonymised."""
    rows = pd.DataFrame({"local_id": ["1", "2", "3"]} | dict(zip(sources, values, strict=True)))
    table = pseudonymise_identity_frame(rows, "health", KEY)
    for column in derived:
        tokens = table.column(column).to_pylist()
        assert tokens[0] == tokens[1] and tokens[0] is not None and tokens[2] is None, column
    last_only = pseudonymise_identity_frame(rows, "health", KEY, fields=[sources[-1]])
    assert all(last_only.column(c).null_count == 3 for c in derived)
    first_only = pseudonymise_identity_frame(rows, "health", KEY, fields=[sources[0]])
    assert not set(derived) & set(first_only.column_names)


def test_household_birthday_token_keeps_the_day_and_month_in_one_household_only() -> None:
    """The token ignores the birth year (a year keyed wrong keeps it, UK or ISO dates alike) but
    not the day, month, postcode or surname: it agrees only within one household."""
    rows = pd.DataFrame(
        {
            "local_id": [str(i) for i in range(6)],
            "postcode": ["LS6 2AB", "LS6 2AB", "LS6 2AB", "LS6 2AB", "LS6 2AD", "LS6 2AB"],
            "surname": ["Thobson", "Thobson", "Thobson", "Thobson", "Thobson", "Thomson"],
            "dob": [
                "2013-08-23",
                "23/08/2014",
                "2013-08-22",
                "2013-09-23",
                "2013-08-23",
                "2013-08-23",
            ],
        }
    )
    tokens = pseudonymise_identity_frame(rows, "health", KEY).column("household_birthday_token")
    first, *others = tokens.to_pylist()
    assert first is not None and others[0] == first
    assert len({first, *others[1:]}) == len(others)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("943 476-5919", "9434765919"),
        ("94347G5919", "94347G5919"),
        ("b8012 00005001", "B801200005001"),
        ("0000000000", None),  # a placeholder identifies no one
        ("N/K", None),
        ("", None),
        (None, None),
    ],
)
def test_recorded_identifier_keeps_what_was_typed_without_separators(
    raw: str | None, expected: str | None
) -> None:
    assert recorded_identifier(raw) == expected


def test_near_tokens_to_array_is_one_uint64_per_position_with_a_missing_sentinel() -> None:
    """A full row, a missing row, and a short number's row padded with the sentinel."""
    full, short = nhs_near("9434765919"), nhs_near("943476591")
    assert full is not None and short is not None
    matrix = near_tokens_to_array(pd.Series([full, None, short]), NHS_NEAR_POSITIONS)
    assert matrix.shape == (3, NHS_NEAR_POSITIONS) and matrix.dtype == np.uint64
    assert matrix[0, 0] == int(full[:16], 16) and matrix[0, 9] == int(full[-16:], 16)
    assert (matrix[1] == MISSING_NEAR_TOKEN).all()
    assert (matrix[2, :9] != MISSING_NEAR_TOKEN).all() and matrix[2, 9] == MISSING_NEAR_TOKEN
    chunked = pa.chunked_array([[full], [None, short]])
    assert np.array_equal(near_tokens_to_array(chunked, NHS_NEAR_POSITIONS), matrix)
    with pytest.raises(ValueError, match="hex digits"):
        near_tokens_to_array(["zz" * 80], NHS_NEAR_POSITIONS)


def test_near_tokens_made_slice_by_slice_equal_those_made_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Large columns are converted a slice of rows at a time: rows keep their place across the
    slices, a short last slice included."""
    values = pd.Series(
        [nhs_near("9434765919"), None, nhs_near("943476591"), nhs_near("4010232137")]
    )
    whole = near_tokens_to_array(values, NHS_NEAR_POSITIONS)
    monkeypatch.setattr(pseudonymise_module, "NEAR_TOKEN_CHUNK_ROWS", 3)
    assert np.array_equal(near_tokens_to_array(values, NHS_NEAR_POSITIONS), whole)


def test_near_token_agreement_compares_indexed_pairs_row_by_row() -> None:
    numbers = ["9434765919", "9434765918", None, "4010232137"]
    matrix = near_tokens_to_array([nhs_near(n) for n in numbers], NHS_NEAR_POSITIONS)
    left_rows, right_rows = np.array([0, 0, 0, 1, 3]), np.array([0, 1, 2, 1, 0])
    agreement = near_token_agreement(matrix, matrix, left_rows, right_rows)
    assert agreement.tolist() == [10, 1, -1, 10, 0]
    with pytest.raises(ValueError, match="differ in length"):
        near_token_agreement(matrix, matrix, left_rows, right_rows[:2])


# --- tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(contracts()))
def test_pseudonymised_table_has_the_landed_schema(name: str) -> None:
    """The contract's pseudonymised columns in order, all nullable; payload as text."""
    spec = contract(name)
    out = pseudonymise_table(raw_table(spec), spec, KEY)
    assert out.schema.equals(landed_schema(spec))
    assert out.schema.names == spec.pseudonymised_schema().names
    assert all(field.nullable for field in out.schema)
    assert all(out.schema.field(c.name).type == pa.string() for c in spec.payload)
    assert out.num_rows == len(PEOPLE)


def test_payload_is_passed_through_as_text_with_iso_dates() -> None:
    spec = contract("health_referrals")
    raw = raw_table(spec)
    out = pseudonymise_table(raw, spec, KEY)
    for column in spec.payload:
        assert out.column(column.name).equals(raw.column(column.name).cast(pa.string()))
    assert out.column("referral_received_date").to_pylist() == ["2024-10-01"] * len(PEOPLE)


def test_row_level_problems_give_null_tokens_never_an_error() -> None:
    """Missing local id, unparseable or missing dob, invalid sex and ethnicity codes, empty
    names and a payload date that does not parse: each row is pseudonymised as far as it
    goes, in order, and nothing raises."""
    spec = contract("care_cin")
    text = text_table(spec)
    rows = text.to_pylist()
    rows[0] |= {"local_id": None, "sex": "Female"}
    rows[1] |= {"dob": "30/02/2012", "ethnicity": "WELSH", "forename": None}
    rows[2] |= {"dob": None, "cin_referral_date": "n/k"}
    out = pseudonymise_table(pa.Table.from_pylist(rows, schema=text.schema), spec, KEY)
    first, second, third = out.to_pylist()
    assert first["person_token"] is None and first["sex"] == "Female"
    assert first["birth_ym"] == "2015-03"
    assert (second["dob_token"], second["birth_ym"], second["ethnicity"]) == (None, None, "WELSH")
    assert second["forename_token"] is None and second["surname_token"] is not None
    assert second["person_token"] == person_token(KEY, "care", "EMS-00982214")
    assert (third["dob_token"], third["birth_ym"], third["cin_referral_date"]) == (
        None,
        None,
        "n/k",
    )


def test_dates_of_birth_in_uk_format_give_the_same_tokens_as_iso() -> None:
    spec = contract("health_referrals")
    iso = pseudonymise_table(raw_table(spec), spec, KEY)
    rows = text_table(spec).to_pylist()
    for row in rows:
        year, month, day = row["dob"].split("-")
        row["dob"] = f"{day}/{month}/{year}"
    uk = pseudonymise_table(pa.Table.from_pylist(rows, schema=text_table(spec).schema), spec, KEY)
    assert uk.column("dob_token").equals(iso.column("dob_token"))
    assert uk.column("birth_ym").equals(iso.column("birth_ym"))


def test_clear_identity_fields_are_coarsened() -> None:
    spec = contract("care_cin")
    out = pseudonymise_table(raw_table(spec), spec, KEY).to_pylist()
    assert [r["birth_ym"] for r in out] == ["2015-03", "2012-11", "2017-07"]
    assert [r["postcode_district"] for r in out] == ["LS6", "BD7", "HX1"]
    assert [r["sex"] for r in out] == ["F", "M", "F"]


def test_nickname_alt_token_equals_full_name_token() -> None:
    spec = contract("health_referrals")
    people = (person(forename="Bill"), person(forename="William", local_id="EMS-2"))
    bill, william = pseudonymise_table(raw_table(spec, people), spec, KEY).to_pylist()
    assert bill["forename_token"] != william["forename_token"]
    assert bill["forename_alt_token"] == william["forename_token"]
    assert william["forename_alt_token"] == william["forename_token"]


def test_no_date_of_birth_token_agrees_across_different_dates() -> None:
    """Only the full date is tokenised, and the day and month within one household: a token of
    part of the date alone (day, or day and month swapped) would agree across records with
    different clear birth months and reveal the day."""
    spec = contract("health_referrals")
    dates = (date(2015, 3, 7), date(2015, 7, 3), date(2016, 9, 7), date(2015, 3, 8))
    people = [person(dob=d, local_id=f"EMS-{i}") for i, d in enumerate(dates)]
    out = pseudonymise_table(raw_table(spec, people), spec, KEY).to_pylist()
    dob_columns = [c.name for c in spec.pseudonymised_columns if c.source == "dob"]
    assert sorted(dob_columns) == ["birth_ym", "dob_token", "household_birthday_token"]
    for column in ("dob_token", "household_birthday_token"):
        assert len({r[column] for r in out}) == len(dates), column


def test_identifier_tokens_only_for_valid_values() -> None:
    spec = contract("care_lac")
    people = (
        person(),
        person(local_id="EMS-2", nhs_number="9434765918", upn="A801200005001"),
        person(local_id="EMS-3", nhs_number=None, upn=None, postcode="NFA"),
    )
    valid, invalid, missing = pseudonymise_table(raw_table(spec, people), spec, KEY).to_pylist()
    assert (valid["nhs_status"], valid["upn_status"]) == ("valid", "valid")
    assert valid["nhs_token"] == token(KEY, "nhs_number", "9434765919")
    assert (invalid["nhs_status"], invalid["upn_status"]) == ("invalid", "invalid")
    assert (missing["nhs_status"], missing["upn_status"]) == ("missing", "missing")
    for row in (invalid, missing):
        assert row["nhs_token"] is None and row["upn_token"] is None
    assert missing["postcode_token"] is None and missing["postcode_district"] is None


def test_same_person_same_tokens_across_agencies_except_person_token() -> None:
    health, care = contract("health_referrals"), contract("care_cin")
    from_health = pseudonymise_table(raw_table(health), health, KEY).to_pylist()[0]
    from_care = pseudonymise_table(raw_table(care), care, KEY).to_pylist()[0]
    for name in ("nhs_token", "forename_token", "surname_bloom", "dob_token", "postcode_token"):
        assert from_health[name] == from_care[name]
    assert from_health["person_token"] != from_care["person_token"]


# --- keys ------------------------------------------------------------------------------------


def test_load_key_without_key_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOINEDUP_KEY", raising=False)
    monkeypatch.delenv("JOINEDUP_KEY_FILE", raising=False)
    with pytest.raises(MissingKeyError):
        load_key()


def test_pseudonymise_refuses_empty_or_short_key(tmp_path: Path) -> None:
    spec = contract("care_lac")
    with pytest.raises(MissingKeyError):
        pseudonymise_table(raw_table(spec), spec, b"")
    with pytest.raises(MissingKeyError):
        pseudonymise_file(tmp_path / "absent.csv", tmp_path / "out.parquet", "care_lac", b"short")


# --- identity frames -------------------------------------------------------------------------


def identity_rows(spec: Contract) -> pd.DataFrame:
    """The raw identity fields of the contract and la_code, as a caller holding rows has them."""
    raw = raw_table(spec).to_pandas()
    return raw[[*spec.identity, "la_code"]]


def test_identity_frame_gives_the_same_columns_as_pseudonymise_file(tmp_path: Path) -> None:
    """Same rows through pseudonymise_file and pseudonymise_identity_frame: equal identity
    columns and la_code, the frame's columns in the contract's order."""
    spec = contract("care_cin")
    src = write_raw_csv(raw_table(spec), tmp_path / "raw.csv")
    pseudonymise_file(src, tmp_path / "care_cin.parquet", spec.name, KEY)
    landed = pq.read_table(tmp_path / "care_cin.parquet")
    frame = pseudonymise_identity_frame(identity_rows(spec), "care", KEY)
    names = [c.name for c in spec.pseudonymised_columns if c.source] + ["la_code"]
    assert frame.column_names == names
    assert frame.equals(landed.select(names))
    assert {"address_bloom", "nhs_near_tokens", "upn_near_tokens"} <= set(names)


def test_identity_frame_is_identical_when_a_process_pool_shares_the_hashing() -> None:
    """The derivations run side by side in worker processes give byte-identical columns."""
    rows = identity_rows(contract("care_cin"))
    expected = pseudonymise_identity_frame(rows, "care", KEY)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        pooled = pseudonymise_identity_frame(rows, "care", KEY, pool=pool)
    assert pooled.equals(expected)


def test_identity_frame_takes_datetime_dates_typed_tables_and_chosen_fields() -> None:
    spec = contract("care_cin")
    rows = identity_rows(spec)
    expected = pseudonymise_identity_frame(rows, "care", KEY)
    as_datetime = rows.assign(dob=pd.to_datetime(rows["dob"]))
    assert pseudonymise_identity_frame(as_datetime, "care", KEY).equals(expected)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    assert pseudonymise_identity_frame(table, "care", KEY).equals(expected)
    chosen = pseudonymise_identity_frame(rows, "care", KEY, fields=["local_id", "upn"])
    assert chosen.column_names == [
        "person_token",
        "upn_token",
        "upn_near_tokens",
        "upn_near2_tokens",
        "upn_status",
        "la_code",
    ]
    assert chosen.column("upn_near_tokens").equals(expected.column("upn_near_tokens"))


def test_identity_frame_refuses_unknown_or_absent_fields_agencies_and_short_keys() -> None:
    rows = identity_rows(contract("health_referrals"))
    with pytest.raises(ValueError, match=r"\['shoe_size'\] are not in identity.json"):
        pseudonymise_identity_frame(rows, "health", KEY, fields=["local_id", "shoe_size"])
    with pytest.raises(ValueError, match=r"\['upn'\] are not in the frame"):
        pseudonymise_identity_frame(rows, "health", KEY, fields=["upn"])
    with pytest.raises(ValueError, match="unknown agency"):
        pseudonymise_identity_frame(rows, "police", KEY)
    with pytest.raises(MissingKeyError):
        pseudonymise_identity_frame(rows, "health", b"short")


# --- files -----------------------------------------------------------------------------------


def test_file_round_trip_writes_landed_parquet_and_a_source_report(tmp_path: Path) -> None:
    spec = contract("education_census")
    src = write_raw_csv(raw_table(spec), tmp_path / "raw.csv")
    dst = tmp_path / "out" / "education_census.parquet"
    report = pseudonymise_file(src, dst, "education_census", KEY)
    assert (report.rows_in, report.rows_out, report.problems) == (len(PEOPLE), len(PEOPLE), ())
    assert pq.read_schema(dst).equals(landed_schema(spec))
    assert sorted(p.name for p in dst.parent.iterdir()) == [
        "education_census.parquet",
        "education_census.source.json",
    ]
    assert json.loads((dst.parent / "education_census.source.json").read_text())["rows_out"] == 3


def write_messy_census(path: Path) -> list[str]:
    """A Windows-1252, semicolon, UK-date census export with a ragged row (3), a repeated
    header (5) and row-level problems; returns the local ids of the rows that stay, in order."""
    spec = contract("education_census")
    names = [c.name for c in spec.raw_columns]
    good = dict(zip(names, [str(payload_value(c)) for c in spec.raw_columns], strict=True))
    good |= {"forename": "Zoë", "surname": "Núñez", "dob": "07/03/2015", "sex": "F",
             "postcode": "LS6 2AB", "ethnicity": "WOTH", "upn": "B801200005001"}  # fmt: skip
    rows = [
        good | {"local_id": "A1"},
        good | {"local_id": "A2", "dob": "31/02/2015", "sex": "X", "ethnicity": "ZZZZ"},
        good | {"local_id": "A3"},  # made ragged below
        good | {"local_id": "", "sessions_possible": "twelve"},
        dict(zip(names, names, strict=True)),
        good | {"local_id": "A5", "dob": ""},
    ]
    lines = [";".join(names)] + [";".join(row[n] for n in names) for row in rows]
    lines[3] += ";extra"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return ["A1", "A2", "", "A5"]


def test_pseudonymise_file_with_bad_rows_never_raises_and_keeps_row_order(tmp_path: Path) -> None:
    src = tmp_path / "education_census.csv"
    kept = write_messy_census(src)
    dst = tmp_path / "landing" / "education_census.parquet"
    report = pseudonymise_file(src, dst, "education_census", KEY)
    assert (report.rows_in, report.rows_out) == (6, 4)
    assert [(p.row, p.rule) for p in report.problems] == [
        (3, "field_count"),
        (5, "duplicate_header"),
    ]
    assert report.text_format == TextFormat("cp1252", ";")
    out = pq.read_table(dst).to_pylist()
    expected = [person_token(KEY, "education", i) if i else None for i in kept]
    assert [r["person_token"] for r in out] == expected
    assert [r["birth_ym"] for r in out] == ["2015-03", None, "2015-03", None]
    assert [r["sex"] for r in out] == ["F", "X", "F", "F"]
    assert out[1]["ethnicity"] == "ZZZZ" and out[2]["sessions_possible"] == "twelve"
    assert out[0]["forename_token"] == token(KEY, "forename", "ZOE")
    assert str(report) == (
        "4 of 6 rows pseudonymised; left out: field_count row 3; duplicate_header row 5"
    )


def test_pseudonymise_file_writes_utf8_comma_csv_with_iso_dates(tmp_path: Path) -> None:
    """A .csv target is UTF-8, comma separated, dates ISO, and reads back as the Parquet."""
    src = tmp_path / "education_census.csv"
    write_messy_census(src)
    spec = contract("education_census")
    as_parquet = tmp_path / "p" / "education_census.parquet"
    as_csv = tmp_path / "c" / "education_census.csv"
    pseudonymise_file(src, as_parquet, spec.name, KEY)
    pseudonymise_file(src, as_csv, spec.name, KEY)
    data = as_csv.read_bytes()
    data.decode("utf-8")
    assert not data.startswith(b"\xef\xbb\xbf")
    text = read_delimited_text(as_csv)
    assert text.text_format == TextFormat("utf-8", ",")
    assert text.table.drop_columns([ROW_COLUMN]).equals(pq.read_table(as_parquet))


def test_payload_dates_land_in_iso_whatever_the_source_format(tmp_path: Path) -> None:
    spec = contract("health_referrals")
    text = text_table(spec)
    rows = [r | {"referral_received_date": "01/10/2024"} for r in text.to_pylist()]
    src = write_raw_csv(pa.Table.from_pylist(rows, schema=text.schema), tmp_path / "h.csv")
    dst = tmp_path / "out" / "health_referrals.csv"
    pseudonymise_file(src, dst, spec.name, KEY)
    landed = read_delimited_text(dst).table
    assert landed.column("referral_received_date").to_pylist() == ["2024-10-01"] * len(PEOPLE)


def test_read_raw_extract_orders_columns_as_the_contract(tmp_path: Path) -> None:
    spec = contract("care_lac")
    table = raw_table(spec)
    src = write_raw_csv(table.select(list(reversed(table.column_names))), tmp_path / "r.csv")
    raw = read_raw_extract(src, spec)
    assert raw.table.drop_columns([ROW_COLUMN]).equals(text_table(spec))
    assert raw.table.column(ROW_COLUMN).to_pylist() == [1, 2, 3]


def test_read_raw_extract_names_file_and_missing_column(tmp_path: Path) -> None:
    spec = contract("care_lac")
    src = write_raw_csv(raw_table(spec).drop_columns(["postcode"]), tmp_path / "lac.csv")
    with pytest.raises(ValueError, match=r"lac\.csv.*missing \['postcode'\]"):
        read_raw_extract(src, spec)


def test_pseudonymise_file_raises_file_rejected_for_a_truncated_file(tmp_path: Path) -> None:
    spec = contract("care_lac")
    src = write_raw_csv(raw_table(spec), tmp_path / "lac.csv")
    src.write_bytes(src.read_bytes()[:-40])
    with pytest.raises(FileRejected, match=r"lac\.csv: truncated"):
        pseudonymise_file(src, tmp_path / "out.parquet", "care_lac", KEY)
    assert not (tmp_path / "out.parquet").exists()


def test_tree_rejects_extract_under_wrong_agency(tmp_path: Path) -> None:
    spec = contract("education_census")
    write_raw_csv(raw_table(spec), tmp_path / "raw" / "health" / PERIOD / LA_CODE / "x.csv")
    with pytest.raises(ValueError, match="not an extract of agency 'health'"):
        pseudonymise_tree(tmp_path / "raw", tmp_path / "landing", KEY)


def test_tree_lands_each_agency_in_its_output_format(tmp_path: Path) -> None:
    for spec in contracts().values():
        write_raw_csv(
            raw_table(spec), tmp_path / "raw" / spec.agency / PERIOD / LA_CODE / f"{spec.name}.csv"
        )
    written = pseudonymise_tree(tmp_path / "raw", tmp_path / "landing", KEY, {"health": "csv"})
    suffixes = {p.stem: p.suffix for p in written}
    assert suffixes == {
        name: ".csv" if spec.agency == "health" else ".parquet"
        for name, spec in contracts().items()
    }
    with pytest.raises(ValueError, match="unknown output format 'xlsx'"):
        pseudonymise_tree(tmp_path / "raw", tmp_path / "landing", KEY, "xlsx")  # type: ignore[arg-type]


# --- delimited text --------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "encoding", "delimiter"),
    [
        ("\ufeffid,name,dob\n1,Zoë,07/03/2015\n".encode(), "utf-8-sig", ","),
        ("id,name,dob\n1,Zoë,07/03/2015\n".encode(), "utf-8", ","),
        ("id;name;dob\r\n1;Zoë;07/03/2015\r\n".encode("cp1252"), "cp1252", ";"),
        ("id\tname\tdob\n1\tZoë\t07/03/2015\n".encode(), "utf-8", "\t"),
        ("id|name|dob\n1|Zoë|07/03/2015\n".encode(), "utf-8", "|"),
    ],
    ids=["utf8-bom", "utf8", "cp1252-semicolon-crlf", "tab", "pipe"],
)
def test_read_delimited_detects_encoding_and_delimiter(
    tmp_path: Path, data: bytes, encoding: str, delimiter: str
) -> None:
    text = read_delimited_text(write_bytes(tmp_path / "x.csv", data))
    assert text.text_format == TextFormat(encoding, delimiter)
    assert text.table.to_pylist() == [{"id": "1", "name": "Zoë", "dob": "07/03/2015", "_row": 1}]


def test_read_delimited_decodes_windows_1252_accents(tmp_path: Path) -> None:
    data = "id;forename\n1;Chloé\n2;José\n3;Zoë\n".encode("cp1252")
    table, problems = read_delimited(write_bytes(tmp_path / "x.csv", data))
    assert table.column("forename").to_pylist() == ["Chloé", "José", "Zoë"]
    assert problems == []


def test_read_delimited_keeps_text_as_is_and_empty_as_null(tmp_path: Path) -> None:
    """Header names are stripped and lower-cased; values stay text ('007', 'NA', 'n/k');
    only empty values are null; quoted delimiters stay in their value; row order is kept."""
    data = b' Local_ID ,Name , NCYEAR\n007,"Smith, Jo",NA\n008,,n/k\n009,"",12\n'
    table, _ = read_delimited(write_bytes(tmp_path / "x.csv", data))
    assert table.column_names == ["local_id", "name", "ncyear", ROW_COLUMN]
    assert table.to_pylist() == [
        {"local_id": "007", "name": "Smith, Jo", "ncyear": "NA", "_row": 1},
        {"local_id": "008", "name": None, "ncyear": "n/k", "_row": 2},
        {"local_id": "009", "name": None, "ncyear": "12", "_row": 3},
    ]


def test_read_delimited_reports_ragged_rows_and_repeated_headers(tmp_path: Path) -> None:
    """Rows with too many or too few fields and rows repeating the header are left out and
    reported with their data row number; the rest keep theirs."""
    data = b"id,name\n1,a\n2,b,extra\n3\nID , Name\n5,e\n"
    text = read_delimited_text(write_bytes(tmp_path / "x.csv", data))
    assert [(p.row, p.rule) for p in text.problems] == [
        (2, "field_count"),
        (3, "field_count"),
        (4, "duplicate_header"),
    ]
    assert text.problems[0].detail == "3 fields where the header has 2"
    assert text.problems[1].detail == "1 field where the header has 2"
    assert text.table.to_pylist() == [
        {"id": "1", "name": "a", "_row": 1},
        {"id": "5", "name": "e", "_row": 5},
    ]
    assert text.rows_delivered == 5


def test_read_delimited_problem_details_never_quote_the_row(tmp_path: Path) -> None:
    data = b"id,surname\n1,Nowakowska,LS6 2AB\n"
    text = read_delimited_text(write_bytes(tmp_path / "x.csv", data))
    assert not [p for p in text.problems if "Nowakowska" in p.detail or "LS6" in p.detail]
    assert len(text.problems) == 1


def test_read_delimited_counts_a_quoted_line_break_as_one_row(tmp_path: Path) -> None:
    data = b'id,note\n1,"two\nlines"\n2,x,y\n3,z\n'
    text = read_delimited_text(write_bytes(tmp_path / "x.csv", data))
    assert [(p.row, p.rule) for p in text.problems] == [(2, "field_count")]
    assert text.table.column(ROW_COLUMN).to_pylist() == [1, 3]
    assert text.table.column("note").to_pylist() == ["two\nlines", "z"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"\n\n", "empty file"),
        (b"id,name\n", "no data rows"),
        (b"id,name\r\n", "no data rows"),
        (b"id,name\n1,a\n2", "truncated: the last row (2) has 1 of 2 fields"),
        (b'id,name\n1,a\n2,"Smi', "truncated: the file ends inside a quoted value"),
        (b"EDU-1,2015-03-07\nEDU-2,2015-03-08\n", "no recognisable header"),
        (b"id,id\n1,2\n", "no recognisable header: repeated"),
        (b"id,,name\n1,2,3\n", "no recognisable header"),
        (b"id,name\n1,\x81\n", "undecodable bytes: neither UTF-8 nor Windows-1252"),
        (b"\xef\xbb\xbfid,name\n1,\xe9\n", "undecodable bytes: has a UTF-8 BOM"),
        ("id,name\n1,a\n".encode("utf-16"), "undecodable bytes: NUL bytes"),
    ],
    ids=[
        "zero-bytes",
        "blank-lines",
        "header-only",
        "header-only-crlf",
        "truncated-row",
        "truncated-quote",
        "no-header",
        "repeated-names",
        "empty-name",
        "not-cp1252",
        "bom-but-not-utf8",
        "utf16",
    ],
)
def test_read_delimited_rejects_file_level_problems(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = write_bytes(tmp_path / "x.csv", data)
    with pytest.raises(FileRejected) as raised:
        read_delimited(path)
    assert raised.value.reason.startswith(reason), raised.value.reason
    assert raised.value.path == path and str(raised.value).startswith(f"{path}: ")


def test_read_delimited_accepts_a_complete_last_row_without_newline(tmp_path: Path) -> None:
    table, problems = read_delimited(write_bytes(tmp_path / "x.csv", b"id,name\n1,a\n2,b"))
    assert table.column("name").to_pylist() == ["a", "b"] and problems == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-31", date(2024, 1, 31)),
        ("31/01/2024", date(2024, 1, 31)),
        ("1/2/2020", date(2020, 2, 1)),
        (" 29/02/2000 ", date(2000, 2, 29)),
        ("2024-02-29", date(2024, 2, 29)),
        ("31/02/2024", "bad"),
        ("2024-13-01", "bad"),
        ("2023-02-29", "bad"),
        ("29/02/1900", "bad"),
        ("n/k", "bad"),
        ("2024-1-5", "bad"),
        ("01/00/2020", "bad"),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_parse_date_reads_iso_and_uk_dates_and_flags_the_rest(
    text: str | None, expected: date | str | None
) -> None:
    parsed, bad = parse_date(pa.array([text], pa.string()))
    assert parsed.type == pa.date32()
    assert parsed.to_pylist() == [expected if isinstance(expected, date) else None]
    assert bad.tolist() == [expected == "bad"]


def test_parse_date_passes_dates_through_and_takes_chunked_arrays() -> None:
    dates = pa.chunked_array([[date(2024, 1, 1)], [None]], pa.date32())
    parsed, bad = parse_date(dates)
    assert parsed.to_pylist() == [date(2024, 1, 1), None] and not bad.any()
    parsed, bad = parse_date(pa.chunked_array([["01/02/2024"], ["x"]]))
    assert parsed.to_pylist() == [date(2024, 2, 1), None] and bad.tolist() == [False, True]


# --- privacy ---------------------------------------------------------------------------------


def identifier_forms(p: dict[str, object]) -> set[str]:
    """Every textual form of a person's identifiers that must not survive pseudonymisation."""
    dob = p["dob"]
    assert isinstance(dob, date)
    texts = [str(p[f]) for f in ("local_id", "nhs_number", "upn", "forename", "surname")]
    texts += [normalise_name(str(p["forename"])) or "", normalise_name(str(p["surname"])) or ""]
    address = str(p["address"])
    texts += [address, normalise_address(address) or ""]
    texts += [word for word in address.replace(",", " ").split() if len(word) > 3]
    postcode = str(p["postcode"])
    texts += [postcode, postcode.replace(" ", ""), str(p["nhs_number"]).replace(" ", "")]
    texts += [dob.isoformat(), dob.strftime("%d/%m/%Y"), dob.strftime("%Y%m%d")]
    return {form for text in texts for form in (text, text.upper(), text.lower())}


def number_parts(p: dict[str, object]) -> set[str]:
    """Every run of 7 characters of a person's NHS number and UPN as recorded."""
    numbers = (str(p["nhs_number"]).replace(" ", ""), str(p["upn"]))
    return {n[i : i + 7] for n in numbers for i in range(len(n) - 6)}


def test_no_identifier_survives_pseudonymisation(tmp_path: Path) -> None:
    """Every cell (and every byte of the Parquet file) of all six extracts is free of every
    name, address or word of it, NHS number, UPN, local id, full date of birth and postcode
    of the input; no cell derived from them without a Bloom filter holds 7 characters in a
    row of an NHS number or UPN."""
    for spec in contracts().values():
        write_raw_csv(
            raw_table(spec), tmp_path / "raw" / spec.agency / PERIOD / LA_CODE / f"{spec.name}.csv"
        )
    written = pseudonymise_tree(tmp_path / "raw", tmp_path / "landing", KEY)
    assert len(written) == len(contracts())
    forbidden = set().union(*(identifier_forms(p) for p in PEOPLE))
    for path in written:
        table = pq.read_table(path)
        cells = [str(v) for column in table.columns for v in column.to_pylist()]
        leaks = {(form, cell) for cell in cells for form in forbidden if form in cell}
        assert not leaks, f"{path.name} leaks {sorted(leaks)[:3]}"
        # Bloom filters (of names and addresses only) are left out: their sparse hex is
        # mostly 0, 1, 2, 4 and 8 and holds such digit runs by chance.
        spec = contract(path.stem)
        hashed = [c.name for c in spec.pseudonymised_columns if c.source and not c.encoding]
        cells = [str(v) for name in hashed for v in table.column(name).to_pylist()]
        parts = set().union(*(number_parts(p) for p in PEOPLE))
        assert not {(part, cell) for cell in cells for part in parts if part in cell}
        content = path.read_bytes()
        assert not [f for f in forbidden if f.encode() in content], path.name
        report = (path.parent / f"{path.stem}.source.json").read_bytes()
        assert not [f for f in forbidden if f.encode() in report], path.name
