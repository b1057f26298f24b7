"""Pseudonymisation at source: what each agency runs before anything leaves it.

Privacy design. Every identifier (local id, NHS number, UPN, names, full date of birth,
postcode) becomes a keyed HMAC-SHA256 token of its normalised value, tagged with its field so
equal values in different fields differ; only birth year-month, sex, ethnicity and postcode
district stay in clear. Approximate name agreement uses field-level Bloom filters of name
bigrams (CLK style, Schnell et al. 2009). Known attacks: dictionary attacks on unkeyed
encodings, and frequency and pattern-mining attacks that map filter bits back to bigrams or
names (Kuzu et al. 2011; Niedermeyer et al. 2014; Christen et al. 2017, 2018). Mitigations
here: every hash is keyed, so no one without the key can encode candidate names to build a
dictionary; each field has its own filter and derived keys, so no record-level filter pools
bigrams for mining; the key is held by the agencies' data controllers, read from the
environment or a key file, never the repository, and nothing runs without it. The date of
birth has one token (the full date) beside the clear birth year-month: tokens of parts of the
date (the day, or the day and month swapped) would agree across records whose clear months
differ and so reveal the day, and the full date of birth with it. Residual risk: holders of
the output still see token and filter frequencies, so pseudonymised extracts remain personal
data to be kept inside the pipeline.
"""

from __future__ import annotations

import csv
import hmac
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any

import jellyfish
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from joinedup.contracts import Contract, Period, contracts
from joinedup.settings import MIN_KEY_BYTES, LinkSettings, MissingKeyError

NICKNAMES_PATH = Path(__file__).resolve().parent / "data" / "nicknames.csv"
NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
TITLES = frozenset({"MR", "MRS", "MISS", "MS", "MX", "DR", "MASTER"})
POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
NOT_LETTERS = re.compile(r"[^A-Z]")
LINK = LinkSettings()
VALID, INVALID, MISSING = "valid", "invalid", "missing"

Values = dict[str, str | None]
Derived = dict[str, pa.Array]
CLEAR_FIELDS = frozenset({"sex", "ethnicity"})


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


# --- normalisation -------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def normalise_name(value: str | None) -> str | None:
    """Name as A-Z only: accents stripped, uppercase, leading titles dropped; None if empty."""
    if not value:
        return None
    decomposed = unicodedata.normalize("NFKD", value)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    words = letters.replace(".", " ").split()
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


@lru_cache(maxsize=1 << 16)
def token(key: bytes, field: str, value: str) -> str:
    """HMAC-SHA256 (64 lowercase hex) of 'field|value': the same value in another field differs."""
    return hmac.digest(key, f"{field}|{value}".encode(), "sha256").hex()


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
    normalised_name: str,
    bits: int = LINK.bloom_bits,
    hashes: int = LINK.bloom_hashes,
) -> str:
    """Keyed Bloom filter of the name's bigrams as hex of bits/8 bytes (bit i: byte i//8,
    bit i%8)."""
    if bits % 8:
        raise ValueError(f"bloom filter width {bits} is not a whole number of bytes")
    mask = 0
    for bigram in bigrams(normalised_name):
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
    left, right = _as_words(a), _as_words(b)
    shared = np.bitwise_count(left & right).sum(axis=1, dtype=np.int64)
    total = np.bitwise_count(left).sum(axis=1, dtype=np.int64)
    total += np.bitwise_count(right).sum(axis=1, dtype=np.int64)
    result = np.zeros(len(total), dtype=np.float64)
    np.divide(2 * shared, total, out=result, where=total > 0)
    return result


# --- columns -------------------------------------------------------------------------------


def map_unique(column: pa.ChunkedArray | pa.Array, derive: Callable[[Any], Values]) -> Derived:
    """Columns derived once per distinct value of a column (nulls get derive(None))."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = array.dictionary_encode()
    rows = [derive(value) for value in encoded.dictionary.to_pylist()]
    derived: Derived = {}
    for name, null_value in derive(None).items():
        values = pa.array([row[name] for row in rows], type=pa.string()).take(encoded.indices)
        fill = null_value is not None and array.null_count > 0
        derived[name] = values.fill_null(null_value) if fill else values
    return derived


def local_id_values(value: str | None, key: bytes, agency: str) -> Values:
    return {"person_token": None if value is None else person_token(key, agency, value)}


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


def name_values(value: str | None, key: bytes, field: str) -> Values:
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


def derive_identity(table: pa.Table, field: str, key: bytes, agency: str) -> Derived:
    """The pseudonymised columns derived from one raw identity field."""
    column = table.column(field)
    if field in CLEAR_FIELDS:
        return {field: column.combine_chunks()}
    derivers: dict[str, Callable[[Any], Values]] = {
        "local_id": partial(local_id_values, key=key, agency=agency),
        "nhs_number": partial(
            identifier_values,
            key=key,
            prefix="nhs",
            field="nhs_number",
            is_valid=is_valid_nhs_number,
        ),
        "upn": partial(
            identifier_values, key=key, prefix="upn", field="upn", is_valid=is_valid_upn
        ),
        "forename": partial(name_values, key=key, field="forename"),
        "surname": partial(name_values, key=key, field="surname"),
        "dob": partial(dob_values, key=key),
        "postcode": partial(postcode_values, key=key),
    }
    if field not in derivers:
        raise ValueError(f"no pseudonymisation is defined for identity field {field!r}")
    return map_unique(column, derivers[field])


# --- tables and files ------------------------------------------------------------------------


def check_columns(names: Sequence[str], contract: Contract, source: str) -> None:
    """Raise ValueError unless the columns are exactly the contract's raw columns."""
    expected = [c.name for c in contract.raw_columns]
    missing = [n for n in expected if n not in names]
    unexpected = [n for n in names if n not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{source}: columns do not match contract {contract.name}: "
            f"missing {missing or 'none'}, unexpected {unexpected or 'none'}"
        )


def check_required(table: pa.Table, schema: pa.Schema, source: str) -> None:
    """Raise ValueError naming every required column that has empty values."""
    empty = {
        f.name: table.column(f.name).null_count
        for f in schema
        if not f.nullable and table.column(f.name).null_count
    }
    if empty:
        detail = ", ".join(f"{name} ({count} rows)" for name, count in empty.items())
        raise ValueError(f"{source}: required columns have empty values: {detail}")


def pseudonymise_table(table: pa.Table, contract: Contract, key: bytes) -> pa.Table:
    """The raw extract as contract.pseudonymised_schema(): identity tokenised, payload as is."""
    require_key(key)
    check_columns(table.column_names, contract, f"extract {contract.name}")
    check_required(table, contract.raw_schema(), f"extract {contract.name}")
    derived: Derived = {}
    for field in contract.identity:
        derived.update(derive_identity(table, field, key, contract.agency))
    schema = contract.pseudonymised_schema()
    arrays = [
        derived[c.name] if c.source else table.column(c.name).cast(c.arrow_type)
        for c in contract.pseudonymised_columns
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def read_raw_extract(path: Path, contract: Contract) -> pa.Table:
    """A raw CSV extract read against contract.raw_schema() (ISO dates, identifiers as text)."""
    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    check_columns(header, contract, str(path))
    schema = contract.raw_schema()
    options = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in schema},
        strings_can_be_null=True,
    )
    try:
        table = pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read as {contract.name}: {error}") from error
    check_required(table, schema, str(path))
    return table.select(schema.names).cast(schema)


def write_parquet_atomically(table: pa.Table, dst: Path) -> None:
    """Write Parquet to a temporary file beside dst, then rename it over dst."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, dst)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def pseudonymise_file(src: Path, dst: Path, contract_name: str, key: bytes) -> int:
    """Pseudonymise one raw CSV extract into Parquet at dst; returns the rows written."""
    require_key(key)
    extract = contracts().get(contract_name)
    if extract is None:
        raise ValueError(f"{src}: unknown extract {contract_name!r}")
    table = pseudonymise_table(read_raw_extract(src, extract), extract, key)
    write_parquet_atomically(table, dst)
    return table.num_rows


def pseudonymise_tree(raw_dir: Path, landing_dir: Path, key: bytes) -> list[Path]:
    """raw/<agency>/<period>/<la_code>/<extract>.csv -> landing/.../<extract>.parquet."""
    require_key(key)
    written: list[Path] = []
    for src in sorted(Path(raw_dir).glob("*/*/*/*.csv")):
        agency, period, la_code = src.relative_to(raw_dir).parts[:3]
        Period(period)  # raises ValueError for a folder that is not an academic year
        extract = contracts().get(src.stem)
        if extract is None or extract.agency != agency:
            raise ValueError(f"{src}: {src.stem!r} is not an extract of agency {agency!r}")
        dst = Path(landing_dir) / agency / period / la_code / f"{src.stem}.parquet"
        pseudonymise_file(src, dst, src.stem, key)
        written.append(dst)
    return written
