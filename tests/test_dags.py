"""The DAG files import cleanly and wire the schedule the architecture promises."""

from __future__ import annotations

import pytest

from joinedup.pipeline import PeriodError, resolve_period
from joinedup.settings import AGENCIES

DAGS_FOLDER = "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import PROJECT_ROOT

    return DagBag(dag_folder=str(PROJECT_ROOT / DAGS_FOLDER))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    expected = {f"joinedup_ingest_{a}" for a in AGENCIES} | {
        "joinedup_link_publish",
        "joinedup_report",
    }
    assert set(dagbag.dag_ids) == expected


def test_each_ingest_dag_updates_its_agencys_staged_asset(dagbag):
    for agency in AGENCIES:
        dag = dagbag.dags[f"joinedup_ingest_{agency}"]
        outlets = {o.name for t in dag.tasks for o in t.outlets}
        assert outlets == {f"joinedup_staged_{agency}"}
        assert dag.task_dict["ingest"].upstream_task_ids == {"period"}
        assert dag.task_dict["validate"].upstream_task_ids == {"ingest"}


def test_link_publish_waits_for_all_three_agencies_and_publishes_the_warehouse(dagbag):
    dag = dagbag.dags["joinedup_link_publish"]
    condition = dag.timetable.asset_condition
    names = {asset.name for asset in condition.objects}
    assert names == {f"joinedup_staged_{a}" for a in AGENCIES}
    assert type(condition).__name__ == "AssetAll"
    assert {o.name for o in dag.task_dict["publish"].outlets} == {"joinedup_warehouse"}


def test_report_dag_runs_on_the_warehouse_asset(dagbag):
    dag = dagbag.dags["joinedup_report"]
    names = {asset.name for asset in dag.timetable.asset_condition.objects}
    assert names == {"joinedup_warehouse"}


def test_period_comes_from_conf_before_asset_events():
    assert resolve_period({"period": "2023-24"}, [{"period": "2024-25"}]) == "2023-24"


def test_asset_triggered_run_takes_the_period_its_events_agree_on():
    assert resolve_period({}, [{"period": "2024-25"}, {"period": "2024-25"}]) == "2024-25"


def test_disagreeing_or_missing_periods_are_refused():
    with pytest.raises(PeriodError, match="different periods"):
        resolve_period(None, [{"period": "2024-25"}, {"period": "2023-24"}])
    with pytest.raises(PeriodError, match="no period"):
        resolve_period({"period": None}, [])
    with pytest.raises(ValueError, match="academic year"):
        resolve_period({"period": "2024"}, [])


def test_a_task_reads_its_period_from_conf_then_params_then_asset_events():
    from types import SimpleNamespace

    from joinedup.pipeline import period_of_run

    events = {"joinedup_staged_care": [SimpleNamespace(extra={"period": "2024-25"})]}
    run = SimpleNamespace(conf={})
    assert period_of_run({"dag_run": run, "params": {}, "triggering_asset_events": events}) == (
        "2024-25"
    )
    assert period_of_run({"dag_run": run, "params": {"period": "2022-23"}}) == "2022-23"
    manual = SimpleNamespace(conf={"period": "2023-24"})
    assert period_of_run({"dag_run": manual, "params": {"period": "2022-23"}}) == "2023-24"
