"""The one activity that writes the audit log: a batch of events of one run, appended in order,
and the chain head signed when the run ends (workflows/audit.py schedules it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from activities.artifacts.objects import object_store
from activities.audit.log import AuditEntry, AuditLog
from activities.events.delivery import dispatch, subscription_store
from activities.audit.signing import Signer
from steward import runtime
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)


class AuditEvent(BaseModel):
    event_id: str = Field(description="The same on every retry and replay: the run, and what happened in it.")
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)


class AuditBatch(BaseModel):
    tenant: str
    run_id: str
    workflow: str
    events: list[AuditEvent]
    sign_head: bool = Field(False, description="The run ended: sign the tenant's chain head.")


class AuditWritten(BaseModel):
    seqs: list[int]


def audit_log(settings: Settings, *, signing: bool = False) -> AuditLog:
    return AuditLog(object_store(settings, "audit", settings.audit_dir),
                    Signer.from_settings(settings) if signing else None)


_logs: dict[Path, AuditLog] = {}


def worker_audit_log(settings: Settings) -> AuditLog:
    """One log per data dir for this process, with its signer: it remembers where each chain ends,
    and the key is read once."""
    log_ = _logs.get(settings.audit_dir)
    if log_ is None:
        log_ = _logs[settings.audit_dir] = audit_log(settings, signing=True)
    return log_


@activity.defn(name="append-audit-entries")
async def append_audit_entries(batch: AuditBatch) -> AuditWritten:
    settings = runtime.settings()
    audit = worker_audit_log(settings)

    def write() -> list[AuditEntry]:  # file writes and fsyncs: off the event loop
        entries = [audit.append(batch.tenant, event.event_id, event.kind, run_id=batch.run_id,
                                workflow=batch.workflow, data=event.data) for event in batch.events]
        if batch.sign_head:
            audit.sign_head(batch.tenant)
        return entries

    entries = await asyncio.to_thread(write)
    log.info("audit entries written", tenant=batch.tenant, workflow_id=batch.run_id,
             seqs=[entry.seq for entry in entries], kinds=[event.kind for event in batch.events])
    # Webhook subscriptions hear of them now. Failing here fails the attempt, and the retry finds
    # the entries written and dispatches again: nothing written goes unannounced.
    await dispatch(subscription_store(settings), audit, batch.tenant, entries)
    return AuditWritten(seqs=[entry.seq for entry in entries])
