"""A Temporal from before an attribute was added gets it at start-up, not a stuck run."""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from steward import search_attributes
from steward.cli.supervisor import Supervisor
from steward.devserver import temporal_binary
from steward.temporal_client import register_search_attributes

# What a dev server's database registered before the approver inbox's attributes existed.
BEFORE_THE_INBOX = tuple(key for key in search_attributes.ALL
                         if key not in (search_attributes.APPROVAL_DECIDERS, search_attributes.APPROVAL_EXCLUDED))


async def test_steward_up_adds_the_attributes_an_older_data_dir_lacks_once(settings) -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(),
                                                search_attributes=BEFORE_THE_INBOX, dev_server_log_level="error")
    try:
        port = int(env.client.service_client.config.target_host.rsplit(":", 1)[1])
        supervisor = Supervisor(settings.model_copy(update={"temporal_port": port}))

        await supervisor._register_search_attributes()  # what `steward up` does once its server answers

        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=env.client.namespace))
        assert {key.name: int(key.indexed_value_type) for key in search_attributes.ALL}.items() \
            <= dict(listed.custom_attributes).items()
        assert await register_search_attributes(env.client) == []
    finally:
        await env.shutdown()
