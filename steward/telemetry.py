"""OpenTelemetry tracing for every Steward process.

Spans are always created (so log lines carry a trace id), and exported over OTLP/HTTP only when
OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-specific variable) is set: no collector, no export.
Temporal's TracingInterceptor, installed on the client, carries the context from an API request
into the workflow and its activities.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configure_tracing(service_name: str, *, processor: SpanProcessor | None = None) -> TracerProvider:
    """Install the process's tracer provider once; later calls only add `processor`."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        # OTEL_SERVICE_NAME, when set, names the service in the operator's terms.
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        if any(os.environ.get(v) for v in _OTLP_VARIABLES):
            # Imported here: the exporter pulls in protobuf/HTTP machinery only export needs.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    if processor is not None:
        provider.add_span_processor(processor)
    return provider


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
