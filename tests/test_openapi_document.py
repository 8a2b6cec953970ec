"""What /openapi.json promises, checked against what the API does: clients are generated from it.
tests/test_openapi_contract.py fuzzes every operation; these pin the promises one by one."""

from __future__ import annotations

import pytest

from tests.test_compliance_workflow import CLEAR

ADMIN = {"sub": "ada", "roles": ("admin",)}


@pytest.fixture
async def document(http) -> dict:
    return (await http.get("/openapi.json")).json()


async def test_each_cataloged_workflow_has_a_start_operation_typed_by_its_own_input(http, auth, document):
    workflows = [w["name"] for w in (await http.get("/v1/workflows", headers=auth())).json()["workflows"]]
    paths = document["paths"]
    assert "/v1/workflows/{name}/runs" not in paths  # served, but its `input` is any object
    for name in workflows:
        operation = paths[f"/v1/workflows/{name}/runs"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert document["components"]["schemas"][body]["properties"]["input"].get("properties") is not None, name
    applicant = document["components"]["schemas"]["ComplianceDocumentationApplicant"]
    assert {"full_name", "date_of_birth", "pep"} <= set(applicant["properties"])


async def test_operations_document_the_400_and_503_they_can_answer(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                assert "400" in operation["responses"], f"{method} {path}"
            if path.startswith("/v1/"):
                assert "503" in operation["responses"], f"{method} {path}"


async def test_names_the_api_checks_are_listed_for_clients(document):
    subscription = document["components"]["schemas"]["SubscriptionRequest"]["properties"]
    assert "run.completed" in subscription["event_types"]["items"]["enum"]
    assert "compliance-documentation" in subscription["workflows"]["items"]["enum"]


@pytest.mark.parametrize(("path", "allowed"), [("/v1/schedules", "GET, POST"), ("/codec/session", "DELETE, POST")])
async def test_a_method_a_path_does_not_serve_is_405_naming_every_method_it_does(http, auth, path, allowed):
    refused = await http.request("PUT", path, headers=auth(**ADMIN))
    assert refused.status_code == 405 and refused.headers["allow"] == allowed


async def test_a_start_input_is_checked_strictly_as_json_types(http, auth):
    body = {"input": {"applicant": {**CLEAR, "pep": 0}}}
    refused = await http.post("/v1/workflows/compliance-documentation/runs", json=body, headers=auth(**ADMIN))
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "input.applicant.pep"


@pytest.mark.parametrize("body", [{}, [], {"payload": []}, {"payloads": None}])
async def test_the_codec_refuses_a_body_that_names_no_payloads(http, auth, body):
    refused = await http.post("/codec/decode", json=body, headers=auth(**ADMIN))
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "payloads"


async def test_alertmanager_counts_and_label_names_are_checked_in_every_alert(http, auth):
    alert = {"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2026-11-30T00:00:00Z", "fingerprint": "a"}
    base = {"version": "4", "groupKey": "g", "status": "firing", "alerts": [alert]}
    hook = {**auth(roles=("operator",))}
    for bad in ({"truncatedAlerts": "1"}, {"alerts": [alert, {**alert, "labels": {"bad-name": "x"}}]},
                {"alerts": [{**alert, "endsAt": 0}]}):
        refused = await http.post("/v1/hooks/alertmanager", json={**base, **bad}, headers=hook)
        assert refused.status_code == 422, (bad, refused.text)
