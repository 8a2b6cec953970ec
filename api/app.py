"""The FastAPI application: one Temporal client per process, opened in the lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import inbox
from activities.artifacts.store import artifact_store
from activities.audit.activity import audit_log
from activities.events.subscriptions import SubscriptionStore
from api.definitions_watch import DefinitionsWatch
from api import openapi
from api.errors import install_error_handlers
from api.event_hub import EventHub
from api.paging import PageTokens
from api.log_paths import loggable_path
from api.metrics import ApiMetrics
from api.limits import AddressRateLimit, BodySizeLimit, PrincipalRateLimit, v1_rate_limit
from api.routes import (
    actions, activations, approvals, artifacts, audit, codec, events, health, hooks, incidents, me, metrics, runs,
    schedules, schemas, subscriptions, ui, workflows,
)
from policies import rbac
from steward import __version__, temporal_client
from steward.codec import EncryptionCodec, Keyring
from steward.logs import get_logger
from steward.rate_limits import RateLimits
from steward.settings import Settings
from workflows.catalog import discover_code

log = get_logger("api.access")


class AccessLog:
    """One JSON access-log line per request, with route template, status and duration, and the
    same three in the request metrics (api/metrics.py).

    FastAPI's native OpenTelemetry support creates the server span (and reads incoming trace
    context); this runs inside it, so each line carries that span's trace id. A plain ASGI
    middleware rather than BaseHTTPMiddleware: no extra task or body copy on the hot path.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500
        structlog.contextvars.bind_contextvars(method=scope["method"], path=loggable_path(scope["path"]))

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            seconds = time.perf_counter() - started
            log.info("request", route=route, status=status_code, duration_ms=round(seconds * 1000, 2))
            self.metrics.observe(route, scope["method"], status_code, seconds)


def create_app(settings: Settings, *, client: Client | None = None) -> FastAPI:
    """Build the app. Tests pass a connected `client`; otherwise the lifespan connects one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        rbac.check_startup(settings)  # a broken role policy stops start-up, naming file and line
        # Code workflows imported once; definitions read now (app.state.catalog) and reread on change.
        definitions = DefinitionsWatch(app.state, discover_code(settings.workflow_packages), settings.definition_dirs)
        definitions.load()
        app.state.jwt_secret = settings.jwt_signing_secret()
        app.state.page_tokens = PageTokens(app.state.jwt_secret)
        # One keyring for the API's artifact reads and its /codec endpoint, read once.
        keyring = Keyring.from_settings(settings)
        app.state.artifacts = artifact_store(settings, keyring)
        app.state.audit = audit_log(settings)  # reads (and the API's cancel entries); workers sign
        app.state.event_hub = EventHub(app.state.audit, settings.events_max_streams_per_tenant)
        app.state.subscriptions = SubscriptionStore(settings, keyring)
        app.state.codec = EncryptionCodec(keyring)
        # Lazy: the API starts (and /readyz says "not ready") even while Temporal is down.
        app.state.client = client or await temporal_client.connect(settings, lazy=True)
        log.info("api started", temporal=settings.temporal_address, workflows=sorted(app.state.catalog.specs))
        async with definitions.watching():
            yield
        await app.state.event_hub.close()
        await app.state.rate_limits.aclose()

    # FastAPIOffline: FastAPI's own docs pages, with their assets served locally instead of from a
    # CDN, so /docs and /redoc work on a machine without internet.
    app = FastAPIOffline(
        title="Steward",
        version=__version__,
        summary="Durable AI business workflows on Temporal.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    openapi.install(app)
    app.include_router(health.router)
    # One store of counts for both limits below: this process's memory, or the Redis every API
    # process shares (STEWARD_REDIS_URL).
    app.state.rate_limits = RateLimits.from_settings(settings)
    # Links people follow from a message carry their credential in the URL, and editors fetch
    # schemas with none: counted per address.
    address_limits = [Depends(AddressRateLimit(app.state.rate_limits, settings.rate_limit_per_minute))]
    # Every /v1 router counts against one per-principal budget; probes and the inbox page do not.
    # One limiter for the whole API: /v1 routers count through it, /codec after its own sign-in.
    app.state.rate_limit = PrincipalRateLimit(app.state.rate_limits, settings.rate_limit_per_minute)
    v1_limits = v1_rate_limit(app.state.rate_limit)
    app.include_router(me.router, dependencies=v1_limits)
    app.include_router(workflows.router, dependencies=v1_limits)
    app.include_router(runs.router, dependencies=v1_limits)
    app.include_router(schedules.router, dependencies=v1_limits)
    app.include_router(approvals.router, dependencies=v1_limits)
    app.include_router(artifacts.router, dependencies=v1_limits)
    app.include_router(audit.router, dependencies=v1_limits)
    app.include_router(events.router, dependencies=v1_limits)
    app.include_router(subscriptions.router, dependencies=v1_limits)
    app.include_router(incidents.router, dependencies=v1_limits)
    app.include_router(hooks.router, dependencies=v1_limits)
    app.include_router(codec.router)
    # The embedded Temporal UI beside /codec, one origin (api/routes/ui.py); its lifespan opens its client.
    app.include_router(ui.router)
    app.include_router(schemas.router, dependencies=address_limits)
    app.include_router(inbox.router)
    app.include_router(actions.router, dependencies=address_limits)
    app.include_router(activations.router, dependencies=address_limits)
    app.include_router(activations.pages, dependencies=address_limits)
    app.mount(inbox.STATIC_PATH, StaticFiles(directory=inbox.STATIC_DIR), name="inbox-static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.metrics = ApiMetrics()
    app.include_router(metrics.router)
    # Added last, so outermost: refused bodies are logged and counted too.
    app.add_middleware(AccessLog, metrics=app.state.metrics)
    return app


# Longer than any client's or proxy's idle timeout (httpx 5 s, nginx and cloud load balancers 60 s):
# the client then always closes an idle connection first. With uvicorn's 5 s both sides close at
# once, and a request sent on a connection the server is closing fails with a reset, a 502 behind
# a proxy (seen as httpx.ReadError under load).
KEEP_ALIVE_S = 75


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """How uvicorn serves the API, in `steward api` and in the suite alike."""
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our JSON logging is already configured
        access_log=False,  # AccessLog writes the access log
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_S,
        # Behind a reverse proxy the peer is the proxy: the client's address (per-address limits)
        # and scheme come from its X-Forwarded-* headers, from the proxies named here only.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def serve(settings: Settings) -> None:
    rbac.check_startup(settings)  # fail here, so `steward api` prints one line and exits 2
    uvicorn.Server(server_config(settings, create_app(settings))).run()
