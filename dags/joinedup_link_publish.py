"""Link all agencies' staged extracts and publish the warehouse, when all three are staged."""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param, task

from joinedup import pipeline
from joinedup.settings import AGENCIES

staged = [
    Asset(name=f"{pipeline.STAGED_ASSET_PREFIX}{a}", uri=f"joinedup://staged/{a}") for a in AGENCIES
]
warehouse = Asset(name=pipeline.WAREHOUSE_ASSET, uri="joinedup://warehouse")

with DAG(
    dag_id="joinedup_link_publish",
    description="Link the child spine, build the warehouse in a new file and swap it in",
    schedule=staged[0] & staged[1] & staged[2],
    catchup=False,
    params={"period": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}$")},
    tags=["joinedup", "link", "publish"],
) as dag:

    @task
    def period(**context) -> str:
        return pipeline.period_of_run(context)

    @task
    def link(run_period: str) -> dict:
        return pipeline.link_step(run_period)

    @task
    def build(run_period: str, _linked: dict, **context) -> dict:
        return pipeline.build_step(run_period, context["run_id"])

    @task(outlets=[warehouse])
    def publish(run_period: str, built: dict, **context) -> str:
        published = pipeline.publish_step(built["build_path"])
        context["outlet_events"][warehouse].extra = {"period": run_period}
        return published

    run_period = period()
    publish(run_period, build(run_period, link(run_period)))
