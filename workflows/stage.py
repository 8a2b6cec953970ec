"""Marks which stage a run is in, for the API's `stage` field, the Temporal UI and the run's events.

The Stage search attribute lets operators filter runs by stage; current details show it on
the run's page in the UI; the audit log's `run.stage_changed` entry is what streams and
subscriptions see (activities/events/).
"""

from temporalio import workflow

from steward.search_attributes import STAGE
from workflows import audit


def enter_stage(stage: str, details: str | None = None) -> None:
    workflow.upsert_search_attributes([STAGE.value_set(stage)])
    workflow.set_current_details(details or f"Stage: {stage}")
    if audit.evented():
        audit.record_soon(audit.AuditEvent(event_id=audit.numbered("stage"), kind="run.stage_changed",
                                           data={"stage": stage}))
