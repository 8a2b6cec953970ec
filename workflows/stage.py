"""Marks which stage a run is in, for the API's `stage` field and the Temporal UI.

The Stage search attribute lets operators filter runs by stage; current details show it on
the run's page in the UI.
"""

from temporalio import workflow

from steward.search_attributes import STAGE


def enter_stage(stage: str, details: str | None = None) -> None:
    workflow.upsert_search_attributes([STAGE.value_set(stage)])
    workflow.set_current_details(details or f"Stage: {stage}")
