"""Publish a built warehouse: check it, then swap it in atomically, keeping earlier versions.

Analysts and the report open the published file read-only with `open_warehouse`. A build is
made in a separate file by `joinedup.metrics.build_warehouse`; only a complete, checked build
replaces the published file (one `os.replace`), so readers see the old or the new warehouse,
never a half-written one, and a failed build leaves the published file untouched.
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

from joinedup.metrics import PUBLISHED_TABLES, database_files

VERSIONS_DIR = "versions"
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
    missing = sorted(PUBLISHED_TABLES - tables)
    if missing:
        raise InvalidBuildError(f"{build_path} lacks table(s) {missing}")
    sources = sorted(t for t in tables if t.startswith(SOURCE_TABLE_PREFIXES))
    if sources:
        raise InvalidBuildError(f"{build_path} still holds build table(s) {sources}")
    leaks = sorted(f"{t}.{c}" for t, c in columns if c.endswith(IDENTITY_COLUMN_SUFFIXES))
    if leaks:
        raise InvalidBuildError(f"{build_path} holds identity column(s) {leaks}")
    if len(manifests) != 1:
        raise InvalidBuildError(f"{build_path} has {len(manifests)} manifest rows, expected 1")
    return dict(zip(manifest_columns, manifests[0], strict=True))


def keep_version(warehouse_path: Path, versions: Path) -> Path:
    """Keep the current warehouse as a version (a hard link where possible, else a copy)."""
    versions.mkdir(parents=True, exist_ok=True)
    target = versions / version_name(warehouse_path)
    if target.exists():
        return target
    try:
        os.link(warehouse_path, target)
    except OSError:
        shutil.copy2(warehouse_path, target)
    return target


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
        incoming = target.with_name(f".{target.name}.incoming-{uuid.uuid4().hex}")
        try:
            shutil.copy2(source, incoming)
            with open(incoming, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(incoming, target)
        finally:
            incoming.unlink(missing_ok=True)
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
