"""The joinedup command: stages by hand, with clear failures."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from joinedup.cli import main
from joinedup.contracts import contract
from joinedup.pseudonymise import landed_schema
from joinedup.settings import Settings
from joinedup.synth import generate

PERIOD = "2024-25"


@pytest.fixture(scope="module")
def raw_referrals(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    settings = Settings(data_dir=root)
    generate(settings, period=PERIOD, seed=5, scale=0.02)
    return next(settings.raw_dir.glob(f"health/{PERIOD}/*/health_referrals.csv"))


def test_pseudonymise_refuses_to_run_without_a_key(raw_referrals, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JOINEDUP_KEY", raising=False)
    monkeypatch.delenv("JOINEDUP_KEY_FILE", raising=False)
    target = tmp_path / "out.parquet"
    code = main(["pseudonymise", str(raw_referrals), str(target), "--extract", "health_referrals"])
    assert code == 2
    assert "No pseudonymisation key" in capsys.readouterr().err
    assert not target.exists()


def test_pseudonymise_with_a_key_file_writes_the_contracts_schema(
    raw_referrals, tmp_path, monkeypatch, capsys
):
    key_file = tmp_path / "agency.key"
    key_file.write_text("k" * 40)
    monkeypatch.delenv("JOINEDUP_KEY", raising=False)
    monkeypatch.setenv("JOINEDUP_KEY_FILE", str(key_file))
    target = tmp_path / "out.parquet"
    code = main(["pseudonymise", str(raw_referrals), str(target), "--extract", "health_referrals"])
    assert code == 0
    table = pq.read_table(target)
    assert table.schema.equals(landed_schema(contract("health_referrals")))
    assert str(target) in capsys.readouterr().out


def test_ingest_of_an_empty_landing_zone_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JOINEDUP_DATA_DIR", str(tmp_path))
    assert main(["ingest", "--agency", "care", "--period", PERIOD]) == 2
    error = capsys.readouterr().err
    assert error.startswith("joinedup ingest:") and "nothing landed" in error


def test_an_unknown_agency_is_a_usage_error():
    with pytest.raises(SystemExit) as raised:
        main(["ingest", "--agency", "police", "--period", PERIOD])
    assert raised.value.code == 2
