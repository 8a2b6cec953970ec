"""The one way Steward processes connect to Temporal.

Connection details come from Temporal's envconfig (a TOML profile and TEMPORAL_* variables:
address, namespace, TLS, API key) and fall back to the embedded dev server. Every client uses
the same data converter, so what the API writes the worker reads, and the same tracing
interceptor, so a trace runs from the HTTP request into the workflow's activities.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from steward.settings import Settings

DATA_CONVERTER: DataConverter = pydantic_data_converter


def connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for Client.connect: the envconfig profile over Steward's defaults."""
    options: dict[str, Any] = dict(settings.temporal_profile.to_client_connect_config())
    options["target_host"] = settings.temporal_address
    options["namespace"] = settings.temporal_namespace
    return options


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    return await Client.connect(
        **connect_options(settings),
        data_converter=DATA_CONVERTER,
        interceptors=[TracingInterceptor()],
        lazy=lazy,
    )
