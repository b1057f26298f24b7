"""Ingest keeps one immutable, checksummed copy of each delivery and enforces the contract."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from joinedup.contracts import contract
from joinedup.ingest import (
    ContractError,
    LandedFile,
    current_deliveries,
    find_landed,
    ingest_agency,
    ingest_file,
    read_extract,
    sha256_of,
)
from joinedup.pseudonymise import pseudonymise_tree
from joinedup.settings import Settings
from joinedup.synth import generate

PERIOD = "2024-25"
KEY = b"ingest-test-key-" + b"x" * 32


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Settings:
    """A tiny synthetic population, pseudonymised into a landing zone."""
    settings = replace(Settings(), data_dir=tmp_path_factory.mktemp("ingest"))
    generate(settings, period=PERIOD, seed=3, scale=0.02)
    pseudonymise_tree(settings.raw_dir, settings.landing_dir, KEY)
    return settings


@pytest.fixture
def settings(landed: Settings, tmp_path: Path) -> Settings:
    """A fresh data dir per test holding a copy of the landing zone and an empty store."""
    fresh = replace(landed, data_dir=tmp_path / "data")
    shutil.copytree(landed.landing_dir, fresh.landing_dir)
    return fresh


def health_file(settings: Settings) -> LandedFile:
    return next(f for f in find_landed(settings.landing_dir, "health", PERIOD))


def test_finds_every_landed_extract_of_an_agency_across_areas(settings):
    found = find_landed(settings.landing_dir, "education", PERIOD)
    extracts = {f.extract for f in found}
    assert extracts == {"education_census", "education_exclusions", "education_sen2"}
    assert len({f.la_code for f in found}) == 3


def test_ingest_stores_the_delivered_bytes_and_a_contract_typed_copy(settings):
    landed = health_file(settings)
    delivery = ingest_file(landed, settings.store_dir)
    assert delivery.sha256 == sha256_of(landed.path)
    stored = Path(delivery.stored_path)
    delivered = stored.with_name(f"{delivery.sha256}.delivered.parquet")
    assert delivered.read_bytes() == landed.path.read_bytes()
    table = pq.read_table(stored)
    assert table.schema.equals(contract("health_referrals").pseudonymised_schema())
    assert delivery.rows == table.num_rows > 0


def test_the_same_file_delivered_twice_is_stored_once(settings):
    landed = health_file(settings)
    first = ingest_file(landed, settings.store_dir)
    again = ingest_file(landed, settings.store_dir)
    assert again == first
    assert len(list(Path(first.stored_path).parent.glob("*.json"))) == 1


def test_a_corrected_redelivery_becomes_current_and_history_is_kept(settings):
    landed = health_file(settings)
    first = ingest_file(landed, settings.store_dir)
    table = pq.read_table(landed.path)
    pq.write_table(table.slice(0, table.num_rows - 1), landed.path)
    second = ingest_file(landed, settings.store_dir)
    assert second.sha256 != first.sha256
    current = [d for d in current_deliveries(settings.store_dir) if d.la_code == landed.la_code]
    assert current == [second]
    assert Path(first.stored_path).exists()


def test_current_deliveries_cover_every_agency_extract_and_area(settings):
    for agency in ("education", "health", "care"):
        ingest_agency(settings, agency, PERIOD)
    current = current_deliveries(settings.store_dir, PERIOD)
    assert len(current) == 3 * 6
    assert current_deliveries(settings.store_dir, "2023-24") == []


def test_a_missing_column_rejects_the_file_naming_it(settings):
    landed = health_file(settings)
    table = pq.read_table(landed.path).drop_columns(["service"])
    pq.write_table(table, landed.path)
    with pytest.raises(ContractError, match=r"health_referrals.*missing \['service'\]"):
        ingest_file(landed, settings.store_dir)
    assert not settings.store_dir.exists()


def test_an_unexpected_column_rejects_the_file_naming_it(settings):
    landed = health_file(settings)
    table = pq.read_table(landed.path)
    pq.write_table(table.append_column("surname", pa.array(["X"] * table.num_rows)), landed.path)
    with pytest.raises(ContractError, match=r"unexpected \['surname'\]"):
        ingest_file(landed, settings.store_dir)


def test_a_value_that_does_not_cast_rejects_the_file(settings):
    landed = health_file(settings)
    table = pq.read_table(landed.path)
    position = table.schema.get_field_index("contacts_attended")
    bad = pa.array(["many"] * table.num_rows)
    pq.write_table(table.set_column(position, "contacts_attended", bad), landed.path)
    with pytest.raises(ContractError, match="does not cast"):
        ingest_file(landed, settings.store_dir)


def test_an_unknown_extract_name_is_refused(settings):
    landed = health_file(settings)
    landed.path.rename(landed.path.with_name("health_contacts.parquet"))
    with pytest.raises(ContractError, match="unknown extract 'health_contacts'"):
        find_landed(settings.landing_dir, "health", PERIOD)


def test_a_csv_delivery_reads_to_the_same_typed_rows_as_parquet(settings):
    landed = health_file(settings)
    table = pq.read_table(landed.path)
    csv_path = landed.path.with_suffix(".csv")
    pacsv.write_csv(table, csv_path)
    spec = contract("health_referrals")
    assert read_extract(csv_path, spec).equals(read_extract(landed.path, spec))


def test_nothing_landed_is_an_error_naming_the_folder(settings):
    with pytest.raises(ContractError, match="nothing landed"):
        ingest_agency(settings, "care", "2019-20")
