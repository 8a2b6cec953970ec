"""The FastAPI application: one Temporal client per process, opened in the lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api.errors import install_error_handlers
from api.routes import health, runs, workflows
from steward import __version__, temporal_client
from steward.logs import get_logger
from steward.settings import Settings
from workflows.catalog import discover

log = get_logger("api.access")
_tracer = trace.get_tracer("steward.api")


class RequestTelemetry:
    """A server span and one access-log line per request.

    A plain ASGI middleware rather than BaseHTTPMiddleware: it adds no task or stream copy to
    the hot path, which the benchmark's API-vs-raw ratio would notice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500
        structlog.contextvars.bind_contextvars(method=scope["method"], path=scope["path"])

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        with _tracer.start_as_current_span(f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", scope["path"])
                span.update_name(f"{scope['method']} {template}")
                span.set_attribute("http.request.method", scope["method"])
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status_code)
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                log.info(
                    "request",
                    route=template,
                    status=status_code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )


def create_app(settings: Settings, *, client: Client | None = None) -> FastAPI:
    """Build the app. Tests pass a connected `client`; otherwise the lifespan connects one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.catalog = discover(settings.workflow_packages)
        app.state.jwt_secret = settings.jwt_signing_secret()
        # Lazy: the API starts (and /readyz says "not ready") even while Temporal is down.
        app.state.client = client or await temporal_client.connect(settings, lazy=True)
        log.info("api started", temporal=settings.temporal_address, workflows=sorted(app.state.catalog.specs))
        yield

    app = FastAPI(
        title="Steward",
        version=__version__,
        summary="Durable AI business workflows on Temporal.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(workflows.router)
    app.include_router(runs.router)
    app.add_middleware(RequestTelemetry)
    return app


def serve(settings: Settings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our JSON logging is already configured
        access_log=False,  # RequestTelemetry writes the access log
        lifespan="on",
    )
