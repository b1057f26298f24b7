"""Settings come from the environment; the key from the environment or a key file only."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.settings import MissingKeyError, Settings, load_key


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv("JOINEDUP_KEY", raising=False)
    monkeypatch.delenv("JOINEDUP_KEY_FILE", raising=False)


def test_data_dir_comes_from_the_environment_and_paths_follow_it(monkeypatch, tmp_path):
    monkeypatch.setenv("JOINEDUP_DATA_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.data_dir == tmp_path.resolve()
    assert settings.warehouse_path == tmp_path.resolve() / "warehouse" / "joinedup.duckdb"
    assert settings.landing_dir.parent == settings.store_dir.parent == settings.data_dir


def test_without_a_key_nothing_runs():
    with pytest.raises(MissingKeyError, match="JOINEDUP_KEY"):
        load_key()


def test_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("JOINEDUP_KEY", "e" * 32)
    assert load_key() == b"e" * 32


def test_key_from_a_key_file_strips_the_newline(monkeypatch, tmp_path: Path):
    key_file = tmp_path / "joinedup.key"
    key_file.write_text("f" * 40 + "\n")
    monkeypatch.setenv("JOINEDUP_KEY_FILE", str(key_file))
    assert load_key() == b"f" * 40


def test_a_short_key_is_refused(monkeypatch):
    monkeypatch.setenv("JOINEDUP_KEY", "short")
    with pytest.raises(MissingKeyError, match="at least 32 bytes"):
        load_key()
