"""Render the commissioners' outcome report per area whenever a warehouse is published."""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param, task

from joinedup import pipeline

warehouse = Asset(name=pipeline.WAREHOUSE_ASSET, uri="joinedup://warehouse")

with DAG(
    dag_id="joinedup_report",
    description="One outcome report per area from the published warehouse",
    schedule=[warehouse],
    catchup=False,
    params={"period": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}$")},
    tags=["joinedup", "report"],
) as dag:

    @task
    def period(**context) -> str:
        events = context["triggering_asset_events"]
        extras = [event.extra for asset_events in events.values() for event in asset_events]
        return pipeline.resolve_period(context["dag_run"].conf or context["params"], extras)

    @task
    def render(run_period: str) -> list[str]:
        return pipeline.report_step(run_period)

    render(period())
