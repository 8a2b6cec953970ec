"""Each tenant's payloads under a key of its own: the codec endpoint decrypts only the caller's."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

from api.routes.codec import readable_by
from steward.codec import (
    TENANT_METADATA,
    EncryptionCodec,
    Keyring,
    KeyringError,
    TenantScopes,
    encrypting_for,
    is_encrypted,
    payload_tenant,
)
from steward.identity import Principal
from tests.conftest import TEST_ENCRYPTION_KEYS
from tests.support import wait_for_run

KEYRING = Keyring.parse(TEST_ENCRYPTION_KEYS, "tests")
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"full_name": "Zebulon Quillfeather"}')


def codec_in(context_workflow_id: str | None, scopes: TenantScopes) -> EncryptionCodec:
    codec = EncryptionCodec(KEYRING, scopes)
    if context_workflow_id is None:
        return codec
    return codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id=context_workflow_id))


def activity_context(workflow_id: str) -> ActivitySerializationContext:
    return ActivitySerializationContext(namespace="default", activity_id="1", activity_type="x",
                                        activity_task_queue="q", workflow_id=workflow_id, workflow_type="w",
                                        is_local=False)


async def test_a_tenants_payload_opens_only_with_that_tenants_key() -> None:
    with encrypting_for("acme"):
        [sealed] = await EncryptionCodec(KEYRING, TenantScopes()).encode([PLAIN])

    assert payload_tenant(sealed) == "acme" and b"Zebulon" not in sealed.data
    assert EncryptionCodec(KEYRING).decrypt(sealed, "acme") == PLAIN
    for wrong in ("globex", None):  # another tenant's key, and the keyring's own
        with pytest.raises(KeyringError, match="failed authentication"):
            EncryptionCodec(KEYRING).decrypt(sealed, wrong)


async def test_a_payload_relabelled_as_another_tenants_fails_authentication() -> None:
    with encrypting_for("acme"):
        [sealed] = await EncryptionCodec(KEYRING, TenantScopes()).encode([PLAIN])
    sealed.metadata[TENANT_METADATA] = b"globex"

    with pytest.raises(KeyringError, match="for tenant 'globex' failed authentication"):
        await EncryptionCodec(KEYRING, TenantScopes()).decode([sealed])


async def test_a_worker_writes_a_run_its_activities_and_its_children_for_the_tenant_of_the_runs_input() -> None:
    scopes = TenantScopes()
    with encrypting_for("acme"):  # the API starting the run
        [run_input] = await codec_in("review-1", scopes).encode([PLAIN])

    assert await codec_in("review-1", scopes).decode([run_input]) == [PLAIN]  # the worker reads the input

    written = {
        "the run's result": await codec_in("review-1", scopes).encode([PLAIN]),
        "an activity's input": await EncryptionCodec(KEYRING, scopes).with_context(
            activity_context("review-1")).encode([PLAIN]),
        "a child's input": await codec_in("review-1-compliance", scopes).encode([PLAIN]),
    }
    assert {what: payload_tenant(p) for what, [p] in written.items()} == dict.fromkeys(written, "acme")
    [unknown] = await codec_in("review-2", scopes).encode([PLAIN])  # a run nothing was read of
    assert payload_tenant(unknown) is None and is_encrypted(unknown)


async def test_payloads_from_before_tenant_keys_stay_readable_by_steward() -> None:
    kid, blob = KEYRING.encrypt(PLAIN.SerializeToString())  # as every payload was written before
    older = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": kid.encode()}, data=blob)

    assert await EncryptionCodec(KEYRING, TenantScopes()).decode([older]) == [PLAIN]


def test_the_codec_endpoint_reads_payloads_of_no_tenant_only_where_the_deployment_says(settings) -> None:
    kid, blob = KEYRING.encrypt(b"x")
    older = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": kid.encode()}, data=blob)
    operator = Principal(sub="olga", roles=("operator",), tenant="acme")

    assert not readable_by(operator, older, settings)
    assert readable_by(operator, older, settings.model_copy(update={"codec_decode_unscoped": True}))


def payloads_json(payloads: list[Payload]) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


async def test_the_codec_endpoint_decrypts_the_callers_tenants_payloads_and_returns_the_rest_as_sent(
        http, auth, tenant) -> None:
    mine, theirs = [], []
    for owner, into in ((tenant, mine), ("t-someone-else", theirs)):
        with encrypting_for(owner):
            into.extend(await EncryptionCodec(KEYRING, TenantScopes()).encode([PLAIN]))
    kid, blob = KEYRING.encrypt(b"older")
    nobodys = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": kid.encode()}, data=blob)
    sent = [*mine, *theirs, nobodys]

    response = await http.post("/codec/decode", content=payloads_json(sent),
                               headers={**auth(roles=("operator",)), "content-type": "application/json"})

    assert response.status_code == 200, response.text
    answered = list(json_format.Parse(response.content, Payloads()).payloads)
    assert answered == [PLAIN, *theirs, nobodys]


def encrypted_payloads_in(history: History) -> list[Payload]:
    """Every encrypted payload a history holds, wherever it sits in the events."""
    found: list[Payload] = []

    def walk(message) -> None:
        for descriptor, value in message.ListFields():
            if descriptor.message_type is None:
                continue
            if isinstance(value, Message):
                items = [value]
            elif descriptor.message_type.GetOptions().map_entry:  # memo and header fields
                items = list(value.values()) if descriptor.message_type.fields_by_name["value"].message_type else []
            else:  # a repeated field
                items = list(value)
            for item in items:
                if isinstance(item, Payload):
                    if is_encrypted(item):
                        found.append(item)
                else:
                    walk(item)

    for event in history.events:
        walk(event)
    return found


async def test_everything_a_run_writes_through_api_and_worker_is_its_tenants(http, auth, tenant, client, gate):
    started = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth())
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    Path(gate["release_file"]).touch()
    assert (await wait_for_run(http, run_id, auth()))["status"] == "completed"

    history = await client.get_workflow_handle(run_id).fetch_history()
    payloads = encrypted_payloads_in(History(events=history.events))

    # The input and memo (the API), the activity's input and result, the result (the worker).
    assert len(payloads) >= 5, len(payloads)
    assert {payload_tenant(p) for p in payloads} == {tenant}
    sealed = payloads_json(payloads)
    other = await http.post("/codec/decode", content=sealed, headers={
        **auth(roles=("operator",), tenant="t-someone-else"), "content-type": "application/json"})
    assert other.status_code == 200 and json_format.Parse(other.content, Payloads()).payloads == payloads
    own = await http.post("/codec/decode", content=sealed, headers={
        **auth(roles=("operator",)), "content-type": "application/json"})
    assert not [p for p in json_format.Parse(own.content, Payloads()).payloads if is_encrypted(p)]
