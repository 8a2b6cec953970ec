"""The one way Steward processes connect to Temporal.

Connection details come from Temporal's envconfig (a TOML profile and TEMPORAL_* variables:
address, namespace, TLS, API key) and fall back to the embedded dev server. Every client uses
the same encrypting data converter, so what the API writes the worker reads and Temporal's
database holds no payload in clear; the same tracing interceptor,
so a trace runs from the HTTP request into the workflow's activities; and the identity
interceptor, so the principal the API verified reaches the workflow (steward/identity_headers.py).
"""

from __future__ import annotations

from typing import Any

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from steward import search_attributes
from steward.codec import Keyring, data_converter
from steward.identity import assertion_key
from steward.metric_names import HISTOGRAM_BUCKETS
from steward.identity_headers import IdentityInterceptor
from steward.settings import Settings

def data_converter_for(settings: Settings) -> DataConverter:
    """Pydantic payloads, AES-256-GCM encrypted with the configured keyring (steward/codec.py)."""
    return data_converter(Keyring.from_settings(settings))


def connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for Client.connect: the envconfig profile over Steward's defaults."""
    options: dict[str, Any] = dict(settings.temporal_profile.to_client_connect_config())
    options["target_host"] = settings.temporal_address
    options["namespace"] = settings.temporal_namespace
    return options


def interceptors(settings: Settings) -> list[Any]:
    """Tracing, and the verified-principal headers (which workers built on the client inherit)."""
    return [TracingInterceptor(), IdentityInterceptor(assertion_key(settings.jwt_signing_secret()))]


async def connect(settings: Settings, *, lazy: bool = False, metrics: bool = False) -> Client:
    """`metrics`: serve the SDK's metrics, and those workflows and activities record through its
    meter, for Prometheus on settings.worker_metrics_port (the worker's client)."""
    return await Client.connect(
        **connect_options(settings),
        data_converter=data_converter_for(settings),
        interceptors=interceptors(settings),
        lazy=lazy,
        runtime=metrics_runtime(settings) if metrics and settings.worker_metrics_port else None,
    )


def metrics_runtime(settings: Settings) -> Runtime:
    # Histograms in seconds and counters ending in _total, as Prometheus names them (the API's
    # metrics, from prometheus_client, look the same).
    prometheus = PrometheusConfig(bind_address=f"{settings.worker_metrics_host}:{settings.worker_metrics_port}",
                                  durations_as_seconds=True, counters_total_suffix=True,
                                  histogram_bucket_overrides=HISTOGRAM_BUCKETS)
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


async def register_search_attributes(client: Client) -> list[str]:
    """Add each search attribute of search_attributes.ALL the namespace lacks; the names added.

    The embedded dev server registers its `--search-attribute` flags only when it creates its
    database, so a data dir from before an attribute was added would lack it, and every run
    setting it would fail its workflow tasks. `steward up` calls this once its server answers.
    """
    namespace = client.namespace
    existing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    known = {*existing.custom_attributes, *existing.system_attributes}
    missing = {key.name: int(key.indexed_value_type) for key in search_attributes.ALL if key.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
    return sorted(missing)
