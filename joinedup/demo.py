"""The built-in demo: synthetic areas, pseudonymised at source, run through the Airflow DAGs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from joinedup.settings import AGENCIES, KEY_ENV, KEY_FILE_ENV, PROJECT_ROOT, Settings, load_key

DAG_ORDER = (
    *(f"joinedup_ingest_{agency}" for agency in AGENCIES),
    "joinedup_link_publish",
    "joinedup_report",
)


class DagRunFailed(RuntimeError):
    """An Airflow DAG run of the demo did not succeed."""


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced."""

    warehouse: Path
    reports: list[Path]
    data_docs: list[Path]
    data_quality: pd.DataFrame
    linkage: pd.DataFrame
    seconds: dict[str, float]


def ensure_demo_key(settings: Settings) -> bytes:
    """The pseudonymisation key; the demo makes a random one under data/keys when none is set."""
    if not (os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
        key_file = settings.data_dir / "keys" / "demo.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        os.environ[KEY_FILE_ENV] = str(key_file)
    return load_key()


def prepare_landing(settings: Settings, period: str, seed: int, scale: float, key: bytes) -> int:
    """Generate the synthetic areas and pseudonymise every extract into the landing zone."""
    from joinedup.pseudonymise import pseudonymise_tree
    from joinedup.synth import LANDING_FORMATS, generate

    generate(settings, period=period, seed=seed, scale=scale)
    landed = pseudonymise_tree(settings.raw_dir, settings.landing_dir, key, LANDING_FORMATS)
    write_truth_pairs(settings, period, key)
    return len(landed)


def write_truth_pairs(settings: Settings, period: str, key: bytes) -> Path:
    """The synthetic truth as pairs of person tokens that are one child, beside the truth, so
    the warehouse's linkage QA can show true precision and recall (synthetic data only)."""
    from joinedup.link.evaluate import TRUTH_PAIRS_FILE, truth_pairs

    truth = pd.read_parquet(settings.truth_dir / period / "records.parquet")
    target = settings.truth_dir / period / TRUTH_PAIRS_FILE
    truth_pairs(truth, key).to_parquet(target, index=False)
    return target


def migrate_airflow_db() -> None:
    """Create or upgrade Airflow's metadata DB (SQLite under the project's AIRFLOW_HOME)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, text=True)


def run_dags(period: str, dag_ids: tuple[str, ...] = DAG_ORDER) -> dict[str, float]:
    """Run each DAG once through Airflow (dag.test) with the period in the run conf."""
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() talks to Airflow through starlette's test client, which warns about httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise DagRunFailed(f"DAG import errors: {bag.import_errors}")
    seconds: dict[str, float] = {}
    for dag_id in dag_ids:
        started = time.perf_counter()
        run = bag.dags[dag_id].test(run_conf={"period": period})
        seconds[dag_id] = time.perf_counter() - started
        if run.state != "success":
            failed = [ti.task_id for ti in run.get_task_instances() if ti.state != "success"]
            raise DagRunFailed(f"{dag_id} ended {run.state}; tasks not successful: {failed}")
    return seconds


def evaluate_linkage(settings: Settings, period: str, key: bytes) -> pd.DataFrame:
    """Precision and recall of the spine against the synthetic ground truth, per agency pair."""
    from joinedup.link import evaluate

    spine = pd.read_parquet(settings.work_dir / period / "link" / "spine.parquet")
    truth = pd.read_parquet(settings.truth_dir / period / "records.parquet")
    return evaluate(spine, truth, key)


def run_demo(settings: Settings, period: str, seed: int, scale: float) -> DemoResult:
    """The whole pipeline on the synthetic areas, through Airflow."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    key = ensure_demo_key(settings)
    prepare_landing(settings, period, seed, scale, key)
    seconds["synth+pseudonymise"] = time.perf_counter() - started
    started = time.perf_counter()
    migrate_airflow_db()
    seconds["airflow db migrate"] = time.perf_counter() - started
    seconds.update(run_dags(period))
    reports = sorted((settings.reports_dir / period).glob("*.html"))
    data_docs = sorted((settings.work_dir / "data_docs").glob("*/**/index.html"))
    linkage = evaluate_linkage(settings, period, key)
    return DemoResult(
        settings.warehouse_path,
        reports,
        data_docs,
        data_quality(settings, period),
        linkage,
        seconds,
    )


def data_quality(settings: Settings, period: str) -> pd.DataFrame:
    """Rows received, accepted and quarantined per agency in the period, from the warehouse."""
    from joinedup.publish import open_warehouse

    with open_warehouse(settings.warehouse_path) as con:
        summary = con.execute(
            "SELECT * FROM dq_summary WHERE period = ? ORDER BY agency, la_code", [period]
        ).df()
    totals = summary.groupby("agency")[["rows_received", "rows_accepted", "rows_quarantined"]]
    return totals.sum().astype("int64").reset_index()
