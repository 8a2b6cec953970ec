"""Spans leave the process over OTLP/HTTP only when an OTLP endpoint is configured."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

EMIT_ONE_SPAN = """
from opentelemetry import trace
from steward.telemetry import configure_tracing, shutdown_tracing
configure_tracing("steward-probe")
trace.get_tracer("probe").start_span("probe-span").end()
shutdown_tracing()
"""


class Collector:
    """A real HTTP receiver standing in for an OpenTelemetry collector."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def serve(c: Collector) -> Iterator[Collector]:
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    yield from serve(Collector())


# The OTLP exporter's default endpoint: where a wrongly installed exporter would send.
OTLP_DEFAULT_PORT = 4318


@pytest.fixture
def default_port_collector() -> Iterator[Collector]:
    try:
        c = Collector(OTLP_DEFAULT_PORT)
    except OSError:
        pytest.skip(f"port {OTLP_DEFAULT_PORT} is in use here, so the default endpoint cannot be watched")
    yield from serve(c)


def emit(env_extra: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", EMIT_ONE_SPAN], env={**env, **env_extra}, check=True, timeout=60)


def test_spans_are_exported_to_the_configured_otlp_endpoint(collector):
    emit({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    assert len(collector.requests) == 1
    path, content_type, body = collector.requests[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    export = ExportTraceServiceRequest.FromString(body)
    resource = export.resource_spans[0]
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    spans = [s.name for scope in resource.scope_spans for s in scope.spans]
    assert service == "steward-probe" and spans == ["probe-span"]


def test_without_an_otlp_endpoint_nothing_is_sent(default_port_collector):
    emit({})  # the process has exited, and with it any exporter that could have sent
    assert default_port_collector.requests == []
