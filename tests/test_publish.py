"""Tests of joinedup.publish: a checked build is swapped in atomically, earlier versions are
kept, and a failed or unfit build never touches the published warehouse."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import duckdb
import pytest

from joinedup import publish as publish_module
from joinedup.metrics import TransformError
from joinedup.publish import (
    InvalidBuildError,
    check_build,
    kept_versions,
    open_warehouse,
    publish,
)
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


def test_publish_refuses_a_build_missing_a_view(warehouse, tmp_path):
    before = warehouse.read_bytes()
    partial = build(tmp_path, "run-2")
    with duckdb.connect(str(partial)) as con:
        con.execute("DROP VIEW v_metric_trend")
    with pytest.raises(InvalidBuildError, match="v_metric_trend"):
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
    assert [p.name for p in warehouse.parent.glob(f".*{publish_module.PARTIAL_MARK}*")] == []


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


def test_publish_stamps_published_at_in_the_manifest(tmp_path):
    """A build's manifest has no published_at; publish sets it to the time of the swap."""
    build_path = build(tmp_path, "run-1")
    assert check_build(build_path)["published_at"] is None
    before = datetime.now(UTC)
    target = publish(build_path, tmp_path / "warehouse" / "joinedup.duckdb")
    published_at = check_build(target)["published_at"]
    assert before <= published_at <= datetime.now(UTC)


def test_the_manifest_counts_the_rows_of_every_table_of_the_published_warehouse(warehouse):
    """Run id, periods, published_at and a row count for each table, equal to its rows."""
    with open_warehouse(warehouse) as con:
        manifest = con.execute("SELECT * FROM manifest").df().iloc[0]
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}
    assert manifest.run_id == "run-1"
    assert list(manifest.periods) == ["2023-24", "2024-25"]
    assert manifest.published_at is not None
    assert dict(manifest.table_rows) == counts


def test_keep_zero_keeps_no_version(warehouse, tmp_path):
    publish(build(tmp_path, "run-2"), warehouse, keep=0)
    assert published_run_id(warehouse) == "run-2"
    assert kept_run_ids(warehouse) == []


def test_a_version_copied_without_hard_links_is_whole_and_leaves_no_temporary(
    warehouse, tmp_path, monkeypatch
):
    """Where hard links fail, the kept version is a copy made under a temporary name."""
    before = warehouse.read_bytes()

    def no_links(source, target):
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(publish_module.os, "link", no_links)
    publish(build(tmp_path, "run-2"), warehouse)
    versions = kept_versions(warehouse.parent / "versions", warehouse)
    assert [v.read_bytes() == before for v in versions] == [True]
    assert list((warehouse.parent / "versions").glob(".*")) == []


# --- killed mid-publish -----------------------------------------------------------------------
# A child process builds the fixture warehouse and publishes it (keep=2) while the test SIGKILLs
# it: either paused at a named step of publish (deterministic), or after a delay. After each
# kill the published warehouse must be the previous one, unchanged, or (once the swap is done)
# the new one, complete; every kept version must be a complete warehouse; the next publish must
# succeed and clear any temporary file. Children fork from a server that has imported this
# module, so each starts in milliseconds.

KILL_CONTEXT = multiprocessing.get_context("forkserver")
KILL_CONTEXT.set_forkserver_preload(["tests.test_publish"])
KEEP = 2
PAUSES = (
    "before_stamp",
    "after_stamp",
    "before_link",
    "mid_version_copy",  # hard links fail: killed half-way through copying the version
    "before_swap",
    "mid_cross_device_copy",  # os.replace fails with EXDEV: killed half-way through the copy
    "before_prune",
)
PAUSED_AFTER_SWAP = {"before_prune"}


def pause(report: Connection, step: str) -> None:
    """Tell the test where the child is, then wait there to be killed."""
    report.send(step)
    time.sleep(600)


def half_copy(report: Connection, step: str):
    """A shutil.copy2 that writes half of the file, then pauses."""

    def copy(source, target, **_):
        data = Path(source).read_bytes()
        with open(target, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        pause(report, step)

    return copy


def install_pause(step: str, report: Connection) -> None:
    """Make this (child) process stop at `step` of publish."""
    real_stamp = publish_module.stamp_published_at
    real_link, real_replace = os.link, os.replace

    def unlinkable(source, target):
        raise OSError(errno.EPERM, "no hard links")

    def cross_device(source, target):
        if Path(source).name.startswith(".build-"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(source, target)

    def paused(name: str, call):
        def wrapper(*args, **kwargs):
            pause(report, name)
            return call(*args, **kwargs)

        return wrapper

    def stamp_then_pause(build_path):
        real_stamp(build_path)
        pause(report, "after_stamp")

    if step == "before_stamp":
        publish_module.stamp_published_at = paused(step, real_stamp)
    elif step == "after_stamp":
        publish_module.stamp_published_at = stamp_then_pause
    elif step == "before_link":
        os.link = paused(step, real_link)
    elif step == "mid_version_copy":
        os.link = unlinkable
        shutil.copy2 = half_copy(report, step)
    elif step == "before_swap":
        publish_module.move_into_place = paused(step, publish_module.move_into_place)
    elif step == "mid_cross_device_copy":
        os.replace = cross_device
        shutil.copy2 = half_copy(report, step)
    elif step == "before_prune":
        publish_module.prune_versions = paused(step, publish_module.prune_versions)
    elif step:
        raise ValueError(f"unknown pause {step}")


def build_and_publish(
    root: str, warehouse: str, run_id: str, pause_at: str, broken: bool, report: Connection
) -> None:
    """The child: build run_id's warehouse beside the published one and publish it."""
    try:
        install_pause(pause_at, report)
        settings = None
        if broken:
            transforms = Path(root) / f"transforms-{run_id}"
            shutil.copytree(Settings().transforms_dir, transforms)
            (transforms / "45_broken.sql").write_text("SELECT * FROM no_such_table;\n")
            settings = replace(Settings(), transforms_dir=transforms)
        build_path = Path(warehouse).parent / f".build-{run_id}.duckdb"
        build_fixture_warehouse(build_path, Path(root) / f"inputs-{run_id}", settings, run_id)
        publish(build_path, Path(warehouse), keep=KEEP)
        report.send("done")
    except BaseException as error:
        report.send(f"failed: {error!r}")
        raise


@dataclass(frozen=True)
class Snapshot:
    """What an analyst sees of a warehouse file: its bytes, manifest and every table."""

    sha256: str
    manifest: dict[str, Any]
    tables: dict[str, tuple]

    @classmethod
    def of(cls, path: Path) -> Snapshot:
        with open_warehouse(path) as con:
            names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
            tables = {
                n: con.execute(f'SELECT count(*), sum(hash(t)) FROM "{n}" AS t').fetchall()[0]
                for n in names
            }
        return cls(hashlib.sha256(path.read_bytes()).hexdigest(), check_build(path), tables)


def run_child(
    root: Path, warehouse: Path, run_id: str, pause_at: str = "", broken: bool = False
) -> tuple[multiprocessing.Process, Connection]:
    receive, send = KILL_CONTEXT.Pipe(duplex=False)
    child = KILL_CONTEXT.Process(
        target=build_and_publish,
        args=(str(root), str(warehouse), run_id, pause_at, broken, send),
    )
    child.start()
    send.close()
    return child, receive


def kill(child: multiprocessing.Process, may_have_finished: bool = False) -> None:
    """SIGKILL the child and reap it; a child not paused may finish on its own first (exit 0)."""
    child.kill()
    child.join(30)
    assert child.exitcode in ((-9, 0) if may_have_finished else (-9,)), child.exitcode


def check_after_kill(warehouse: Path, before: Snapshot, run_id: str, published: set[str]) -> str:
    """The published warehouse is `before`, unchanged, or run_id's complete build; every kept
    version is a complete warehouse of a run published earlier. Returns the published run id."""
    now = Snapshot.of(warehouse)  # opens read-only and passes check_build
    if now.manifest["run_id"] == before.manifest["run_id"]:
        assert now == before
    else:
        assert now.manifest["run_id"] == run_id
        assert now.manifest["published_at"] is not None
    versions = kept_versions(warehouse.parent / VERSIONS, warehouse)
    for version in versions:
        assert check_build(version)["run_id"] in published, version
    return now.manifest["run_id"]


VERSIONS = publish_module.VERSIONS_DIR


@pytest.fixture(scope="module")
def published_once(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("killed")
    target = root / "warehouse" / "joinedup.duckdb"
    publish(build(root, "run-0"), target)
    return root, target


@pytest.mark.parametrize("step", PAUSES)
def test_a_publish_killed_at_each_step_leaves_a_whole_warehouse(published_once, step):
    root, warehouse = published_once
    before = Snapshot.of(warehouse)
    published = {before.manifest["run_id"]} | {
        check_build(v)["run_id"] for v in kept_versions(warehouse.parent / VERSIONS, warehouse)
    }
    run_id = f"paused-{step}"
    child, report = run_child(root, warehouse, run_id, pause_at=step)
    assert report.poll(60), "the child never reached its pause"
    assert report.recv() == step
    kill(child)
    now = check_after_kill(warehouse, before, run_id, published | {run_id})
    assert (now == run_id) == (step in PAUSED_AFTER_SWAP)
    # The next publish succeeds and removes what the killed one left half-done.
    publish(build(root, f"after-{step}"), warehouse, keep=KEEP)
    assert published_run_id(warehouse) == f"after-{step}"
    leftovers = [
        p
        for folder in (warehouse.parent, warehouse.parent / VERSIONS)
        for p in folder.glob(f".*{publish_module.PARTIAL_MARK}*")
    ]
    assert leftovers == []


def test_a_build_and_publish_killed_after_increasing_delays_never_breaks_the_warehouse(
    published_once,
):
    """Killed at 30% ... 99% of a full run's time (build, then publish)."""
    root, warehouse = published_once
    started = time.perf_counter()
    child, report = run_child(root, warehouse, "timed-full")
    assert report.poll(60) and report.recv() == "done"
    child.join(30)
    seconds = time.perf_counter() - started
    published = {"timed-full"} | {
        check_build(v)["run_id"] for v in kept_versions(warehouse.parent / VERSIONS, warehouse)
    }
    outcomes = []
    for share in (0.3, 0.7, 0.95, 0.99):
        before = Snapshot.of(warehouse)
        run_id = f"timed-{int(share * 100)}"
        child, report = run_child(root, warehouse, run_id)
        time.sleep(seconds * share)
        kill(child, may_have_finished=True)  # at 99% it may finish before the signal lands
        published.add(run_id)
        outcomes.append(check_after_kill(warehouse, before, run_id, published))
    print(f"full run {seconds:.2f} s; published after each kill: {outcomes}")


def test_a_run_failing_on_a_broken_transform_leaves_the_warehouse_unchanged(published_once):
    root, warehouse = published_once
    before = Snapshot.of(warehouse)
    child, report = run_child(root, warehouse, "broken", broken=True)
    assert report.poll(60)
    assert "45_broken.sql" in report.recv()
    child.join(30)
    assert child.exitcode != 0
    assert Snapshot.of(warehouse) == before
    assert not (warehouse.parent / ".build-broken.duckdb").exists()
