"""The catalog and starting runs: validation, idempotency, and who a run belongs to."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.support import eventually, wait_for_run

DOCS = {"documents": [{"name": "policy.txt", "text": "All staff must verify identity.\nTwice."}]}


async def test_catalog_lists_workflows_with_json_schemas_and_hides_the_benchmark(http, auth):
    response = await http.get("/v1/workflows", headers=auth())
    assert response.status_code == 200
    by_name = {w["name"]: w for w in response.json()["workflows"]}
    fingerprint = by_name["document-fingerprint"]
    assert fingerprint["description"]
    assert "documents" in fingerprint["input_schema"]["properties"]
    assert "manifest_sha256" in fingerprint["output_schema"]["properties"]
    assert "steward-benchmark" not in by_name


async def test_started_run_completes_with_its_result_requester_and_tenant(http, auth, tenant):
    response = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS}, headers=auth(sub="bob"))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["workflow"] == "document-fingerprint"
    assert accepted["id"].startswith("document-fingerprint-")
    assert accepted["links"]["self"] == f"/v1/runs/{accepted['id']}"
    assert response.headers["location"] == accepted["links"]["self"]

    run = await wait_for_run(http, accepted["id"], auth())
    assert run["status"] == "completed"
    assert run["stage"] == "done"
    assert run["requested_by"] == "bob"
    assert run["tenant"] == tenant
    assert run["started_at"] and run["closed_at"]
    text = DOCS["documents"][0]["text"].encode()
    assert run["result"]["documents"][0]["sha256"] == hashlib.sha256(text).hexdigest()
    assert run["result"]["documents"][0]["words"] == 6
    assert run["error"] is None


async def test_invalid_input_is_422_naming_each_bad_field(http, auth):
    bad = {"documents": [{"name": "", "text": "x"}, {"text": "no name"}], "reference": "r" * 101}
    response = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": bad}, headers=auth())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    fields = {d["field"] for d in error["details"]}
    assert fields == {"input.documents.0.name", "input.documents.1.name", "input.reference"}


async def test_body_without_input_or_with_unknown_fields_is_422(http, auth):
    for body, field in [({}, "input"), ({"input": DOCS, "extra": 1}, "extra"),
                        ({"input": DOCS, "callback_url": "not a url"}, "callback_url")]:
        response = await http.post("/v1/workflows/document-fingerprint/runs", json=body, headers=auth())
        assert response.status_code == 422, body
        assert field in {d["field"] for d in response.json()["error"]["details"]}


async def test_malformed_json_is_422_not_500(http, auth):
    response = await http.post("/v1/workflows/document-fingerprint/runs", content=b"{not json",
                               headers={**auth(), "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"


async def test_unknown_workflow_is_404(http, auth):
    response = await http.post("/v1/workflows/no-such-workflow/runs", json={"input": {}}, headers=auth())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def count_runs(client, tenant: str) -> int:
    return (await client.count_workflows(f"Tenant = '{tenant}'")).count


async def test_same_idempotency_key_and_body_returns_the_same_run_once(http, auth, client, tenant):
    headers = {**auth(), "Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS}, headers=headers)
    await wait_for_run(http, first.json()["id"], auth())
    second = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["status"] == "completed"
    assert await eventually(lambda: _equals(count_runs(client, tenant), 1), "visibility to count one run")


async def _equals(awaitable, expected):
    return (await awaitable) == expected


async def test_same_idempotency_key_with_another_body_is_409(http, auth):
    headers = {**auth(), "Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS}, headers=headers)
    assert first.status_code == 202
    other = {"documents": [{"name": "other.txt", "text": "different"}]}
    second = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": other}, headers=headers)
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["details"][0]["field"] == "Idempotency-Key"


async def test_idempotency_keys_are_scoped_to_the_tenant(http, auth):
    key = f"shared-{uuid.uuid4()}"
    a = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS},
                        headers={**auth(tenant="tenant-a"), "Idempotency-Key": key})
    b = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS},
                        headers={**auth(tenant="tenant-b"), "Idempotency-Key": key})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 201])
async def test_malformed_idempotency_key_is_422_naming_the_header(http, auth, key):
    response = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS},
                               headers={**auth(), "Idempotency-Key": key})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "header.idempotency-key"


async def test_run_of_another_tenant_answers_exactly_like_an_unknown_run(http, auth):
    started = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": DOCS}, headers=auth())
    run_id = started.json()["id"]
    foreign = await http.get(f"/v1/runs/{run_id}", headers=auth(tenant="someone-else"))
    unknown = await http.get("/v1/runs/document-fingerprint-doesnotexist", headers=auth(tenant="someone-else"))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"].replace(run_id, "ID") == unknown.json()["error"]["message"].replace(
        "document-fingerprint-doesnotexist", "ID")
    cancel = await http.post(f"/v1/runs/{run_id}/cancel", headers=auth(tenant="someone-else"))
    assert cancel.status_code == 404
