"""Ingest keeps one immutable copy of each delivery, types its rows, and loses none: every row
delivered ends accepted or quarantined, and redeliveries are recognised."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from joinedup.contracts import contract
from joinedup.ingest import (
    ACCEPTED,
    HELD,
    INGESTED,
    REJECTED,
    ROW,
    LandedFile,
    all_deliveries,
    current_deliveries,
    find_landed,
    ingest_file,
    previous_delivery,
    sha256_of,
)
from joinedup.pipeline import DeliveryProblem, export_quarantine, ingest_step, validate_step
from joinedup.pseudonymise import pseudonymise_tree
from joinedup.settings import AGENCIES, Settings
from joinedup.synth import generate

PERIOD = "2024-25"
KEY = b"ingest-test-key-" + b"x" * 32


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Settings:
    """A small synthetic population, pseudonymised into a landing zone."""
    settings = replace(Settings(), data_dir=tmp_path_factory.mktemp("ingest"))
    generate(settings, period=PERIOD, seed=3, scale=0.05)
    pseudonymise_tree(settings.raw_dir, settings.landing_dir, KEY)
    return settings


@pytest.fixture
def settings(landed: Settings, tmp_path: Path) -> Settings:
    """A fresh data dir per test holding a copy of the landing zone and an empty store."""
    fresh = replace(landed, data_dir=tmp_path / "data")
    shutil.copytree(landed.landing_dir, fresh.landing_dir)
    return fresh


def health_file(settings: Settings) -> LandedFile:
    return find_landed(settings.landing_dir, "health", PERIOD)[0]


def ingest_and_validate(settings: Settings, landed: LandedFile):
    delivery = ingest_file(landed, settings.store_dir)
    [summary] = validate_step([delivery.__dict__], settings)
    return summary, current_deliveries(settings.store_dir, PERIOD)


def set_service(path: Path, rows: list[int], value: str) -> None:
    """Rewrite a landed Parquet file with `service` set to value on the given 1-based rows."""
    table = pq.read_table(path)
    services = table.column("service").to_pylist()
    for row in rows:
        services[row - 1] = value
    position = table.schema.get_field_index("service")
    pq.write_table(table.set_column(position, "service", [services]), path)


def test_finds_every_landed_extract_of_an_agency_across_areas(settings):
    found = find_landed(settings.landing_dir, "education", PERIOD)
    assert {f.extract for f in found} == {
        "education_census",
        "education_exclusions",
        "education_sen2",
    }
    assert len({f.la_code for f in found}) == 3


def test_ingest_keeps_the_delivered_bytes_and_types_every_row(settings):
    landed = health_file(settings)
    delivery = ingest_file(landed, settings.store_dir, ingested_by="tester")
    assert (delivery.status, delivery.ingested_by) == (INGESTED, "tester")
    assert delivery.sha256 == sha256_of(landed.path)
    assert Path(delivery.delivered_path).read_bytes() == landed.path.read_bytes()
    typed = pq.read_table(delivery.typed_path)
    expected = contract("health_referrals").pseudonymised_schema()
    assert typed.schema.names == [*expected.names, ROW]
    assert (
        typed.schema.field("referral_received_date").type
        == expected.field("referral_received_date").type
    )
    quarantined = pq.read_table(delivery.quarantine_path).num_rows
    assert delivery.rows_received == pq.read_metadata(landed.path).num_rows
    assert typed.num_rows + quarantined >= delivery.rows_received


def test_every_delivered_row_ends_accepted_or_quarantined(settings):
    """Row accounting over every synthetic delivery, checked against the files themselves."""
    for agency in AGENCIES:
        validate_step(ingest_step(agency, PERIOD, settings), settings)
    deliveries = all_deliveries(settings.store_dir, PERIOD)
    assert len(deliveries) == len(list(settings.landing_dir.rglob("*.parquet")))
    for d in deliveries:
        assert d.status == ACCEPTED
        accepted = pq.read_metadata(d.stored_path).num_rows
        quarantine = pq.read_table(d.quarantine_path)
        quarantined_rows = len(set(quarantine.column("row").to_pylist()))
        assert d.rows_received == pq.read_metadata(d.source_path).num_rows
        assert (accepted, quarantined_rows) == (d.rows_accepted, d.rows_quarantined)
        assert accepted + quarantined_rows == d.rows_received, d.source_path
    assert sum(d.rows_quarantined for d in deliveries) > 0, "the synthetic areas hold bad rows"


def test_the_same_file_delivered_twice_is_stored_once(settings):
    landed = health_file(settings)
    first = ingest_file(landed, settings.store_dir)
    again = ingest_file(landed, settings.store_dir)
    assert again == first
    assert len(all_deliveries(settings.store_dir)) == 1


def test_a_corrected_redelivery_replaces_the_period_and_the_quarantine_shrinks(settings):
    landed = health_file(settings)
    set_service(landed.path, [1, 2, 3], "SALT")
    ingest_and_validate(settings, landed)
    before = export_quarantine("health", PERIOD, settings.work_dir / "q1.csv", settings)
    set_service(landed.path, [1, 2, 3], "SLT")
    ingest_and_validate(settings, landed)
    after = export_quarantine("health", PERIOD, settings.work_dir / "q2.csv", settings)
    assert before - after == 3
    current = [d for d in current_deliveries(settings.store_dir) if d.la_code == landed.la_code]
    assert len(current) == 1 and current[0].sha256 == sha256_of(landed.path)
    assert len(all_deliveries(settings.store_dir)) == 2, "the earlier delivery stays in history"
    exported = pacsv.read_csv(settings.work_dir / "q1.csv")
    assert pc.sum(pc.equal(exported.column("rule"), "codes:service")).as_py() >= 3


def test_a_rejected_redelivery_leaves_the_accepted_one_current(settings):
    landed = health_file(settings)
    first, _ = ingest_and_validate(settings, landed)
    landed.path.write_bytes(b"")
    rejected = ingest_file(landed, settings.store_dir)
    assert rejected.status == REJECTED and "empty" in rejected.reason
    [current] = [d for d in current_deliveries(settings.store_dir) if d.la_code == landed.la_code]
    assert current.status == ACCEPTED and current.rows_received == first["rows_received"]


def test_a_sudden_drop_in_volume_holds_the_period(settings):
    """Against the previous delivery, a quarter of the rows is an anomaly: the delivery is held,
    its rows are kept, and the period cannot be published."""
    landed = health_file(settings)
    ingest_and_validate(settings, landed)
    table = pq.read_table(landed.path)
    pq.write_table(table.slice(0, table.num_rows // 4), landed.path)
    delivery = ingest_file(landed, settings.store_dir)
    assert previous_delivery(settings.store_dir, delivery).rows_received == table.num_rows
    with pytest.raises(DeliveryProblem, match="volume"):
        validate_step([delivery.__dict__], settings)
    [held] = [d for d in all_deliveries(settings.store_dir) if d.sha256 == delivery.sha256]
    assert held.status == HELD
    assert held.rows_accepted + held.rows_quarantined == held.rows_received


def test_a_csv_delivery_types_to_the_same_rows_as_parquet(settings):
    landed = health_file(settings)
    parquet = ingest_file(landed, settings.store_dir)
    csv_path = landed.path.with_suffix(".csv")
    pacsv.write_csv(pq.read_table(landed.path), csv_path)
    landed.path.unlink()
    as_csv = ingest_file(replace(landed, path=csv_path), settings.store_dir)
    assert pq.read_table(as_csv.typed_path).equals(pq.read_table(parquet.typed_path))
