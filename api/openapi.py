"""The OpenAPI document clients are generated from: what FastAPI derives from the routes, made to
tell the whole truth.

- One start operation per cataloged workflow (`POST /v1/workflows/compliance-documentation/runs`)
  with that workflow's own input schema, so a generated client is typed per workflow. The
  generic `POST /v1/workflows/{name}/runs` serves them all and still answers, but is left out
  of the document: its `input` is any object, which no client can build correctly.
- Every operation that takes a body documents 400: a body that is not JSON at all is refused
  before any model sees it. Every paged list documents 400 for a page token it did not issue.
  Every /v1 operation documents 503: Temporal, or a run's worker, may not answer in time.

The document is rebuilt when the catalog changes (a definition added, edited or removed while
the API runs), so it always lists the workflows the API starts.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from api.models import CATALOG_MARK, StartRunRequest
from workflows.catalog import Catalog
from workflows.spec import WorkflowSpec

START_PATH = "/v1/workflows/{name}/runs"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_BAD_REQUEST = {"description": "The body is not JSON, or a page token this API did not issue.",
                "content": {"application/json": {"schema": _ERROR_REF}}}
_UNAVAILABLE = {"description": "Temporal, or the run's worker, did not answer in time: try again after Retry-After.",
                "content": {"application/json": {"schema": _ERROR_REF}}}


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with the truthful document, cached per catalog."""
    derived = app.openapi
    built: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        catalog: Catalog | None = getattr(app.state, "catalog", None)
        if built.get("catalog") is not catalog or "schema" not in built:
            app.openapi_schema = None  # FastAPI caches its own; derive afresh from the routes
            schema = copy.deepcopy(derived())
            _document_bad_requests(schema)
            if catalog is not None:
                _per_workflow_start_operations(schema, catalog)
                _list_catalog_workflows(schema, sorted(catalog.specs))
            built.update(catalog=catalog, schema=schema)
        app.openapi_schema = built["schema"]
        return built["schema"]

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(schema: dict[str, Any]):
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def _document_bad_requests(schema: dict[str, Any]) -> None:
    for path, _, operation in _operations(schema):
        pages = any(p.get("name") == "next_page_token" for p in operation.get("parameters", []))
        if "requestBody" in operation or pages:
            operation["responses"].setdefault("400", _BAD_REQUEST)
        if path.startswith("/v1/"):
            operation["responses"].setdefault("503", _UNAVAILABLE)


def _per_workflow_start_operations(schema: dict[str, Any], catalog: Catalog) -> None:
    paths = schema["paths"]
    generic = paths.pop(START_PATH, {}).get("post")
    if generic is None:
        return
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in sorted(catalog.specs):
        spec = catalog.specs[name]
        operation = copy.deepcopy(generic)
        operation["operationId"] = f"start_{name.replace('-', '_')}_run"
        operation["summary"] = f"Start a {name} run"
        operation["description"] = spec.description or ""
        operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "name"]
        body_name = f"Start{_pascal(name)}Request"
        components[body_name] = _start_body_schema(spec, components)
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body_name}"}}}}
        paths[f"/v1/workflows/{name}/runs"] = {"post": operation}


def _start_body_schema(spec: WorkflowSpec, components: dict[str, Any]) -> dict[str, Any]:
    """StartRunRequest with `input` replaced by the workflow's own input schema, its $defs moved
    into the document's components under names of the workflow's own."""
    body = StartRunRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    body.pop("$defs", None)
    input_schema = copy.deepcopy(spec.input_model.model_json_schema())
    prefix = _pascal(spec.name)
    definitions = input_schema.pop("$defs", {})
    renamed = {old: f"{prefix}{old}" for old in definitions}
    for old, definition in definitions.items():
        components[renamed[old]] = _retarget(definition, renamed)
    body["properties"]["input"] = {**_retarget(input_schema, renamed),
                                   "description": f"The {spec.name} input (GET /v1/workflows lists it too)."}
    body["title"] = f"Start{prefix}Request"
    return body


def _retarget(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (f"#/components/schemas/{renamed[v.rsplit('/', 1)[1]]}"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/") else _retarget(v, renamed))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_retarget(v, renamed) for v in node]
    return node


def _list_catalog_workflows(node: Any, names: list[str]) -> None:
    """Every value marked as a workflow of the catalog (api/models.py WorkflowName) lists its names."""
    if isinstance(node, dict):
        if node.pop(CATALOG_MARK, False):
            node["enum"] = names
        for value in node.values():
            _list_catalog_workflows(value, names)
    elif isinstance(node, list):
        for value in node:
            _list_catalog_workflows(value, names)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
