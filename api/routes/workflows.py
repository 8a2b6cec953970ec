"""The workflow catalog, and starting runs of a workflow."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ValidationError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.events.model import TERMINAL_TYPES
from api.deps import CatalogDep, ClientDep, CurrentPrincipal, MetricsDep, RbacDep, SubscriptionsDep, authorize, require
from api.errors import ApiError, ErrorResponse, validation_error
from api.models import RunAccepted, RunStatus, StartRunRequest, WorkflowCatalog, WorkflowInfo
from api.run_records import describe_for_tenant, run_link, status_of
from steward import search_attributes as sa
from steward.identity import Principal
from workflows.spec import WorkflowSpec

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)}


@router.get("", response_model=WorkflowCatalog, responses={code: {"model": ErrorResponse} for code in (401, 403)})
async def list_workflows(
    _: Annotated[Principal, Depends(require("workflows:read"))], catalog: CatalogDep
) -> WorkflowCatalog:
    return WorkflowCatalog(
        workflows=[
            WorkflowInfo(
                name=spec.name,
                description=spec.description,
                task_queue=spec.task_queue,
                input_schema=spec.input_model.model_json_schema(),
                output_schema=spec.output_model.model_json_schema(mode="serialization"),
                tags=list(spec.tags),
            )
            for spec in catalog.listed()
        ]
    )


def _run_id(spec: WorkflowSpec, principal: Principal, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"{spec.name}-{uuid.uuid4().hex}"
    # Keys are scoped to the tenant: two tenants using the same key get two runs.
    digest = hashlib.sha256(f"{principal.tenant}\x00{idempotency_key}".encode()).hexdigest()[:32]
    return f"{spec.name}-{digest}"


def request_digest(spec: WorkflowSpec, validated_input: dict, callback_url: str | None) -> str:
    canonical = json.dumps(
        {"workflow": spec.name, "input": validated_input, "callback_url": callback_url},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_run_options(spec: WorkflowSpec, validated: BaseModel, principal: Principal, *, request_sha256: str,
                    callback_url: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
    """What every run Steward starts carries, whoever starts it (this route, the Alertmanager
    hook): its queue and timeout, who asked and for which tenant in the memo, the search
    attributes operators filter on, and the summary the Temporal UI shows."""
    return {
        "task_queue": spec.task_queue,
        "execution_timeout": spec.execution_timeout,
        "memo": {**spec.memo, "requested_by": principal.sub, "tenant": principal.tenant,
                 "request_sha256": request_sha256,
                 "callback_url": callback_url,
                 # The callback is a subscription of the run's own (docs/events.md), not a workflow step.
                 "callback_delivery": "events" if callback_url else None,
                 # For the audit log's run.started entry: which key, without the key itself.
                 "idempotency_key_sha256": hashlib.sha256(idempotency_key.encode()).hexdigest()
                 if idempotency_key else None},
        "search_attributes": sa.for_new_run(spec.name, principal.tenant, principal.sub),
        "static_summary": spec.static_summary(validated),
    }


async def startable_workflow(name: str, principal: CurrentPrincipal, catalog: CatalogDep,
                             policy: RbacDep) -> WorkflowSpec:
    """The workflow `name`, when the caller may start it: runs:start:<name>.

    The catalog is no secret (GET /v1/workflows lists it), so an unknown name is a 404 before
    the permission check, for anyone signed in.
    """
    spec = catalog.get(name)
    if spec is None:
        raise ApiError(404, "not_found", f"no workflow named {name!r}; GET /v1/workflows lists them")
    authorize(policy, principal, f"runs:start:{spec.name}")
    return spec


@router.post("/{name}/runs", status_code=202, response_model=RunAccepted, responses=_ERRORS)
async def start_run(
    spec: Annotated[WorkflowSpec, Depends(startable_workflow)],
    body: StartRunRequest,
    principal: CurrentPrincipal,
    client: ClientDep,
    metrics: MetricsDep,
    subscriptions: SubscriptionsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY_PATTERN)] = None,
) -> RunAccepted:
    try:
        # Strictly, as JSON: `"pep": 0` or `"annual_income": "12"` are not what the schema says.
        validated = spec.input_model.model_validate_json(json.dumps(body.input), strict=True)
    except ValidationError as exc:
        raise validation_error(exc, prefix=("input",)) from None
    callback_url = str(body.callback_url) if body.callback_url else None
    digest = request_digest(spec, validated.model_dump(mode="json"), callback_url)
    run_id = _run_id(spec, principal, idempotency_key)
    # Before the run starts, so its end cannot come first; undone below if this request starts nothing.
    registered = callback_url is not None and await subscriptions.add_callback(
        principal.tenant, run_id, callback_url, sorted(TERMINAL_TYPES), principal.sub)
    try:
        await client.start_workflow(
            spec.name,
            spec.argument(validated),
            id=run_id,
            # A keyed id is never reused, even after the run closes: the key means "this request".
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            **new_run_options(spec, validated, principal, request_sha256=digest, callback_url=callback_url,
                              idempotency_key=idempotency_key),
        )
        status = RunStatus.running
        metrics.runs_started.labels(spec.name).inc()
    except WorkflowAlreadyStartedError:
        if idempotency_key is None:
            raise  # a fresh uuid collided: not something a caller can fix
        existing = await describe_for_tenant(client, run_id, principal.tenant)
        if (await existing.memo()).get("request_sha256") != digest:
            if registered:
                await subscriptions.remove_callback(principal.tenant, run_id)
            raise ApiError(
                409, "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body",
                [{"field": "Idempotency-Key", "message": "already used for another request"}],
            ) from None
        status = status_of(existing)
    response.headers["Location"] = run_link(run_id).self
    return RunAccepted(id=run_id, workflow=spec.name, status=status, links=run_link(run_id))
