"""One ingest-and-validate DAG per agency; each marks its staged asset with the period."""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param, task

from joinedup import pipeline
from joinedup.settings import AGENCIES

PERIOD_PARAM = Param(
    None,
    type=["null", "string"],
    pattern=r"^\d{4}-\d{2}$",
    description="Academic year, e.g. 2024-25",
)


def build_ingest_dag(agency: str) -> DAG:
    """Landed files -> immutable store -> Great Expectations -> staged asset event."""
    staged = Asset(
        name=f"{pipeline.STAGED_ASSET_PREFIX}{agency}", uri=f"joinedup://staged/{agency}"
    )
    with DAG(
        dag_id=f"joinedup_ingest_{agency}",
        description=f"Ingest and validate the {agency} extracts of a period",
        schedule=None,
        catchup=False,
        params={"period": PERIOD_PARAM},
        tags=["joinedup", "ingest", agency],
    ) as dag:

        @task
        def period(**context) -> str:
            return pipeline.period_of_run(context)

        @task
        def ingest(run_period: str, **context) -> list[dict]:
            return pipeline.ingest_step(agency, run_period, run_id=f"airflow:{context['run_id']}")

        @task
        def validate(deliveries: list[dict]) -> list[dict]:
            return pipeline.validate_step(deliveries)

        @task(outlets=[staged])
        def mark_staged(run_period: str, summary: list[dict], **context) -> None:
            context["outlet_events"][staged].extra = {"period": run_period, "extracts": summary}

        run_period = period()
        mark_staged(run_period, validate(ingest(run_period)))
    return dag


for _agency in AGENCIES:
    globals()[f"joinedup_ingest_{_agency}"] = build_ingest_dag(_agency)
