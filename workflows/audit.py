"""Audit: what a run did, appended to its tenant's audit log (activities/audit/) as it happens.

Every workflow is audited without code of its own: the worker's interceptor (workers/audit.py)
records the start, the end, each accepted update and what activities report (LLM calls,
artifacts). Building blocks record what only they know (approvals, notifications) with
`record`. Each write is a local activity, so an entry is durable when the step that caused it is;
event ids are derived from the run and the step, so a replay or a retry never writes one twice.

Runs started before auditing existed replay without it: `workflow.patched(AUDIT_PATCH)` is false
for them, and true, recorded in history, for every run since.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit.activity import AuditBatch, AuditEvent, append_audit_entries
    from activities.audit.log import digest

AUDIT_PATCH = "steward-audit-log"
# Runs since events (activities/events/) record what only they know as it happens (stage changes,
# incident states), and `record_soon` gathers what one workflow task records into one write.
EVENTS_PATCH = "steward-events"
NO_TENANT = "_none"  # runs started without a tenant (outside the API); no real tenant can be named so
# A local file write and fsync; retried for a long while, since a run must not go on unaudited.
AUDIT_TIMEOUT = timedelta(seconds=30)
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=1), maximum_attempts=0)


def audited() -> bool:
    return workflow.patched(AUDIT_PATCH)


def evented() -> bool:
    return audited() and workflow.patched(EVENTS_PATCH)


def event_id(*parts: str) -> str:
    info = workflow.info()
    return "/".join((info.workflow_id, info.run_id, *parts))


def numbered(kind: str) -> str:
    """An event id for the run's n-th event of `kind` (notices, ...): n counts in workflow order,
    so it is the same on replay, and two events of one kind never share an id."""
    counts = _run_state().setdefault("counts", {})
    counts[kind] = counts.get(kind, 0) + 1
    return event_id(kind, str(counts[kind]))


def defer(*events: AuditEvent) -> None:
    """Write `events` with the run's next entry rather than on their own: one local activity fewer.
    Kept in the run's memory meanwhile, which a replay rebuilds from history, so nothing is lost."""
    if events and audited():
        _run_state().setdefault("deferred", []).extend(events)


def record_soon(*events: AuditEvent) -> None:
    """`record` for synchronous code (a handler's bookkeeping): written in the background; the
    run's end waits for it (workers/audit.py calls `flush`). What one workflow task records this
    way goes in one write: a stage change and the approval request after it cost one local activity."""
    if not events or not audited():
        return
    state = _run_state()
    if not evented():  # runs from before: one write per call, as they ran
        state.setdefault("pending", []).append(asyncio.ensure_future(record(*events)))
        return
    state.setdefault("deferred", []).extend(events)
    if not state.get("write_scheduled"):
        state["write_scheduled"] = True
        state.setdefault("pending", []).append(asyncio.ensure_future(_write_deferred()))


async def _write_deferred() -> None:
    # Conditions are checked once nothing else in the workflow can run: by then the run has done all
    # it can in this activation, and whatever it recorded meanwhile (a stage change, an approval, the
    # run's end) goes in this one write.
    await workflow.wait_condition(lambda: True)
    _run_state()["write_scheduled"] = False  # from here on, a new record_soon needs a write of its own
    await record()


async def flush() -> None:
    """Wait for everything `record_soon` started, including what it starts meanwhile."""
    pending = _run_state().setdefault("pending", [])
    while pending:
        await pending.pop(0)


def _run_state() -> dict[str, Any]:
    # On the workflow instance, so each run has its own (this module is shared by all of them).
    instance = workflow.instance()
    if not hasattr(instance, "_steward_audit"):
        instance._steward_audit = {}
    return instance._steward_audit


async def record(*events: AuditEvent, sign_head: bool = False) -> None:
    """Append `events` (AuditEvent(event_id=event_id(...), kind=..., data=...)) to the run's tenant log,
    after any deferred ones."""
    if not audited():
        return
    state = _run_state()
    # One write at a time per run, in the order they were asked for: the run's entries then follow
    # its steps (started first), whatever order the worker's threads would finish them in.
    async with state.setdefault("writing", asyncio.Lock()):
        batch = (*state.pop("deferred", []), *events)
        if not batch:
            return
        info = workflow.info()
        await workflow.execute_local_activity(
            append_audit_entries,
            AuditBatch(tenant=workflow.memo_value("tenant", "") or NO_TENANT, run_id=info.workflow_id,
                       workflow=info.workflow_type, events=list(batch), sign_head=sign_head),
            start_to_close_timeout=AUDIT_TIMEOUT, retry_policy=AUDIT_RETRY,
        )


__all__ = ["AUDIT_PATCH", "EVENTS_PATCH", "AuditEvent", "audited", "defer", "digest", "event_id", "evented", "flush",
           "numbered", "record", "record_soon"]
