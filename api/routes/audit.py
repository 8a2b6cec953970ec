"""The audit log over HTTP: one run's entries, and the tenant's whole log as JSON Lines for a SIEM.

Both read the log (activities/audit/), not Temporal: they answer for runs whose history
Temporal's retention has deleted. Both need `audit:read`, and both read only the caller's
tenant's log, so another tenant's run is simply not there (404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from activities.audit.log import AuditEntry
from api.deps import AuditDep, require
from api.errors import ApiError, ErrorResponse
from api.models import IsoDateTime
from steward.identity import Principal

router = APIRouter(tags=["audit"])

AuditReader = Annotated[Principal, Depends(require("audit:read"))]
MAX_EXPORT = 10_000
NEXT_HEADER = "Steward-Audit-Next-After"
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}


class RunAudit(BaseModel):
    run_id: str
    entries: list[AuditEntry]


@router.get("/v1/runs/{run_id}/audit", response_model=RunAudit, responses=_ERRORS)
async def run_audit(run_id: str, principal: AuditReader, audit: AuditDep) -> RunAudit:
    """The run's audit entries in order: started, LLM calls, approvals, artifacts, ended."""
    entries = audit.run_entries(principal.tenant, run_id)
    if not entries:
        raise ApiError(404, "not_found", f"no audit entries for run {run_id!r}")
    return RunAudit(run_id=run_id, entries=entries)


@router.get("/v1/audit", responses={200: {"content": {"application/x-ndjson": {}}}, **_ERRORS})
async def export_audit(
    principal: AuditReader,
    audit: AuditDep,
    after: Annotated[int, Query(ge=0, description="Resume after this sequence number (the last one you have).")] = 0,
    since: Annotated[IsoDateTime | None, Query(description="Only entries at or after this time (ISO 8601).")] = None,
    until: Annotated[IsoDateTime | None, Query(description="Only entries before this time (ISO 8601); at or before "
                                                            "`since`, nothing is.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 1000,
) -> Response:
    """The tenant's log as JSON Lines, in sequence order, at most `limit` entries. The header
    Steward-Audit-Next-After carries the last sequence number sent: pass it as `after` to go on."""
    since, until = _aware(since), _aware(until)
    if since and until and since >= until:
        # An empty window holds no entries: nothing to send, and nothing to skip past.
        return Response(b"", media_type="application/x-ndjson", headers={NEXT_HEADER: str(after)})
    lines, last = [], after
    for entry in audit.entries(principal.tenant, after=after):
        last = entry.seq
        if (since is None or entry.at >= since) and (until is None or entry.at < until):
            lines.append(entry.canonical())
            if len(lines) == limit:
                break
    body = b"".join(line + b"\n" for line in lines)
    return Response(body, media_type="application/x-ndjson", headers={NEXT_HEADER: str(last)})


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC, as every time in the log is."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
