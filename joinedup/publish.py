"""Publish a built warehouse: check it, then swap it in atomically, keeping earlier versions.

Analysts and the report open the published file read-only with `open_warehouse`. A build is
made in a separate file by `joinedup.metrics.build_warehouse`; only a complete, checked build
replaces the published file (one `os.replace`), so readers see the old or the new warehouse,
never a half-written one, and a failed build leaves the published file untouched.

Every file publish writes arrives under its final name by a rename: the published warehouse,
and a kept version when it has to be copied (no hard links). A publish killed at any moment
leaves the previous warehouse whole and at most a temporary file (a dot-name ending in
`.partial-<hex>`), which no reader takes for a version and the next publish removes.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from joinedup.metrics import PUBLISHED_TABLES, PUBLISHED_VIEWS, database_files

VERSIONS_DIR = "versions"
PARTIAL_MARK = ".partial-"  # in the name of a file being copied, before its rename
IDENTITY_COLUMN_SUFFIXES = ("_token", "_tokens", "_bloom")
SOURCE_TABLE_PREFIXES = ("src_", "stg_", "int_")


class InvalidBuildError(RuntimeError):
    """A build is incomplete or unfit to publish."""


def open_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    """Open a warehouse read-only (how analysts and the report read it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no warehouse at {path}")
    return duckdb.connect(str(path), read_only=True)


def publish(build_path: Path, warehouse_path: Path, keep: int = 3) -> Path:
    """Check build_path and make it the warehouse at warehouse_path; return warehouse_path.

    The previous warehouse is kept under warehouse_path.parent/versions/ (the newest `keep`
    versions; older ones are deleted). build_path is consumed (moved).
    """
    if keep < 0:
        raise ValueError("keep must be 0 or more")
    build_path, warehouse_path = Path(build_path), Path(warehouse_path)
    check_build(build_path)
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    versions = warehouse_path.parent / VERSIONS_DIR
    remove_partial_files(warehouse_path.parent, versions)
    stamp_published_at(build_path)
    if keep and warehouse_path.exists():
        keep_version(warehouse_path, versions)
    move_into_place(build_path, warehouse_path)
    prune_versions(versions, warehouse_path, keep)
    return warehouse_path


def check_build(build_path: Path) -> dict[str, Any]:
    """Refuse a build that is not a complete, clean warehouse; return its manifest."""
    if not build_path.is_file():
        raise InvalidBuildError(f"no build at {build_path}")
    leftovers = [p.name for p in database_files(build_path)[1:] if p.exists()]
    if leftovers:
        raise InvalidBuildError(f"{build_path} was not closed cleanly: {leftovers} beside it")
    try:
        with open_warehouse(build_path) as con:
            tables = {
                name
                for (name,) in con.execute(
                    "SELECT table_name FROM duckdb_tables() "
                    "WHERE database_name = current_database()"
                ).fetchall()
            }
            views = {
                name
                for (name,) in con.execute(
                    "SELECT view_name FROM duckdb_views() "
                    "WHERE database_name = current_database() AND NOT internal"
                ).fetchall()
            }
            columns = con.execute(
                "SELECT table_name, column_name FROM duckdb_columns() "
                "WHERE database_name = current_database()"
            ).fetchall()
            manifests = (
                con.execute("SELECT * FROM manifest").fetchall() if "manifest" in tables else []
            )
            manifest_columns = [d[0] for d in con.description] if manifests else []
    except duckdb.Error as error:
        raise InvalidBuildError(
            f"{build_path} does not open as a DuckDB warehouse: {error}"
        ) from error
    missing = sorted((PUBLISHED_TABLES | PUBLISHED_VIEWS) - tables - views)
    if missing:
        raise InvalidBuildError(f"{build_path} lacks table(s) or view(s) {missing}")
    sources = sorted(t for t in tables if t.startswith(SOURCE_TABLE_PREFIXES))
    if sources:
        raise InvalidBuildError(f"{build_path} still holds build table(s) {sources}")
    leaks = sorted(f"{t}.{c}" for t, c in columns if c.endswith(IDENTITY_COLUMN_SUFFIXES))
    if leaks:
        raise InvalidBuildError(f"{build_path} holds identity column(s) {leaks}")
    if len(manifests) != 1:
        raise InvalidBuildError(f"{build_path} has {len(manifests)} manifest rows, expected 1")
    return dict(zip(manifest_columns, manifests[0], strict=True))


def stamp_published_at(build_path: Path) -> datetime:
    """Record the time of publishing in the build's manifest (before it is swapped in)."""
    published_at = datetime.now(UTC)
    with duckdb.connect(str(build_path)) as con:
        con.execute("UPDATE manifest SET published_at = ?", [published_at])
        con.execute("CHECKPOINT")
    return published_at


def keep_version(warehouse_path: Path, versions: Path) -> Path:
    """Keep the current warehouse as a version (a hard link where possible, else a copy made
    under a temporary name and renamed, so a half-copied file never bears a version's name)."""
    versions.mkdir(parents=True, exist_ok=True)
    target = versions / version_name(warehouse_path)
    if target.exists():
        return target
    try:
        os.link(warehouse_path, target)
    except OSError:
        copy_then_rename(warehouse_path, target)
    sync_directory(versions)
    return target


def partial_name(target: Path) -> Path:
    """Where a copy to target is written before its rename: a hidden name in target's folder."""
    return target.with_name(f".{target.name}{PARTIAL_MARK}{uuid.uuid4().hex}")


def copy_then_rename(source: Path, target: Path) -> None:
    """Copy source to target atomically: to a temporary name, flushed to disk, then renamed."""
    partial = partial_name(target)
    try:
        shutil.copy2(source, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def remove_partial_files(*folders: Path) -> list[Path]:
    """Delete the temporary copies an interrupted publish left behind; returns them."""
    found = [p for folder in folders if folder.is_dir() for p in folder.glob(f".*{PARTIAL_MARK}*")]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def version_name(warehouse_path: Path) -> str:
    """<stem>.<built_at UTC>.<run_id>.duckdb from the warehouse's manifest, so names sort by
    build time; the file's modification time when the manifest cannot be read."""
    try:
        with open_warehouse(warehouse_path) as con:
            run_id, built_at = con.execute("SELECT run_id, built_at FROM manifest").fetchall()[0]
    except (duckdb.Error, IndexError):
        run_id = "unknown"
        built_at = datetime.fromtimestamp(warehouse_path.stat().st_mtime, UTC)
    stamp = built_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe_run_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(run_id))
    return f"{warehouse_path.stem}.{stamp}.{safe_run_id}{warehouse_path.suffix}"


def move_into_place(source: Path, target: Path) -> None:
    """Atomically replace target with source, also across file systems."""
    try:
        os.replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        copy_then_rename(source, target)
        source.unlink()
    sync_directory(target.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename in directory durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def kept_versions(versions: Path, warehouse_path: Path) -> list[Path]:
    """Kept versions of a warehouse, oldest first."""
    if not versions.is_dir():
        return []
    pattern = f"{warehouse_path.stem}.*{warehouse_path.suffix}"
    return sorted(versions.glob(pattern), key=lambda p: p.name)


def prune_versions(versions: Path, warehouse_path: Path, keep: int) -> None:
    """Delete all but the newest `keep` versions."""
    found = kept_versions(versions, warehouse_path)
    for old in found[: max(len(found) - keep, 0)]:
        old.unlink()
