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
        return pipeline.period_of_run(context)

    @task
    def render(run_period: str) -> list[str]:
        return pipeline.report_step(run_period)

    render(period())
