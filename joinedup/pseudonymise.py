"""Pseudonymisation at source: what each agency runs before anything leaves it.

Privacy design. Every identifier (local id, NHS number, UPN, names, full date of birth,
postcode) becomes a keyed HMAC-SHA256 token of its normalised value, tagged with its field so
equal values in different fields differ; only birth year-month, sex, ethnicity and postcode
district stay in clear. Approximate name and address agreement uses field-level Bloom filters
of bigrams (CLK style, Schnell et al. 2009); the address filter sets fewer bits per bigram.
A mistyped NHS number or UPN is matched by its near tokens: the number as recorded with each
position masked in turn, each masked form keyed-hashed to 64 bits (SipHash-2-4, a keyed PRF
for short inputs, under a 128-bit key derived from the pseudonymisation key: computed for a
whole column at once, where HMAC would cost a Python call per form), so two numbers one
character apart share exactly one token and reveal no more than that; and by its transposition
(near-2) tokens, each pair of adjacent positions masked in turn with the pair's two characters
appended in sorted order, which two numbers share only when they are equal or one has two
adjacent characters transposed. Forename and surname recorded the wrong way round are matched
by one token of the unordered name pair (both normalised names sorted and keyed-hashed
together); besides the two name tokens it reveals only that one record's forename and surname
are another's surname and forename. Known attacks:
dictionary attacks on unkeyed encodings, and frequency and pattern-mining attacks that map
filter bits back to bigrams or names (Kuzu et al. 2011; Niedermeyer et al. 2014; Christen et
al. 2017, 2018). Mitigations here: every hash is keyed, so no one without the key can encode
candidate names, addresses or numbers to build a dictionary; each field has its own filter
and derived keys, so no record-level filter pools bigrams for mining; dates and identifiers
get no filters, only equality tokens and near tokens; the key is held by the agencies' data
controllers, read from the environment or a key file, never the repository, and nothing runs
without it. The date of birth has one token (the full date) beside the clear birth
year-month: tokens of parts of the date (the day, or the day and month swapped) would agree
across records whose clear months differ and so reveal the day, and the full date of birth
with it. Residual risk: holders of many filters can still align bit and token frequencies
with public name and street frequencies, so pseudonymised extracts remain personal data to
be kept inside the pipeline (bit flipping such as BLIP would blunt that at a cost in recall,
and is not used).

Reading and tolerance. Raw exports are read as text whatever their encoding, delimiter and
date style (read_delimited_text, which ingest shares). A file that cannot be read at all raises
FileRejected; a row with the wrong number of fields or repeating the header is left out and
reported in the SourceReport (never quoting the row); every other row is pseudonymised as far
as its values allow (a missing or unparseable identity value gives null tokens) and its
payload is passed on as delivered text, for ingest to type and quarantine.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from datetime import date
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jellyfish
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from joinedup.contracts import Contract, Period, column_mismatch, contracts, identity_columns
from joinedup.settings import AGENCIES, MIN_KEY_BYTES, LinkSettings, MissingKeyError

if TYPE_CHECKING:
    import pandas as pd

NICKNAMES_PATH = Path(__file__).resolve().parent / "data" / "nicknames.csv"
NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
TITLES = frozenset({"MR", "MRS", "MISS", "MS", "MX", "DR", "MASTER"})
POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
NOT_LETTERS = re.compile(r"[^A-Z]")
APOSTROPHES = re.compile("['\u2019`]")
NOT_ALPHANUMERIC = re.compile(r"[^A-Z0-9]+")
STREET_TYPES_PATH = NICKNAMES_PATH.with_name("street_types.csv")
# Other short forms of street types in data/street_types.csv, keyed by its abbreviation.
STREET_TYPE_VARIANTS = {"AVE": ("AV",), "CRES": ("CRESC",), "TERR": ("TCE", "TER")}
IDENTIFIER_SEPARATORS = re.compile(r"[\s\-/.]+")
NEAR_MASK = "*"
HMAC_BLOCK = 64  # bytes in a SHA-256 block, the width of HMAC's padded key
NEAR_TOKEN_HEX = 16  # hex digits (64 bits) of one near token
NEAR_TOKEN_CHUNK_ROWS = 1 << 17  # values turned into tokens at a time (their text: ~27 MB)
NHS_NEAR_POSITIONS, UPN_NEAR_POSITIONS = 10, 13
PAIR_SEPARATOR = "\x1f"  # joins several raw fields into one value for map_unique
# The raw fields read by the columns derived from several (each listed under the last).
NAME_PAIR_FIELDS = ("forename", "surname")
PREMISES_FIELDS = ("postcode", "address")
HOUSEHOLD_BIRTHDAY_FIELDS = ("postcode", "surname", "dob")
MISSING_NEAR_TOKEN = np.uint64(0)  # a position without a token in a near-token matrix
HEX_VALUES = np.full(256, 255, dtype=np.uint8)  # ASCII code -> value of a hex digit, else 255
HEX_VALUES[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
HEX_VALUES[np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)] = np.arange(16)
# Latin letters that Unicode does not decompose into a base letter and a mark (Ł is not L + ◌).
UNDECOMPOSED_LETTERS = str.maketrans(
    {"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h",
     "ı": "i", "ß": "ss", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Þ": "TH", "þ": "th"}
)  # fmt: skip
LINK = LinkSettings()
VALID, INVALID, MISSING = "valid", "invalid", "missing"

Values = dict[str, str | None]
Derived = dict[str, pa.Array]
CLEAR_FIELDS = frozenset({"sex", "ethnicity"})
NEAR_TOKEN_PREFIXES = {"nhs_number": "nhs", "upn": "upn"}  # identifier fields with near tokens
EDIT_TOKEN_FIELDS = ("forename", "surname")  # name fields with edit tokens (edit_token_column)
EDIT_TOKEN_LETTERS = 12  # a name's edit tokens are those of its first 12 letters
EDIT_TOKENS = EDIT_TOKEN_LETTERS + 1  # at most: the name and each one-letter deletion


def nhs_check_digit(first_nine: str) -> int | None:
    """Modulus 11 check digit of the first nine digits; None when no digit is valid (10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, NHS_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(value: str | None) -> bool:
    """True for 10 digits (spaces allowed), not all the same digit (placeholders such as
    9999999999), whose last digit is the modulus 11 check."""
    if not value:
        return False
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


def upn_check_letter(body: str) -> str:
    """Check letter of the 12 characters after it (DfE UPN algorithm: weights 2-13, mod 23)."""
    total = 0
    for weight, char in enumerate(body, start=2):
        value = int(char) if char.isdigit() else UPN_LETTERS.index(char)
        total += value * weight
    return UPN_LETTERS[total % 23]


def is_valid_upn(value: str | None) -> bool:
    """True for a 13-character UPN whose first letter is the check letter of the rest."""
    if not value:
        return False
    upn = value.strip().upper()
    if len(upn) != 13 or upn[0] not in UPN_LETTERS or not upn[1:12].isdigit():
        return False
    if not (upn[12].isdigit() or upn[12] in UPN_LETTERS):
        return False
    return upn_check_letter(upn[1:]) == upn[0]


@cache
def nickname_table() -> dict[str, str]:
    """Uppercase nickname -> canonical forename (BILL -> WILLIAM), from data/nicknames.csv."""
    with NICKNAMES_PATH.open(encoding="utf-8", newline="") as handle:
        return {row["nickname"]: row["canonical"] for row in csv.DictReader(handle)}


@cache
def street_types() -> dict[str, str]:
    """Upper-case street type, written out or abbreviated -> its abbreviation (ROAD, RD -> RD),
    from data/street_types.csv and STREET_TYPE_VARIANTS. The short form keeps these common
    words from weighing much in an address filter, and leaves ST (STREET or SAINT) as written."""
    with STREET_TYPES_PATH.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["abbreviation"]]
    forms: dict[str, str] = {}
    for row in rows:
        short = row["abbreviation"].upper()
        for form in (row["type"].upper(), short, *STREET_TYPE_VARIANTS.get(short, ())):
            forms[form] = short
    return forms


# --- normalisation -------------------------------------------------------------------------


def fold_accents(value: str) -> str:
    """The text with accents and other marks dropped and letters such as Ł spelled in Latin
    base letters (Zoë -> Zoe, Łukasz -> Lukasz, Strauß -> Strauss)."""
    if value.isascii():  # nothing to fold (most values): no decomposition to make
        return value
    decomposed = unicodedata.normalize("NFKD", value.translate(UNDECOMPOSED_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=1 << 16)
def normalise_name(value: str | None) -> str | None:
    """Name as A-Z only: accents stripped, uppercase, leading titles dropped; None if empty."""
    if not value:
        return None
    words = fold_accents(value).upper().replace(".", " ").split()
    while words and words[0] in TITLES:
        words = words[1:]
    name = NOT_LETTERS.sub("", "".join(words))
    return name or None


def canonical_forename(normalised: str) -> str:
    """The canonical form of a normalised forename (BILL -> WILLIAM), else the name itself."""
    return nickname_table().get(normalised, normalised)


def phonetic_code(normalised: str) -> str:
    """Soundex code of a normalised name, coarse enough to block on despite typos."""
    return jellyfish.soundex(normalised)


def normalise_postcode(value: str | None) -> tuple[str, str, str] | None:
    """(full without space, district, sector), e.g. ("LS62AB", "LS6", "LS6 2"); None if not
    a UK postcode."""
    if not value:
        return None
    compact = "".join(value.split()).upper()
    match = POSTCODE.match(compact)
    if match is None:
        return None
    outward, inward = match.groups()
    return compact, outward, f"{outward} {inward[0]}"


def normalise_identifier(value: str | None) -> str | None:
    """NHS number or UPN with whitespace removed and uppercased; None if empty."""
    if value is None:
        return None
    compact = "".join(value.split()).upper()
    return compact or None


def normalise_address(value: str | None) -> str | None:
    """Address lines as upper-case words of A-Z and 0-9 separated by one space: accents folded,
    apostrophes dropped (ST MARY'S -> ST MARYS), other punctuation a space, street types in one
    form (ROAD, RD -> RD; see street_types); None if nothing is left."""
    if not value:
        return None
    text = APOSTROPHES.sub("", fold_accents(value).upper())
    words = NOT_ALPHANUMERIC.sub(" ", text).split()
    types = street_types()
    return " ".join(types.get(word, word) for word in words) or None


def recorded_identifier(value: str | None) -> str | None:
    """An NHS number or UPN as recorded, for near tokens, valid or not: upper case, without
    separators (spaces, hyphens, slashes, dots); None when it holds no digit, or is one
    character repeated (a placeholder such as 0000000000, which identifies no one)."""
    if value is None:
        return None
    recorded = IDENTIFIER_SEPARATORS.sub("", value).upper()
    if not any(c.isdigit() for c in recorded) or len(set(recorded)) == 1:
        return None
    return recorded


def identifier_status(value: str | None, is_valid: Callable[[str], bool]) -> str:
    """'missing', 'invalid' or 'valid' for a raw NHS number or UPN."""
    normalised = normalise_identifier(value)
    if normalised is None:
        return MISSING
    return VALID if is_valid(normalised) else INVALID


def require_key(key: bytes) -> None:
    """Refuse to pseudonymise with an absent or short key."""
    if not key or len(key) < MIN_KEY_BYTES:
        raise MissingKeyError(
            f"A pseudonymisation key of at least {MIN_KEY_BYTES} bytes is required "
            "(settings.load_key() reads it from the environment or a key file)."
        )


@lru_cache(maxsize=8)
def hmac_key_states(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after HMAC's inner and outer padded key (RFC 2104), once per key."""
    block = (hashlib.sha256(key).digest() if len(key) > HMAC_BLOCK else key).ljust(
        HMAC_BLOCK, b"\0"
    )
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def keyed_digest(key: bytes, field: str, value: str) -> bytes:
    """HMAC-SHA256 (32 bytes) of 'field|value': the same value in another field differs.

    Equal to hmac.digest(key, ..., "sha256"), computed from the key's padded states so that
    each value costs only the hashing of its message, not hmac.digest's set-up of the key."""
    inner_key, outer_key = hmac_key_states(key)
    inner, outer = inner_key.copy(), outer_key.copy()
    inner.update(f"{field}|{value}".encode())
    outer.update(inner.digest())
    return outer.digest()


@lru_cache(maxsize=1 << 16)
def token(key: bytes, field: str, value: str) -> str:
    """HMAC-SHA256 (64 lowercase hex) of 'field|value': the same value in another field differs."""
    return keyed_digest(key, field, value).hex()


def person_token(key: bytes, agency: str, local_id: str) -> str:
    """The token of an agency's own person id, scoped by agency: the agency's record key."""
    return token(key, "person", f"{agency}|{local_id}")


# --- Bloom filters -------------------------------------------------------------------------


def bigrams(name: str) -> frozenset[str]:
    """The bigrams of the name padded with '_' at both ends (ANN -> _A AN NN N_)."""
    padded = f"_{name}_"
    return frozenset(padded[i : i + 2] for i in range(len(padded) - 1))


@lru_cache(maxsize=256)
def _bloom_keys(key: bytes, field: str) -> tuple[bytes, bytes]:
    """Two independent keys per field for the double hashing of bigrams."""
    first = hmac.digest(key, f"bloom-h1|{field}".encode(), "sha256")
    second = hmac.digest(key, f"bloom-h2|{field}".encode(), "sha512")
    return first, second


@lru_cache(maxsize=1 << 16)
def _bigram_mask(key: bytes, field: str, bigram: str, bits: int, hashes: int) -> int:
    """Bits set by one bigram, as an int whose bit i is filter bit i: g_i = h1 + i*h2 mod bits."""
    first, second = _bloom_keys(key, field)
    h1 = int.from_bytes(hmac.digest(first, bigram.encode(), "sha256"), "big")
    # An odd step is coprime with a power-of-two width, so the positions do not cycle early.
    h2 = int.from_bytes(hmac.digest(second, bigram.encode(), "sha512"), "big") | 1
    mask = 0
    for i in range(hashes):
        mask |= 1 << ((h1 + i * h2) % bits)
    return mask


def bloom_encode(
    key: bytes,
    field: str,
    normalised: str,
    bits: int = LINK.bloom_bits,
    hashes: int = LINK.bloom_hashes,
) -> str:
    """Keyed Bloom filter of a normalised name's (or address's) bigrams as hex of bits/8
    bytes (bit i: byte i//8, bit i%8)."""
    if bits % 8:
        raise ValueError(f"bloom filter width {bits} is not a whole number of bytes")
    mask = 0
    for bigram in bigrams(normalised):
        mask |= _bigram_mask(key, field, bigram, bits, hashes)
    return mask.to_bytes(bits // 8, "little").hex()


def bloom_to_array(hex_values: Sequence[str | None], bits: int = LINK.bloom_bits) -> np.ndarray:
    """uint8 matrix, one row of bits/8 bytes per filter; a row of zeros for a missing one."""
    width = bits // 8
    empty = "00" * width
    parts = [value if isinstance(value, str) else empty for value in hex_values]
    if any(len(part) != 2 * width for part in parts):
        raise ValueError(f"every Bloom filter must be {2 * width} hex characters ({bits} bits)")
    buffer = bytearray.fromhex("".join(parts))
    return np.frombuffer(buffer, dtype=np.uint8).reshape(len(parts), width)


def _as_words(filters: np.ndarray) -> np.ndarray:
    """Filters as a 2-D array of 64-bit words when the width allows, for fewer popcounts."""
    matrix = np.ascontiguousarray(np.atleast_2d(filters))
    if matrix.dtype.kind != "u":
        raise TypeError(f"Bloom filters must be unsigned integer arrays, not {matrix.dtype}")
    matrix = matrix.view(np.uint8)
    return matrix.view(np.uint64) if matrix.shape[1] % 8 == 0 else matrix


def dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Dice coefficient 2|A&B| / (|A|+|B|) of two filter matrices; 0 if both empty.

    Rows may be bytes (bloom_to_array) or the same bytes viewed as uint64, cheaper to gather.
    """
    if a.shape != b.shape:
        raise ValueError(f"filter matrices differ in shape: {a.shape} and {b.shape}")
    rows = np.arange(len(np.atleast_2d(a)))
    return dice_of_rows(a, b, rows, rows, filter_sizes(a), filter_sizes(b))


def filter_sizes(filters: np.ndarray) -> np.ndarray:
    """The number of bits set in each filter (row) of a filter matrix."""
    return np.bitwise_count(_as_words(filters)).sum(axis=1, dtype=np.int64)


def dice_of_rows(
    left: np.ndarray,
    right: np.ndarray,
    left_rows: np.ndarray,
    right_rows: np.ndarray,
    left_sizes: np.ndarray,
    right_sizes: np.ndarray,
) -> np.ndarray:
    """dice(left[left_rows], right[right_rows]) given each filter's size (filter_sizes, counted
    once per filter rather than once per pair): only the shared bits are counted pair by pair."""
    if np.atleast_2d(left).shape[1:] != np.atleast_2d(right).shape[1:]:
        raise ValueError(f"filter matrices differ in width: {left.shape} and {right.shape}")
    shared = np.bitwise_count(_as_words(left)[left_rows] & _as_words(right)[right_rows])
    total = left_sizes[left_rows] + right_sizes[right_rows]
    result = np.zeros(len(total), dtype=np.float64)
    np.divide(2 * shared.sum(axis=1, dtype=np.int64), total, out=result, where=total > 0)
    return result


# --- near tokens of NHS numbers and UPNs ---------------------------------------------------

# SipHash's initial state words ("somepseudorandomlygeneratedbytes"), XORed with the key halves
SIPHASH_CONSTANTS = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), np.uint8)
HEX_PAIRS = HEX_PAIRS.reshape(256, 2)  # byte value -> its two lowercase hex digits


def _rotate_left(x: np.ndarray, bits: int) -> np.ndarray:
    return (x << np.uint64(bits)) | (x >> np.uint64(64 - bits))


def _sip_rounds(v: list[np.ndarray], rounds: int) -> None:
    """SipRound applied `rounds` times to the state (v0, v1, v2, v3), in place."""
    for _ in range(rounds):
        v[0] += v[1]
        v[1] = _rotate_left(v[1], 13) ^ v[0]
        v[0] = _rotate_left(v[0], 32)
        v[2] += v[3]
        v[3] = _rotate_left(v[3], 16) ^ v[2]
        v[0] += v[3]
        v[3] = _rotate_left(v[3], 21) ^ v[0]
        v[2] += v[1]
        v[1] = _rotate_left(v[1], 17) ^ v[2]
        v[2] = _rotate_left(v[2], 32)


def siphash24(key: bytes, messages: np.ndarray) -> np.ndarray:
    """SipHash-2-4 (Aumasson and Bernstein 2012, a keyed PRF for short inputs) under a 16-byte
    key of each row of a uint8 matrix of equal-length messages, as uint64: every row hashed at
    once by numpy, which is what makes near tokens cheap (tens of millions of masked forms)."""
    if len(key) != 16:
        raise ValueError(f"a SipHash key is 16 bytes, not {len(key)}")
    rows, length = messages.shape
    padded = np.zeros((rows, (length // 8 + 1) * 8), dtype=np.uint8)
    padded[:, :length] = messages
    padded[:, -1] = length & 0xFF  # the last word ends with the length's low byte
    words = padded.view("<u8").astype(np.uint64)
    k0, k1 = (int(k) for k in np.frombuffer(key, dtype="<u8"))
    halves = (k0, k1, k0, k1)
    v = [
        np.full(rows, k ^ c, dtype=np.uint64)
        for k, c in zip(halves, SIPHASH_CONSTANTS, strict=True)
    ]
    for block in range(words.shape[1]):
        word = words[:, block]
        v[3] ^= word
        _sip_rounds(v, 2)
        v[0] ^= word
    v[2] ^= np.uint64(0xFF)
    _sip_rounds(v, 4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


@lru_cache(maxsize=8)
def near_token_key(key: bytes) -> bytes:
    """The 16-byte SipHash key of near tokens: HMAC-SHA256 of 'near_tokens' under the key."""
    return hmac.digest(key, b"near_tokens", "sha256")[:16]


def masked_forms(field: str, recorded: np.ndarray, position: int, width: int) -> np.ndarray:
    """The messages 'field|position|masked' of equal-length identifiers (uint8 rows): each with
    `width` characters from `position` replaced by NEAR_MASK; for width 2 the two characters
    follow in sorted order ('|' and the pair), so a transposition hashes alike."""
    rows, length = recorded.shape
    head = np.frombuffer(f"{field}|{position}|".encode(), dtype=np.uint8)
    parts = [
        np.broadcast_to(head, (rows, len(head))),
        recorded[:, :position],
        np.full((rows, width), ord(NEAR_MASK), dtype=np.uint8),
        recorded[:, position + width :],
    ]
    if width == 2:
        pair = recorded[:, position : position + 2]
        bar = np.full((rows, 1), ord("|"), dtype=np.uint8)
        parts += [bar, pair.min(axis=1, keepdims=True), pair.max(axis=1, keepdims=True)]
    return np.concatenate(parts, axis=1)


def hex_strings(tokens: np.ndarray) -> pa.Array:
    """One string per row of a uint64 matrix: its tokens as 16 hex digits each (big-endian),
    end to end."""
    rows, count = tokens.shape
    octets = tokens.astype(">u8").view(np.uint8).reshape(rows, 8 * count)
    text = HEX_PAIRS[octets].reshape(rows, 16 * count)
    offsets = np.arange(rows + 1, dtype=np.int32) * (16 * count)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    return pa.Array.from_buffers(pa.string(), rows, buffers)


def near_token_column(
    recorded: Sequence[str | None], key: bytes, field: str, width: int
) -> pa.Array:
    """Per recorded identifier (null: None), its near tokens (width 1) or transposition tokens
    (width 2), in position order, 16 hex digits each: the SipHash-2-4 (key near_token_key) of
    masked_forms at each position in turn. Positions are those of the identifier's UTF-8 bytes
    (its characters: identifiers are ASCII); identifiers are hashed in groups of one length.

    Near tokens: equal values share every token; values of the same length one character apart
    share exactly one (the position where they differ); values further apart, or of different
    lengths, share none. Transposition tokens: two values of the same length share the token of
    position i exactly when they are equal outside positions i and i + 1 and hold the same two
    characters there: the same value, or one with those two characters transposed (2062273 and
    2026273). Twins' consecutive NHS numbers never share one: the ninth digits differ by one
    and the check digits by two. Without the key no token can be computed, so none can be
    reversed by trying the 10^10 NHS numbers; what two records' tokens reveal is only that
    their numbers are equal, one character apart, transposed, or none of these."""
    encoded = [None if value is None else value.encode() for value in recorded]
    lengths = np.array([-1 if value is None else len(value) for value in encoded])
    subkey = near_token_key(key)
    parts, order = [], []
    for length in np.unique(lengths[lengths >= width]):
        rows = np.flatnonzero(lengths == length)
        matrix = np.frombuffer(b"".join(encoded[r] for r in rows), dtype=np.uint8)
        matrix = matrix.reshape(len(rows), int(length))
        tokens = [
            siphash24(subkey, masked_forms(field, matrix, position, width))
            for position in range(int(length) - width + 1)
        ]
        parts.append(hex_strings(np.column_stack(tokens)))
        order.append(rows)
    missing = np.flatnonzero(lengths < width)
    parts.append(pa.nulls(len(missing), pa.string()))
    order.append(missing)
    combined = pa.concat_arrays(parts)
    position_of = np.empty(len(encoded), dtype=np.int64)
    position_of[np.concatenate(order)] = np.arange(len(encoded))
    return combined.take(pa.array(position_of))


def string_bytes(text: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values end to end, as uint8 (no copy)."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)
    offsets = offsets[text.offset : text.offset + len(text) + 1]
    return np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]


def near_tokens_to_array(
    values: Sequence[str | None] | pa.Array | pa.ChunkedArray | pd.Series, positions: int
) -> np.ndarray:
    """uint64 matrix (rows, positions) of near-token strings, one 64-bit token per position.

    A missing value, and the positions a shorter value lacks, hold MISSING_NEAR_TOKEN; tokens
    beyond `positions` are dropped (they belong to a number of the wrong length, which shares
    no token with one of the right length anyway). ValueError for characters other than hex."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    array = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
    matrix = np.empty((len(array), positions), dtype=np.uint64)
    for start in range(0, len(array), NEAR_TOKEN_CHUNK_ROWS):  # bounds the text copies made
        chunk = array.slice(start, NEAR_TOKEN_CHUNK_ROWS)
        matrix[start : start + len(chunk)] = near_token_rows(chunk, positions)
    return matrix


def near_token_rows(array: pa.Array, positions: int) -> np.ndarray:
    """near_tokens_to_array of one slice of values, as big-endian 64-bit words (a view of the
    parsed bytes; assigning them into a uint64 matrix converts them)."""
    width = positions * NEAR_TOKEN_HEX
    text = pc.fill_null(array.cast(pa.string()), "")
    text = pc.utf8_slice_codeunits(pc.utf8_rpad(text, width, "0"), 0, width)
    ascii_codes = string_bytes(text)
    if ascii_codes.size != len(array) * width:  # a multi-byte character
        raise ValueError("near tokens must be hex digits only")
    nibbles = HEX_VALUES[ascii_codes].reshape(len(array), width)
    if (nibbles > 15).any():
        raise ValueError("near tokens must be hex digits only")
    octets = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])
    return octets.view(">u8")


def near_token_agreement(
    left: np.ndarray,
    right: np.ndarray,
    left_rows: np.ndarray | None = None,
    right_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Per pair, the number of positions whose near tokens are equal (int8), -1 where either
    side has no tokens. Pairs are left[left_rows[k]] and right[right_rows[k]] (all rows in
    order when not given), compared one position at a time so no (pairs, positions) matrix
    is gathered: millions of pairs cost a few bytes each."""
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"near-token matrices differ in positions: {left.shape} {right.shape}")
    li = np.arange(len(left)) if left_rows is None else np.asarray(left_rows)
    ri = np.arange(len(right)) if right_rows is None else np.asarray(right_rows)
    if li.shape != ri.shape:
        raise ValueError(f"pair index arrays differ in length: {li.shape} and {ri.shape}")
    agree = np.zeros(len(li), dtype=np.int8)
    for position in range(left.shape[1]):
        a, b = left[:, position][li], right[:, position][ri]
        agree += (a == b) & (a != MISSING_NEAR_TOKEN)
    missing = (left == MISSING_NEAR_TOKEN).all(axis=1)[li]
    missing |= (right == MISSING_NEAR_TOKEN).all(axis=1)[ri]
    agree[missing] = -1
    return agree


# --- edit tokens of names ------------------------------------------------------------------


def deletion_forms(name: str) -> list[str]:
    """The name (cut to EDIT_TOKEN_LETTERS letters) and, for names of three letters or more, each
    form with one letter deleted, distinct. Two names one keying error apart share a form (a
    letter inserted, deleted or substituted, or two adjacent letters transposed: REID and REYID
    share REID, SANA and SAAN share SAN); so do two names that each lose one letter to become
    the same (CIAN and CANE: CAN), which two keying errors can also give."""
    name = name[:EDIT_TOKEN_LETTERS]
    forms = [name]
    if len(name) >= 3:
        forms += [name[:i] + name[i + 1 :] for i in range(len(name))]
    return list(dict.fromkeys(forms))


def edit_token_column(names: Sequence[str | None], key: bytes, field: str) -> pa.Array:
    """Per raw name (null: None), its edit tokens, 16 hex digits each in ascending order: the
    SipHash-2-4 (key near_token_key) of 'field_edit|form' for each of its deletion_forms, hashed
    in groups of one length. Two names share a token when they are equal, one keying error
    apart, or one letter short of the same form each (deletion_forms); that is all the tokens
    reveal beyond the name token (and, by their number, about how long the name is, as its
    Bloom filter does)."""
    normalised = [normalise_name(value) for value in names]
    owners, messages = [], []
    for row, name in enumerate(normalised):
        if name is not None:
            for form in deletion_forms(name):
                owners.append(row)
                messages.append(f"{field}_edit|{form}".encode())
    if not messages:
        return pa.nulls(len(names), pa.string())
    owner = np.array(owners, dtype=np.int64)
    lengths = np.array([len(m) for m in messages])
    hashed = np.zeros(len(messages), dtype=np.uint64)
    subkey = near_token_key(key)
    for length in np.unique(lengths):
        at = np.flatnonzero(lengths == length)
        matrix = np.frombuffer(b"".join(messages[i] for i in at), dtype=np.uint8)
        hashed[at] = siphash24(subkey, matrix.reshape(len(at), int(length)))
    order = np.lexsort((hashed, owner))
    owner, text = owner[order], hex_strings(hashed[order].reshape(-1, 1)).to_pylist()
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    joined: list[str | None] = [None] * len(names)
    for start, stop in zip(starts, [*starts[1:], len(owner)], strict=True):
        joined[int(owner[start])] = "".join(text[start:stop])
    return pa.array(joined, type=pa.string())


def edit_columns(values: Sequence[str | None], key: bytes, field: str) -> Derived:
    """The edit-token column of raw forenames or surnames (edit_token_column)."""
    return {f"{field}_edit_tokens": edit_token_column(values, key, field)}


def edit_token_overlap(
    left: np.ndarray, right: np.ndarray, left_rows: np.ndarray, right_rows: np.ndarray
) -> np.ndarray:
    """Per pair left[left_rows[k]], right[right_rows[k]] of edit-token matrices (uint64, rows of
    tokens padded with MISSING_NEAR_TOKEN), True where the two rows share a token."""
    a, b = left[left_rows], right[right_rows]
    shared = np.zeros(len(a), dtype=bool)
    for position in range(a.shape[1]):
        column = a[:, position]
        shared |= ((column[:, None] == b).any(axis=1)) & (column != MISSING_NEAR_TOKEN)
    return shared


# --- columns -------------------------------------------------------------------------------


def derived_values(values: list[Any], derive: Callable[[Any], Values]) -> Derived:
    """The columns derived from each of values, in their order."""
    rows = [derive(value) for value in values]
    return {name: pa.array([row[name] for row in rows], type=pa.string()) for name in derive(None)}


def map_distinct(
    column: pa.ChunkedArray | pa.Array, derive_columns: Callable[[list[Any]], Derived]
) -> Derived:
    """Columns derived once per distinct value of a column, by a function from the list of
    distinct values to columns in their order; a null gets what derive_columns([None]) gives."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = array.dictionary_encode()
    derived = derive_columns(encoded.dictionary.to_pylist())
    of_null = derive_columns([None]) if array.null_count else {}
    columns: Derived = {}
    for name, values in derived.items():
        taken = values.take(encoded.indices)
        null_value = of_null[name][0].as_py() if of_null else None
        columns[name] = taken.fill_null(null_value) if null_value is not None else taken
    return columns


def map_unique(column: pa.ChunkedArray | pa.Array, derive: Callable[[Any], Values]) -> Derived:
    """Columns derived once per distinct value of a column, value by value (nulls get
    derive(None))."""
    return map_distinct(column, partial(derived_values, derive=derive))


def local_id_values(value: str | None, key: bytes, agency: str) -> Values:
    """The person token of a local id (surrounding spaces ignored); None when there is none."""
    local_id = (value or "").strip()
    return {"person_token": person_token(key, agency, local_id) if local_id else None}


def identifier_values(
    value: str | None, key: bytes, prefix: str, field: str, is_valid: Callable[[str], bool]
) -> Values:
    """Status of an NHS number or UPN, and its token when valid."""
    status = identifier_status(value, is_valid)
    normalised = normalise_identifier(value)
    valid = status == VALID and normalised is not None
    return {
        f"{prefix}_token": token(key, field, normalised) if valid else None,
        f"{prefix}_status": status,
    }


def near_values(value: str | None, key: bytes, prefix: str) -> Values:
    """Near tokens of one NHS number or UPN as recorded, valid or not (field '<prefix>_near'),
    and its transposition tokens (field '<prefix>_near2'); see near_columns."""
    return {name: array[0].as_py() for name, array in near_columns([value], key, prefix).items()}


def near_columns(values: Sequence[str | None], key: bytes, prefix: str) -> Derived:
    """The near and transposition token columns of raw NHS numbers or UPNs (null where nothing
    was recorded), hashed column-wise (near_token_column)."""
    recorded = [recorded_identifier(value) for value in values]
    # a recorded number has two different characters, so at least two positions
    return {
        f"{prefix}_near_tokens": near_token_column(recorded, key, f"{prefix}_near", 1),
        f"{prefix}_near2_tokens": near_token_column(recorded, key, f"{prefix}_near2", 2),
    }


def nhs_number_values(value: str | None, key: bytes) -> Values:
    """Token and status of an NHS number, and its near tokens."""
    return nhs_token_values(value, key) | near_values(value, key, "nhs")


def upn_values(value: str | None, key: bytes) -> Values:
    """Token and status of a UPN, and its near tokens."""
    return upn_token_values(value, key) | near_values(value, key, "upn")


def nhs_token_values(value: str | None, key: bytes) -> Values:
    """Token and status of an NHS number."""
    return identifier_values(value, key, "nhs", "nhs_number", is_valid_nhs_number)


def upn_token_values(value: str | None, key: bytes) -> Values:
    """Token and status of a UPN."""
    return identifier_values(value, key, "upn", "upn", is_valid_upn)


def address_values(value: str | None, key: bytes) -> Values:
    """Keyed Bloom filter of the normalised address lines, with address_bloom_hashes hashes."""
    address = normalise_address(value)
    if address is None:
        return {"address_bloom": None}
    encoded = bloom_encode(key, "address", address, LINK.bloom_bits, LINK.address_bloom_hashes)
    return {"address_bloom": encoded}


def name_values(value: str | None, key: bytes, field: str) -> Values:
    """Tokens, phonetic token, Bloom filter and edit tokens of a forename or surname."""
    edits = edit_columns([value], key, field)
    return name_token_values(value, key, field) | {k: v[0].as_py() for k, v in edits.items()}


def name_token_values(value: str | None, key: bytes, field: str) -> Values:
    """Tokens, phonetic token and Bloom filter of a forename or surname."""
    name = normalise_name(value)
    derived: Values = {
        f"{field}_token": None if name is None else token(key, field, name),
        f"{field}_phonetic_token": (
            None if name is None else token(key, f"{field}_phonetic", phonetic_code(name))
        ),
        f"{field}_bloom": None if name is None else bloom_encode(key, field, name),
    }
    if field == "forename":
        # Same token field as forename_token: BILL's alt token equals WILLIAM's forename token.
        alt = None if name is None else token(key, field, canonical_forename(name))
        derived["forename_alt_token"] = alt
    return derived


def name_pair_values(value: str | None, key: bytes) -> Values:
    """The token of a record's two names as an unordered pair, from 'forename<SEP>surname':
    HMAC of the sorted normalised names (field 'name_pair'), so a forename and surname recorded
    the wrong way round agree on it; None when either name is missing."""
    forename, _, surname = (value or "").partition(PAIR_SEPARATOR)
    names = [normalise_name(forename), normalise_name(surname)]
    if None in names:
        return {"name_pair_token": None}
    return {"name_pair_token": token(key, "name_pair", "|".join(sorted(names)))}


def household_birthday_values(value: str | None, key: bytes) -> Values:
    """The token of a birthday in one household, from 'postcode<SEP>surname<SEP>dob': HMAC of
    the normalised full postcode, surname and the day and month of birth (field
    'household_birthday'), which a date of birth with its year keyed wrong keeps; None when the
    postcode is not a UK postcode or a part is missing. Keyed with the postcode and surname, it
    agrees only within one household, so it says no more of a birthday than the date of birth
    token does: a token of the day and month alone would agree across all children born on one
    day of the year."""
    postcode, surname, dob = ((value or "").split(PAIR_SEPARATOR) + ["", ""])[:3]
    parts, name = normalise_postcode(postcode), normalise_name(surname)
    if parts is None or name is None or len(dob) != len("YYYY-MM-DD"):
        return {"household_birthday_token": None}
    return {
        "household_birthday_token": token(key, "household_birthday", f"{parts[0]}|{name}|{dob[5:]}")
    }


def premises_numbers(address: str) -> str | None:
    """The words of normalised address lines that hold a digit, in order ('FLAT 2 10A HIGH ST'
    -> '2 10A'): the house and flat numbers; None when there are none (a house name only)."""
    numbers = [word for word in address.split() if any(c.isdigit() for c in word)]
    return " ".join(numbers) or None


def street_words(address: str) -> str | None:
    """The words of normalised address lines that hold no digit ('FLAT 2 10A HIGH ST' ->
    'FLAT HIGH ST'): the street, the house name, the locality; None when there are none."""
    words = [word for word in address.split() if not any(c.isdigit() for c in word)]
    return " ".join(words) or None


def premises_values(value: str | None, key: bytes) -> Values:
    """The tokens of a record's premises and street, from 'postcode<SEP>address': HMAC of the
    normalised full postcode with the address's numbers (field 'premises'), which two homes in
    one street do not share, and with its other words (field 'street'), which an address with
    its number left out still shares; each None when the postcode is not a UK postcode or the
    address has no such words."""
    postcode, _, address = (value or "").partition(PAIR_SEPARATOR)
    parts = normalise_postcode(postcode)
    lines = normalise_address(address)
    derived: Values = {"premises_token": None, "street_token": None}
    if parts is None or lines is None:
        return derived
    for name, field, words in (
        ("premises_token", "premises", premises_numbers(lines)),
        ("street_token", "street", street_words(lines)),
    ):
        derived[name] = None if words is None else token(key, field, f"{parts[0]}|{words}")
    return derived


def joined_field_columns(
    table: pa.Table, sources: tuple[str, ...], derive: Callable[[Any], Values]
) -> Derived:
    """Columns derived from several raw fields of the table joined by PAIR_SEPARATOR (dob as an
    ISO date), row by row: null where any of them is."""
    values = [
        parse_date(table.column(f))[0] if f == "dob" else table.column(f).combine_chunks()
        for f in sources
    ]
    joined = pc.binary_join_element_wise(*(v.cast(pa.string()) for v in values), PAIR_SEPARATOR)
    return map_unique(joined, derive)


def joined_field_sources(key: bytes) -> dict[tuple[str, ...], Callable[[Any], Values]]:
    """The columns derived from several raw fields each, by their fields: name_pair_token
    (forename and surname), premises_token and street_token (postcode and address),
    household_birthday_token (postcode, surname and date of birth)."""
    return {
        NAME_PAIR_FIELDS: partial(name_pair_values, key=key),
        PREMISES_FIELDS: partial(premises_values, key=key),
        HOUSEHOLD_BIRTHDAY_FIELDS: partial(household_birthday_values, key=key),
    }


def dob_values(value: date | None, key: bytes) -> Values:
    """The full date of birth as a token and its year-month in clear."""
    if value is None:
        return dict.fromkeys(("dob_token", "birth_ym"))
    return {
        "dob_token": token(key, "dob", value.isoformat()),
        "birth_ym": f"{value.year:04d}-{value.month:02d}",
    }


def postcode_values(value: str | None, key: bytes) -> Values:
    """Tokens of the full postcode and its sector; the district in clear."""
    parts = normalise_postcode(value)
    if parts is None:
        return dict.fromkeys(("postcode_token", "postcode_district", "postcode_sector_token"))
    full, district, sector = parts
    return {
        "postcode_token": token(key, "postcode", full),
        "postcode_district": district,
        "postcode_sector_token": token(key, "postcode_sector", sector),
    }


def identity_derivers(key: bytes, agency: str) -> dict[str, Callable[[Any], Values]]:
    """For each raw identity field not kept in clear, the function from one of its values
    (a date for dob, else text) to its pseudonymised values."""
    return {
        "local_id": partial(local_id_values, key=key, agency=agency),
        "nhs_number": partial(nhs_token_values, key=key),  # near tokens: NEAR_TOKEN_PREFIXES
        "upn": partial(upn_token_values, key=key),
        "forename": partial(name_token_values, key=key, field="forename"),  # edit tokens:
        "surname": partial(name_token_values, key=key, field="surname"),  # EDIT_TOKEN_FIELDS
        "dob": partial(dob_values, key=key),
        "postcode": partial(postcode_values, key=key),
        "address": partial(address_values, key=key),
    }


def derive_identity(table: pa.Table, field: str, key: bytes, agency: str) -> Derived:
    """The pseudonymised columns derived value by value from one raw identity field of the
    table (text, or dates for dob); near tokens apart (derive_near_tokens)."""
    column = table.column(field)
    if field in CLEAR_FIELDS:
        return {field: column.combine_chunks().cast(pa.string())}
    derivers = identity_derivers(key, agency)
    if field not in derivers:
        raise ValueError(f"no pseudonymisation is defined for identity field {field!r}")
    column = parse_date(column)[0] if field == "dob" else column.cast(pa.string())
    return map_unique(column, derivers[field])


def derive_near_tokens(table: pa.Table, field: str, key: bytes) -> Derived:
    """The near and transposition token columns of an NHS number or UPN field of the table,
    hashed column-wise (near_columns) rather than value by value."""
    column = table.column(field).cast(pa.string())
    return map_distinct(column, partial(near_columns, key=key, prefix=NEAR_TOKEN_PREFIXES[field]))


def derive_edit_tokens(table: pa.Table, field: str, key: bytes) -> Derived:
    """The edit-token column of a forename or surname field of the table, hashed column-wise
    (edit_columns) once per distinct value."""
    column = table.column(field).cast(pa.string())
    return map_distinct(column, partial(edit_columns, key=key, field=field))


Derivation = tuple[Callable[..., Derived], tuple[Any, ...]]


def identity_derivations(
    table: pa.Table, fields: Sequence[str], key: bytes, agency: str
) -> list[Derivation]:
    """The independent derivations of the pseudonymised columns of the given raw identity
    fields, each a function and its arguments (the table cut to the columns it reads), the
    costliest kinds first: near and edit tokens, then columns of several fields, then one field
    each."""
    near = [
        (derive_near_tokens, (table.select([f]), f, key))
        for f in fields
        if f in NEAR_TOKEN_PREFIXES
    ]
    near += [
        (derive_edit_tokens, (table.select([f]), f, key)) for f in fields if f in EDIT_TOKEN_FIELDS
    ]
    joined = [
        (joined_field_columns, (table.select(list(sources)), sources, derive))
        for sources, derive in joined_field_sources(key).items()
        if set(sources) <= set(fields)
    ]
    single = [(derive_identity, (table.select([f]), f, key, agency)) for f in fields]
    return near + joined + single


def derive_identity_columns(
    table: pa.Table, fields: Sequence[str], key: bytes, agency: str, pool: Executor | None = None
) -> Derived:
    """Every pseudonymised column derived from the given raw identity fields, by name; a column
    of several fields is null throughout unless all of them are among the fields.

    pool: worker processes (e.g. a ProcessPoolExecutor) that run the derivations side by side,
    one per worker at a time (the keyed hashing is pure Python, one core per process); the
    columns are the same as without."""
    derivations = identity_derivations(table, fields, key, agency)
    if pool is None:
        parts = [derive(*arguments) for derive, arguments in derivations]
    else:
        futures = [pool.submit(derive, *arguments) for derive, arguments in derivations]
        parts = [future.result() for future in futures]
    derived: Derived = {}
    for sources, derive in joined_field_sources(key).items():
        if not set(sources) <= set(fields):
            derived |= {name: pa.nulls(table.num_rows, pa.string()) for name in derive(None)}
    for part in parts:
        derived |= part
    return derived


# --- delimited text ----------------------------------------------------------------------------

ROW_COLUMN = "_row"  # the 1-based number of each kept row among the file's data rows
FIELD_COUNT, DUPLICATE_HEADER = "field_count", "duplicate_header"
DELIMITERS = (",", ";", "\t", "|")
UTF8_BOM = b"\xef\xbb\xbf"
HEADER_NAME = re.compile(r"^[a-z_][a-z0-9_ ]*$")
ISO_DATE = r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})$"
UK_DATE = r"^(?P<day>\d{1,2})/(?P<month>\d{1,2})/(?P<year>\d{4})$"


class FileRejected(ValueError):
    """A whole file cannot be taken: empty, undecodable, truncated, or without a header."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class RowProblem:
    """A structural problem of one data row (1-based), which keeps it out of the table. The
    detail never quotes the row: it may hold identifiers."""

    row: int
    rule: str
    detail: str


@dataclass(frozen=True)
class TextFormat:
    """How a delimited text file was written: 'utf-8-sig' (UTF-8 with BOM), 'utf-8' or
    'cp1252' (Windows-1252; a file of ASCII only reads as 'utf-8'), and the field delimiter."""

    encoding: str
    delimiter: str


@dataclass(frozen=True)
class DelimitedText:
    """A delimited text file read as text: every column a string (null when empty) plus
    ROW_COLUMN, in file order; the rows left out, each with its problem; how it was written."""

    table: pa.Table
    problems: tuple[RowProblem, ...]
    text_format: TextFormat

    @property
    def rows_delivered(self) -> int:
        """Every data row of the file: the rows kept and the rows with a problem."""
        return self.table.num_rows + len(self.problems)


def decode_to_utf8(path: Path, data: bytes) -> tuple[bytes, str]:
    """The file's text as UTF-8 bytes without BOM, and its encoding: UTF-8 with or without
    BOM, else Windows-1252; FileRejected for bytes that are neither (or NUL bytes)."""
    if b"\x00" in data:
        raise FileRejected(path, "undecodable bytes: NUL bytes, so binary or UTF-16, not text")
    if data.startswith(UTF8_BOM):
        body = data[len(UTF8_BOM) :]
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise FileRejected(
                path, f"undecodable bytes: has a UTF-8 BOM but byte {error.start} is not UTF-8"
            ) from error
        return body, "utf-8-sig"
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252").encode("utf-8"), "cp1252"
    except UnicodeDecodeError as error:
        raise FileRejected(
            path,
            f"undecodable bytes: neither UTF-8 nor Windows-1252 "
            f"(byte 0x{data[error.start]:02x} at offset {error.start})",
        ) from error


def first_line(text: bytes) -> str:
    """The first line of UTF-8 text, without its line ending."""
    return text.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")


def sniff_delimiter(header: str) -> str:
    """The candidate delimiter that splits the header line into the most fields (comma on a
    tie, or when none splits it)."""
    counts = {d: len(next(csv.reader([header], delimiter=d))) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], -DELIMITERS.index(d)))


def header_names(path: Path, header: str, delimiter: str) -> list[str]:
    """The raw header fields; FileRejected unless every name, stripped and lower-cased, looks
    like a column name and none repeats."""
    raw = next(csv.reader([header], delimiter=delimiter), [])
    names = [name.strip().lower() for name in raw]
    if not any(names):
        raise FileRejected(path, "no recognisable header: the first line has no column names")
    odd = [name for name in names if not HEADER_NAME.match(name)]
    if odd:
        raise FileRejected(
            path, f"no recognisable header: {odd[:3]} are not column names (no header line?)"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or ROW_COLUMN in names:
        raise FileRejected(
            path, f"no recognisable header: repeated or reserved column names {repeated}"
        )
    return raw


def parse_rows(
    path: Path, text: bytes, raw_names: list[str], delimiter: str
) -> tuple[pa.Table, list[pacsv.InvalidRow]]:
    """Every data row with the header's field count, as strings; and the rows without it."""
    invalid: list[pacsv.InvalidRow] = []

    def skip(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(text),
            read_options=pacsv.ReadOptions(use_threads=False, column_names=raw_names, skip_rows=1),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=skip
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(raw_names, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid as error:
        raise FileRejected(path, f"cannot be parsed as delimited text: {error}") from error
    if any(row.number is None for row in invalid):
        raise RuntimeError(f"{path}: the CSV reader did not number its invalid rows")
    return table, invalid


def check_not_truncated(path: Path, text: bytes, table: pa.Table, invalid: list) -> None:
    """FileRejected when the file stops mid-row: no final newline and a last row that is
    short of fields or inside an open quote."""
    if text.endswith((b"\n", b"\r")):
        return
    last = invalid[-1] if invalid else None
    records = table.num_rows + len(invalid)
    if (
        last is not None
        and last.number - 1 == records
        and last.actual_columns < len(table.column_names)
    ):
        raise FileRejected(
            path,
            f"truncated: the last row ({records}) has {last.actual_columns} of "
            f"{last.expected_columns} fields and the file does not end with a newline",
        )
    if text.count(b'"') % 2:
        raise FileRejected(
            path, "truncated: the file ends inside a quoted value, without a final newline"
        )


def duplicate_header_rows(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """Mask of rows whose every value, stripped and lower-cased, is its column's name."""
    same = np.zeros(table.num_rows, dtype=bool)
    if not names:
        return same
    # Cheap first pass on one column; the exact test runs on the few rows it lets through.
    first = pc.match_substring(table.column(0), names[0], ignore_case=True)
    candidates = np.flatnonzero(pc.coalesce(first, False).to_numpy(zero_copy_only=False))
    if not len(candidates):
        return same
    rows = table.take(pa.array(candidates))
    found = np.ones(len(candidates), dtype=bool)
    for column, name in zip(rows.columns, names, strict=True):
        values = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        found &= pc.coalesce(pc.equal(values, name), False).to_numpy(zero_copy_only=False)
    same[candidates[found]] = True
    return same


def without_rows(table: pa.Table, positions: np.ndarray) -> pa.Table:
    """The table without the rows at the (sorted) positions, as zero-copy slices."""
    if not len(positions):
        return table
    starts = np.concatenate([[0], positions + 1])
    stops = np.concatenate([positions, [table.num_rows]])
    return pa.concat_tables(table.slice(a, b - a) for a, b in zip(starts, stops, strict=True))


def read_delimited_text(path: Path) -> DelimitedText:
    """Read a delimited text file as text, whatever its encoding (UTF-8 with or without BOM,
    Windows-1252) and delimiter (comma, semicolon, tab, pipe, sniffed from the header).

    Header names are stripped and lower-cased. Rows with the wrong number of fields and rows
    repeating the header are left out and reported as RowProblem ('field_count',
    'duplicate_header'); every kept row keeps its data row number in ROW_COLUMN. A file that
    is empty, has no data rows, cannot be decoded, is truncated or has no header raises
    FileRejected.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data or data.isspace():
        raise FileRejected(path, f"empty file ({len(data)} bytes): no header and no data rows")
    text, encoding = decode_to_utf8(path, data)
    header = first_line(text)
    delimiter = sniff_delimiter(header)
    raw_names = header_names(path, header, delimiter)
    names = [name.strip().lower() for name in raw_names]
    table, invalid = parse_rows(path, text, raw_names, delimiter)
    check_not_truncated(path, text, table, invalid)
    records = table.num_rows + len(invalid)
    if records == 0:
        raise FileRejected(path, "no data rows: the file holds a header only")
    numbered = np.ones(records, dtype=bool)
    numbered[[row.number - 2 for row in invalid]] = False  # InvalidRow.number counts the header
    rows = np.flatnonzero(numbered) + 1
    table = table.rename_columns(names)
    repeated = duplicate_header_rows(table, names)
    problems = [
        RowProblem(
            int(row.number - 1),
            FIELD_COUNT,
            f"{row.actual_columns} field{'s' if row.actual_columns != 1 else ''} where the "
            f"header has {row.expected_columns}",
        )
        for row in invalid
    ]
    problems += [
        RowProblem(int(row), DUPLICATE_HEADER, "the row repeats the header")
        for row in rows[repeated]
    ]
    table = without_rows(table, np.flatnonzero(repeated))
    table = table.append_column(ROW_COLUMN, pa.array(rows[~repeated]))
    return DelimitedText(
        table=table,
        problems=tuple(sorted(problems, key=lambda p: p.row)),
        text_format=TextFormat(encoding, delimiter),
    )


def read_delimited(path: Path) -> tuple[pa.Table, list[RowProblem]]:
    """read_delimited_text as (table with ROW_COLUMN, structural row problems)."""
    result = read_delimited_text(path)
    return result.table, list(result.problems)


def parse_date(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Dates as date32 (null when missing or unparseable), and a mask of the values present
    but unparseable. Text may be ISO (YYYY-MM-DD) or UK (DD/MM/YYYY, D/M/YYYY); spaces around
    it are ignored; impossible dates (31/02/2024, 2024-13-01) are unparseable; date columns
    pass through."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_date(array.type) or pa.types.is_timestamp(array.type):
        return array.cast(pa.date32(), safe=False), np.zeros(len(array), dtype=bool)
    text = pc.utf8_trim_whitespace(array.cast(pa.string()))
    present = pc.coalesce(pc.not_equal(text, ""), False).to_numpy(zero_copy_only=False)
    iso, uk = pc.extract_regex(text, ISO_DATE), pc.extract_regex(text, UK_DATE)
    parts = {}
    for part in ("year", "month", "day"):
        # struct_field, not .field(): it keeps the nulls of rows the pattern did not match
        found = pc.coalesce(pc.struct_field(iso, part), pc.struct_field(uk, part))
        parts[part] = found.cast(pa.int64())
    matched = pc.is_valid(parts["year"]).to_numpy(zero_copy_only=False)
    year, month, day = (
        pc.fill_null(parts[p], 0).to_numpy(zero_copy_only=False) for p in ("year", "month", "day")
    )
    in_range = matched & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    months = ((year - 1970) * 12 + np.where(in_range, month - 1, 0)).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(in_range, day - 1, 0)
    valid = in_range & (days.astype("datetime64[M]") == months)
    parsed = pa.array(days.astype(np.int64).astype(np.int32), type=pa.date32(), mask=~valid)
    return parsed, present & ~valid


# --- tables and files ------------------------------------------------------------------------

OutputFormat = Literal["parquet", "csv"]
OUTPUT_SUFFIXES: dict[str, str] = {"parquet": ".parquet", "csv": ".csv"}


def check_columns(names: Sequence[str], contract: Contract, source: str) -> None:
    """Raise ValueError unless the columns are exactly the contract's raw columns."""
    problem = column_mismatch(contract.name, [c.name for c in contract.raw_columns], names)
    if problem:
        raise ValueError(f"{source}: {problem}")


def landed_schema(contract: Contract) -> pa.Schema:
    """What an agency delivers: the contract's pseudonymised columns, identity as derived and
    payload as delivered text, all nullable; ingest types the payload and quarantines rows."""
    return pa.schema(
        pa.field(c.name, c.arrow_type if c.source else pa.string(), nullable=True)
        for c in contract.pseudonymised_columns
    )


def payload_as_text(column: pa.ChunkedArray, kind: str) -> pa.Array:
    """A payload column as text; dates that parse are written ISO, anything else as is."""
    text = column.combine_chunks().cast(pa.string())
    if kind != "date":
        return text
    parsed, _ = parse_date(text)
    return pc.coalesce(parsed.cast(pa.string()), text)


def pseudonymise_table(table: pa.Table, contract: Contract, key: bytes) -> pa.Table:
    """A raw extract (text or typed columns; ROW_COLUMN ignored) as landed_schema(contract):
    identity tokenised, payload passed through as text. Row-level problems never raise: a
    missing or unparseable identity value gives null tokens, codes pass through as given."""
    require_key(key)
    names = [n for n in table.column_names if n != ROW_COLUMN]
    check_columns(names, contract, f"extract {contract.name}")
    derived = derive_identity_columns(table, contract.identity, key, contract.agency)
    arrays = [
        derived[c.name] if c.source else payload_as_text(table.column(c.name), c.type)
        for c in contract.pseudonymised_columns
    ]
    return pa.Table.from_arrays(arrays, schema=landed_schema(contract))


def pseudonymise_identity_frame(
    frame: pd.DataFrame | pa.Table,
    agency: str,
    key: bytes,
    fields: Sequence[str] | None = None,
    pool: Executor | None = None,
) -> pa.Table:
    """The pseudonymised identity columns of raw identity rows, for callers holding identity
    rows rather than extract files (benchmarks): the columns derived from `fields` (default:
    every raw identity field the frame has) in identity.json order, then la_code as text when
    the frame has it; the same derivers as pseudonymise_file, so the same tokens. Other
    columns are dropped; ValueError for a field that is unknown or not in the frame.

    pool: worker processes (e.g. a ProcessPoolExecutor) to run the derivations side by side
    (derive_identity_columns); the output is identical with or without."""
    require_key(key)
    if agency not in AGENCIES:
        raise ValueError(f"unknown agency {agency!r}; expected one of {AGENCIES}")
    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    known = [c.name for c in identity_columns("raw")]
    chosen = [n for n in known if n in table.column_names] if fields is None else list(fields)
    unknown = [f for f in chosen if f not in known]
    absent = [f for f in chosen if f in known and f not in table.column_names]
    if unknown or absent:
        raise ValueError(
            f"identity fields {unknown} are not in identity.json; {absent} are not in the frame"
        )
    derived = derive_identity_columns(table, chosen, key, agency, pool)
    columns = [c for c in identity_columns("pseudonymised") if c.source in chosen]
    arrays = [derived[c.name] for c in columns]
    schema = [pa.field(c.name, c.arrow_type) for c in columns]
    if "la_code" in table.column_names:
        arrays.append(table.column("la_code").combine_chunks().cast(pa.string()))
        schema.append(pa.field("la_code", pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(schema))


def read_raw_extract(path: Path, contract: Contract) -> DelimitedText:
    """A raw delimited extract as text in the contract's column order (plus ROW_COLUMN), with
    its structural row problems; ValueError naming the file when the columns do not match."""
    result = read_delimited_text(path)
    names = [n for n in result.table.column_names if n != ROW_COLUMN]
    check_columns(names, contract, str(path))
    columns = [c.name for c in contract.raw_columns]
    return DelimitedText(
        result.table.select([*columns, ROW_COLUMN]), result.problems, result.text_format
    )


@dataclass(frozen=True)
class SourceReport:
    """What pseudonymising one raw extract at source did: every delivered row is written or
    left out with a structural problem (rows_in = rows_out + len(problems))."""

    source: str  # the raw file's name
    extract: str
    text_format: TextFormat
    rows_in: int
    rows_out: int
    problems: tuple[RowProblem, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def __str__(self) -> str:
        """E.g. '998 of 1000 rows pseudonymised; left out: field_count row 17;
        duplicate_header row 500'."""
        done = f"{self.rows_out} of {self.rows_in} rows pseudonymised"
        rows: dict[str, list[str]] = {}
        for problem in self.problems:
            rows.setdefault(problem.rule, []).append(str(problem.row))
        left_out = "; ".join(
            f"{rule} row{'s' if len(found) > 1 else ''} {', '.join(found)}"
            for rule, found in rows.items()
        )
        return f"{done}; left out: {left_out}" if left_out else done


def report_path(dst: Path) -> Path:
    """Where pseudonymise_file writes its SourceReport: <extract>.source.json beside dst."""
    return dst.with_name(f"{dst.stem}.source.json")


def write_atomically(dst: Path, write: Callable[[str], None]) -> None:
    """Call write(temporary path) beside dst, then rename the temporary file over dst."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, dst)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_parquet_atomically(table: pa.Table, dst: Path) -> None:
    write_atomically(dst, partial(pq.write_table, table))


def write_csv_atomically(table: pa.Table, dst: Path) -> None:
    """UTF-8, comma separated, header line, empty for null."""
    write_atomically(dst, partial(pacsv.write_csv, table))


def write_text_atomically(text: str, dst: Path) -> None:
    write_atomically(dst, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def pseudonymise_file(src: Path, dst: Path, contract_name: str, key: bytes) -> SourceReport:
    """Pseudonymise one raw delimited extract into dst (CSV when dst ends in .csv, else
    Parquet) and write its SourceReport beside it. Rows with structural problems are left
    out and reported; file-level problems raise FileRejected, wrong columns ValueError."""
    require_key(key)
    extract = contracts().get(contract_name)
    if extract is None:
        raise ValueError(f"{src}: unknown extract {contract_name!r}")
    raw = read_raw_extract(src, extract)
    table = pseudonymise_table(raw.table, extract, key)
    if Path(dst).suffix == OUTPUT_SUFFIXES["csv"]:
        write_csv_atomically(table, Path(dst))
    else:
        write_parquet_atomically(table, Path(dst))
    report = SourceReport(
        source=Path(src).name,
        extract=contract_name,
        text_format=raw.text_format,
        rows_in=raw.rows_delivered,
        rows_out=table.num_rows,
        problems=raw.problems,
    )
    write_text_atomically(report.to_json(), report_path(Path(dst)))
    return report


def output_format_of(agency: str, output_format: OutputFormat | Mapping[str, OutputFormat]) -> str:
    """The landed format of an agency: one format for all, or per agency (default Parquet)."""
    chosen = output_format if isinstance(output_format, str) else output_format.get(agency)
    chosen = chosen or "parquet"
    if chosen not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"unknown output format {chosen!r}; expected one of {list(OUTPUT_SUFFIXES)}"
        )
    return chosen


def pseudonymise_tree(
    raw_dir: Path,
    landing_dir: Path,
    key: bytes,
    output_format: OutputFormat | Mapping[str, OutputFormat] = "parquet",
) -> list[Path]:
    """raw/<agency>/<period>/<la_code>/<extract>.csv -> landing/.../<extract>.parquet (or
    .csv: output_format is one format, or a format per agency)."""
    require_key(key)
    written: list[Path] = []
    for src in sorted(Path(raw_dir).glob("*/*/*/*.csv")):
        agency, period, la_code = src.relative_to(raw_dir).parts[:3]
        Period(period)  # raises ValueError for a folder that is not an academic year
        extract = contracts().get(src.stem)
        if extract is None or extract.agency != agency:
            raise ValueError(f"{src}: {src.stem!r} is not an extract of agency {agency!r}")
        suffix = OUTPUT_SUFFIXES[output_format_of(agency, output_format)]
        dst = Path(landing_dir) / agency / period / la_code / f"{src.stem}{suffix}"
        pseudonymise_file(src, dst, src.stem, key)
        written.append(dst)
    return written
