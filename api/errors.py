"""One error shape for every non-2xx answer: {"error": {"code", "message", "details"}}.

Handlers here turn FastAPI's own errors (validation, unknown route, wrong method) and anything
unexpected into that shape. A stack trace never reaches the caller; it goes to the log.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.service import RPCError, RPCStatusCode

from api.log_paths import loggable_path
from steward.logs import get_logger

log = get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """A refusal the caller can act on: status, stable code, plain message, optional details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


def field_errors(errors: list[dict[str, Any]], prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors → [{"field": "input.documents.0.name", "message", "type"}]."""
    out = []
    for err in errors:
        loc = [*prefix, *err.get("loc", ())]
        # FastAPI prefixes body fields with "body"; callers think in terms of their JSON.
        if loc and loc[0] == "body":
            loc = loc[1:]
        out.append({"field": ".".join(str(p) for p in loc) or "body", "message": err["msg"], "type": err["type"]})
    return out


def validation_error(exc: ValidationError, prefix: tuple[str | int, ...]) -> ApiError:
    details = field_errors(exc.errors(include_url=False, include_input=False), prefix)
    fields = ", ".join(d["field"] for d in details)
    return ApiError(422, "validation_failed", f"request is not valid: {fields}", details)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = field_errors([dict(e) for e in exc.errors()])
    fields = ", ".join(d["field"] for d in details)
    return error_response(422, "validation_failed", f"request is not valid: {fields}", details)


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        # Starlette names the methods of the first route on the path only; a path served by
        # several routes (GET and POST /v1/schedules) must list all of them.
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, code, message, headers=headers)


_METHODS = ("DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (HEAD goes without saying with GET),
    found by asking the routes whether they would take the request with that method."""
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in request.app.router.routes)]


# Temporal being down is the caller's problem only in that they must try again later.
_TEMPORAL_RETRY_AFTER_S = "5"
_TEMPORAL_DOWN_STATUSES = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
# A lazy client that has never connected raises a bare RuntimeError with this prefix.
_CONNECT_FAILURE_PREFIX = "Failed client connect"


def _temporal_unavailable() -> JSONResponse:
    return error_response(
        503, "temporal_unavailable", "the workflow engine is not reachable; try again shortly",
        headers={"Retry-After": _TEMPORAL_RETRY_AFTER_S},
    )


async def _rpc_error(request: Request, exc: RPCError) -> JSONResponse:
    if exc.status in _TEMPORAL_DOWN_STATUSES:
        log.warning("temporal unavailable", path=loggable_path(request.url.path), status=exc.status.name)
        return _temporal_unavailable()
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RuntimeError) and str(exc).startswith(_CONNECT_FAILURE_PREFIX):
        log.warning("temporal unavailable", path=loggable_path(request.url.path), status="never connected")
        return _temporal_unavailable()
    log.exception("unhandled error", path=loggable_path(request.url.path), method=request.method)
    return error_response(500, "internal", "internal error; the request was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RPCError, _rpc_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
