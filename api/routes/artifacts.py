"""Downloading a run's artifacts (reports), for the run's own tenant only."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from activities.artifacts.store import ArtifactCorrupted, ArtifactNotFound, ArtifactRef
from api.deps import ArtifactsDep, ClientDep, require
from api.errors import ApiError, ErrorResponse
from api.run_records import ARTIFACTS_MEMO_KEY, describe_for_tenant
from steward.identity import Principal

router = APIRouter(prefix="/v1/runs", tags=["artifacts"])


@router.get(
    "/{run_id}/artifacts/{name}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "application/octet-stream": {}}},
               **{code: {"model": ErrorResponse} for code in (401, 403, 404, 500)}},
)
async def get_artifact(run_id: str, name: str, principal: Annotated[Principal, Depends(require("artifacts:read"))],
                       client: ClientDep, artifacts: ArtifactsDep) -> Response:
    description = await describe_for_tenant(client, run_id, principal.tenant)
    memo = await description.memo()
    recorded = {ref["name"]: ArtifactRef.model_validate(ref) for ref in memo.get(ARTIFACTS_MEMO_KEY) or ()}
    # Only what the run recorded is served: the store is not browsable through the API.
    if name not in recorded:
        raise ApiError(404, "not_found", f"run {run_id!r} has no artifact {name!r}")
    try:
        ref, data = await asyncio.to_thread(artifacts.read, run_id, name)  # S3, decryption: off the loop
    except ArtifactNotFound:
        raise ApiError(404, "not_found", f"run {run_id!r} has no artifact {name!r}") from None
    except ArtifactCorrupted:
        raise ApiError(500, "artifact_corrupted", f"artifact {name!r} failed its integrity check") from None
    if ref.sha256 != recorded[name].sha256:
        raise ApiError(500, "artifact_corrupted", f"artifact {name!r} is not the one the run recorded")
    return Response(
        content=data,
        media_type=ref.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{ref.name}"',
            "X-Content-SHA256": ref.sha256,
            "Cache-Control": "private, no-store",
        },
    )
