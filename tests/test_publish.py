"""Tests of joinedup.publish: a checked build is swapped in atomically, earlier versions are
kept, and a failed or unfit build never touches the published warehouse."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from joinedup import publish as publish_module
from joinedup.metrics import TransformError
from joinedup.publish import InvalidBuildError, open_warehouse, publish
from joinedup.settings import Settings
from tests.test_metrics import build_fixture_warehouse


def build(root: Path, run_id: str, settings: Settings | None = None) -> Path:
    """Build the fixture warehouse for run_id in its own file under root."""
    path = root / f"build-{run_id}.duckdb"
    build_fixture_warehouse(path, root / f"inputs-{run_id}", settings=settings, run_id=run_id)
    return path


def published_run_id(path: Path) -> str:
    with open_warehouse(path) as con:
        return con.execute("SELECT run_id FROM manifest").fetchall()[0][0]


def kept_run_ids(warehouse: Path) -> list[str]:
    versions = sorted((warehouse.parent / "versions").glob("*.duckdb"))
    return [published_run_id(p) for p in versions]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A published warehouse of run-1."""
    target = tmp_path / "warehouse" / "joinedup.duckdb"
    publish(build(tmp_path, "run-1"), target)
    return target


def test_publish_moves_the_build_into_place(warehouse, tmp_path):
    assert published_run_id(warehouse) == "run-1"
    assert not (tmp_path / "build-run-1.duckdb").exists()
    assert not (warehouse.parent / "versions").exists()  # nothing was replaced


def test_publish_keeps_the_newest_previous_versions(warehouse, tmp_path):
    """Each publish keeps the replaced warehouse; only the newest `keep` versions survive."""
    for run_id in ("run-2", "run-3", "run-4", "run-5"):
        publish(build(tmp_path, run_id), warehouse, keep=3)
    assert published_run_id(warehouse) == "run-5"
    assert kept_run_ids(warehouse) == ["run-2", "run-3", "run-4"]


def test_a_failing_build_leaves_the_published_warehouse_untouched(warehouse, tmp_path):
    """A transform failing half-way removes its partial file; the published one is unchanged."""
    before = warehouse.read_bytes()
    transforms = tmp_path / "transforms"
    shutil.copytree(Settings().transforms_dir, transforms)
    (transforms / "45_broken.sql").write_text(
        "CREATE TABLE half_done AS SELECT 1 AS x;\nSELECT * FROM no_such_table;\n"
    )
    settings = replace(Settings(), transforms_dir=transforms)
    failed = tmp_path / "build-run-2.duckdb"
    with pytest.raises(TransformError, match="45_broken.sql"):
        build(tmp_path, "run-2", settings=settings)
    assert not failed.exists()
    assert not failed.with_name(failed.name + ".wal").exists()
    assert warehouse.read_bytes() == before
    assert published_run_id(warehouse) == "run-1"
    with pytest.raises(InvalidBuildError):
        publish(failed, warehouse)
    assert warehouse.read_bytes() == before


def test_publish_refuses_a_build_with_identity_columns(warehouse, tmp_path):
    before = warehouse.read_bytes()
    leaky = build(tmp_path, "run-2")
    with duckdb.connect(str(leaky)) as con:
        con.execute("ALTER TABLE dim_child ADD COLUMN person_token VARCHAR")
    with pytest.raises(InvalidBuildError, match="dim_child.person_token"):
        publish(leaky, warehouse)
    assert warehouse.read_bytes() == before


def test_publish_refuses_a_build_missing_tables(warehouse, tmp_path):
    before = warehouse.read_bytes()
    partial = build(tmp_path, "run-2")
    with duckdb.connect(str(partial)) as con:
        con.execute("DROP TABLE published_metrics")
    with pytest.raises(InvalidBuildError, match="published_metrics"):
        publish(partial, warehouse)
    assert warehouse.read_bytes() == before


def test_publish_refuses_a_file_that_is_not_a_warehouse(warehouse, tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database")
    with pytest.raises(InvalidBuildError):
        publish(junk, warehouse)
    assert published_run_id(warehouse) == "run-1"


def test_a_failed_swap_leaves_the_old_warehouse_whole(warehouse, tmp_path, monkeypatch):
    """The new file only ever arrives by one rename: if the rename fails, nothing changed."""
    before = warehouse.read_bytes()
    new_build = build(tmp_path, "run-2")

    def failing_replace(source, target):
        raise OSError(errno.EIO, "disk went away")

    monkeypatch.setattr(publish_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk went away"):
        publish(new_build, warehouse)
    assert warehouse.read_bytes() == before
    assert new_build.exists()


def test_publish_across_file_systems_copies_then_renames(warehouse, tmp_path, monkeypatch):
    """os.replace cannot cross devices: publish copies beside the target, then renames."""
    new_build = build(tmp_path, "run-2")
    real_replace = os.replace

    def cross_device(source, target):
        if Path(source) == new_build:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(source, target)

    monkeypatch.setattr(publish_module.os, "replace", cross_device)
    publish(new_build, warehouse)
    assert published_run_id(warehouse) == "run-2"
    assert not new_build.exists()
    assert [p.name for p in warehouse.parent.glob(".*incoming*")] == []


def test_readers_of_the_old_warehouse_keep_reading_during_a_publish(warehouse, tmp_path):
    with open_warehouse(warehouse) as reader:
        publish(build(tmp_path, "run-2"), warehouse)
        assert reader.execute("SELECT run_id FROM manifest").fetchall() == [("run-1",)]
    assert published_run_id(warehouse) == "run-2"


def test_open_warehouse_is_read_only(warehouse):
    with open_warehouse(warehouse) as con, pytest.raises(duckdb.Error):
        con.execute("CREATE TABLE scribble (x INTEGER)")


def test_open_warehouse_refuses_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_warehouse(tmp_path / "absent.duckdb")
