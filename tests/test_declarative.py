"""The declarative interpreter: a definition runs as its own workflow type, steps in the order
their needs allow, undone on failure, and keeps the definition it started with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from temporalio.worker import Worker

from tests.support import eventually, free_port, serve_api, wait_for_run

from workers.worker import sandbox_runner
from workflows.declarative import DeclarativeInput, DeclarativeWorkflow, definition_digest
from workflows.notifications import CHANNEL_ACTIVITIES

DEFINITION = {
    "id": "wip-smoke",
    "input": {"type": "object", "required": ["names"], "properties": {"names": {"type": "array"}}},
    "output": "{'greeted': steps.greet.output, 'skipped': steps.never.status}",
    "steps": [
        {"name": "pause", "sleep": "1s"},
        {"name": "never", "needs": ["pause"], "when": "size(input.names) > 10", "sleep": "1h"},
        {"name": "greet", "needs": ["pause"], "for_each": "input.names",
         "notify": {"channels": ["webhook"], "title": "Hello ${{ item }} (${{ index }})"}},
    ],
}


async def test_a_definition_runs_with_needs_when_and_for_each(client):
    queue = f"declarative-{uuid.uuid4().hex[:8]}"
    request = DeclarativeInput(definition=DEFINITION, definition_sha256=definition_digest(DEFINITION),
                               input={"names": ["Ada", "Grace"]})
    async with Worker(client, task_queue=queue, workflows=[DeclarativeWorkflow], activities=list(CHANNEL_ACTIVITIES),
                      workflow_runner=sandbox_runner()):
        result = await client.execute_workflow("wip-smoke", request, id=f"wip-{uuid.uuid4().hex}", task_queue=queue)
    assert result["output"] == {"greeted": [{"delivered": False, "channel": None}] * 2, "skipped": "skipped"}
    assert result["steps"]["pause"]["status"] == "completed"


async def test_a_failed_step_undoes_the_steps_before_it_through_their_compensation(client, settings):
    import pytest
    from temporalio.client import WorkflowFailureError

    from activities.http_call import http_call
    from tests.test_webhooks import Reply, serve_receiver

    async with serve_receiver() as receiver:
        receiver.script(Reply(status=201, body=b'{"id": "acc-7"}', headers={"content-type": "application/json"}),
                        Reply(status=400), default=Reply(status=204))
        definition = {
            "id": "wip-saga",
            "steps": [
                {"name": "create", "http": {"method": "POST", "url": f"{receiver.url}/accounts", "json": {"a": 1}},
                 "compensate": {"http": {"method": "POST", "url": f"{receiver.url}/accounts/created/cancel"}}},
                {"name": "bill", "http": {"method": "POST", "url": f"{receiver.url}/bills", "expect": [201]}},
            ],
        }
        request = DeclarativeInput(definition=definition, definition_sha256=definition_digest(definition), input={})
        queue = f"declarative-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[DeclarativeWorkflow], activities=[http_call],
                          workflow_runner=sandbox_runner()):
            with pytest.raises(WorkflowFailureError) as failure:
                await client.execute_workflow("wip-saga", request, id=f"wip-{uuid.uuid4().hex}", task_queue=queue)
    assert "create undone (http)" in str(failure.value.cause)
    assert [(r.path, r.headers["idempotency-key"].rsplit("/", 1)[1]) for r in receiver.requests] == [
        ("/hooks/accounts", "create"), ("/hooks/bills", "bill"), ("/hooks/accounts/created/cancel", "create-undo")]


@asynccontextmanager
async def api_with_definitions(settings, client, tmp_path: Path, **files: str) -> AsyncIterator[tuple[Path, Any]]:
    """An API of its own reading `files` (name → YAML) from a definitions folder: (folder, http)."""
    folder = tmp_path / "definitions"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    own = settings.model_copy(update={"api_port": free_port(), "definitions_dir": folder})
    async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield folder, http


JOB = """\
workflow:
  id: ci-test-job
  description: Waits for a test job's report.
  input: {type: object, required: [suite], properties: {suite: {type: string, minLength: 1}}}
  output: "{'suite': input.suite, 'passed': steps.report.output.passed, 'failed': steps.report.output.failed}"
  steps:
    - name: report
      wait_for: {event: job_finished, timeout: 1h}
"""


async def test_a_definition_is_listed_started_and_keeps_its_definition_when_the_file_changes(
        client, settings, worker, auth, tmp_path):
    async with api_with_definitions(settings, client, tmp_path, job=JOB) as (folder, http):
        listed = {w["name"]: w for w in (await http.get("/v1/workflows", headers=auth())).json()["workflows"]}
        job = listed["ci-test-job"]
        assert job["tags"] == ["declarative"] and job["input_schema"]["required"] == ["suite"]
        refused = await http.post("/v1/workflows/ci-test-job/runs", json={"input": {"suite": ""}}, headers=auth())
        assert refused.status_code == 422 and "suite" in refused.text

        started = await http.post("/v1/workflows/ci-test-job/runs", json={"input": {"suite": "smoke"}},
                                  headers=auth())
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]

        async def waiting() -> bool | None:
            run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
            return True if run["stage"] == "report" else None

        await eventually(waiting, "the run to wait for its report")
        (folder / "job.yaml").write_text(JOB.replace("job_finished", "something_else"))  # under the running run
        posted = await http.post(f"/v1/runs/{run_id}/events/job_finished", json={"payload": {"passed": 41,
                                 "failed": 1}}, headers=auth())
        assert posted.status_code == 202, posted.text
        run = await wait_for_run(http, run_id, auth())
        assert run["status"] == "completed", run
        assert run["result"]["output"] == {"suite": "smoke", "passed": 41, "failed": 1}
        assert len(run["result"]["definition_sha256"]) == 64
        assert run["definition_sha256"] == run["result"]["definition_sha256"]  # in the details while it runs, too
        audit = (await http.get(f"/v1/runs/{run_id}/audit", headers=auth(roles=("auditor",)))).json()
        began = next(entry for entry in audit["entries"] if entry["kind"] == "run.started")
        assert began["data"]["definition_sha256"] == run["definition_sha256"]
        closed = await http.post(f"/v1/runs/{run_id}/events/job_finished", json={}, headers=auth())
        assert closed.status_code == 409


REVIEWED = """\
workflow:
  id: reviewed-fingerprint
  description: Fingerprints a document once a person approves.
  input: {type: object, required: [text], properties: {text: {type: string}}}
  output: "{'approved': steps.review.output.approved, 'manifest': steps.fingerprint.output.manifest_sha256}"
  steps:
    - name: review
      approval: {title: "Fingerprint this?", summary: "A document waits.", roles: [approver]}
    - name: fingerprint
      needs: [review]
      when: steps.review.output.approved
      workflow: {name: document-fingerprint, input: {documents: [{name: a.txt, text: "${{ input.text }}"}]}}
"""


async def test_a_declarative_approval_is_decided_through_the_api_and_gates_the_next_step(
        client, settings, worker, auth, tmp_path):
    async with api_with_definitions(settings, client, tmp_path, reviewed=REVIEWED) as (_, http):
        started = await http.post("/v1/workflows/reviewed-fingerprint/runs", json={"input": {"text": "hello"}},
                                  headers=auth(sub="rita", roles=("requester",)))
        run_id = started.json()["id"]

        async def waiting() -> bool | None:
            run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
            return True if run["status"] == "waiting_for_approval" else None

        await eventually(waiting, "the run to wait for a person")
        decided = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve"},
                                  headers=auth(sub="vera", roles=("approver",)))
        assert decided.status_code == 200, decided.text
        run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed", run
    assert run["result"]["output"]["approved"] is True and len(run["result"]["output"]["manifest"]) == 64


def _request(definition: dict[str, Any], **inputs: Any) -> DeclarativeInput:
    return DeclarativeInput(definition=definition, definition_sha256=definition_digest(definition), input=inputs)


async def test_a_step_starts_when_its_own_needs_finish_not_when_every_earlier_step_has(client):
    from temporalio.client import WorkflowExecutionStatus

    from activities.http_call import http_call
    from tests.test_webhooks import serve_receiver
    from workflows.declarative import EVENT_SIGNAL, ExternalEvent

    async with serve_receiver() as receiver:
        definition = {"id": "wip-graph", "output": "steps.after_quick.output.status_code", "steps": [
            {"name": "slow", "wait_for": {"event": "go", "timeout": "10m"}},
            {"name": "quick", "sleep": "1s"},
            {"name": "after_quick", "needs": ["quick"], "http": {"url": f"{receiver.url}/after"}},
            {"name": "last", "needs": ["slow", "after_quick"], "sleep": "1s"},
        ]}
        queue = f"declarative-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[DeclarativeWorkflow], activities=[http_call],
                          workflow_runner=sandbox_runner()):
            handle = await client.start_workflow("wip-graph", _request(definition), id=f"wip-{uuid.uuid4().hex}",
                                                 task_queue=queue)

            async def called() -> bool | None:
                return True if receiver.requests else None

            await eventually(called, "the step after `quick` to run while `slow` still waits")
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            await handle.signal(EVENT_SIGNAL, ExternalEvent(name="go"))
            result = await handle.result()
    assert result["output"] == 200 and list(result["steps"]) == ["quick", "after_quick", "slow", "last"]


async def test_a_failed_step_cancels_the_steps_still_running_and_undoes_them_newest_first(client):
    import pytest
    from temporalio.client import WorkflowFailureError

    from activities.http_call import http_call
    from tests.test_webhooks import Reply, serve_receiver

    async with serve_receiver() as receiver:
        receiver.script(Reply(status=201), Reply(status=400), default=Reply(status=204))
        definition = {"id": "wip-cancel-siblings", "steps": [
            {"name": "waiting", "wait_for": {"event": "never", "timeout": "1h"},
             "compensate": {"http": {"url": f"{receiver.url}/undo-waiting"}}},
            {"name": "create", "http": {"url": f"{receiver.url}/create"},
             "compensate": {"http": {"url": f"{receiver.url}/undo-create"}}},
            {"name": "bill", "needs": ["create"], "http": {"url": f"{receiver.url}/bill", "expect": [201]}},
        ]}
        queue = f"declarative-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[DeclarativeWorkflow], activities=[http_call],
                          workflow_runner=sandbox_runner()):
            with pytest.raises(WorkflowFailureError) as failure:
                await client.execute_workflow("wip-cancel-siblings", _request(definition),
                                              id=f"wip-{uuid.uuid4().hex}", task_queue=queue)
    assert "answered 400" in str(failure.value.cause) and "undone" in str(failure.value.cause)
    assert [r.path for r in receiver.requests] == ["/hooks/create", "/hooks/bill", "/hooks/undo-create",
                                                   "/hooks/undo-waiting"]


CHILD = """\
workflow:
  id: greeting-child
  input: {type: object, required: [name], properties: {name: {type: string}}}
  output: "'Hello, ' + input.name"
  steps:
    - name: pause
      sleep: 1s
"""
PARENT = """\
workflow:
  id: greeting-parent
  input: {type: object, required: [name], properties: {name: {type: string}}}
  output: steps.greet.output.output
  steps:
    - name: greet
      workflow: {name: greeting-child, input: {name: "${{ input.name }}"}}
"""


async def test_a_definition_starts_another_definition_as_a_child_carrying_its_definition(
        client, settings, worker, auth, tmp_path):
    async with api_with_definitions(settings, client, tmp_path, parent=PARENT, child=CHILD) as (_, http):
        started = await http.post("/v1/workflows/greeting-parent/runs", json={"input": {"name": "Ada"}},
                                  headers=auth())
        assert started.status_code == 202, started.text
        run = await wait_for_run(http, started.json()["id"], auth())
        assert run["status"] == "completed", run
        assert run["result"]["output"] == "Hello, Ada"
        child = (await http.get(f"/v1/runs/{run['id']}-greet", headers=auth())).json()
    assert child["workflow"] == "greeting-child" and child["status"] == "completed"
    assert len(child["definition_sha256"]) == 64 and child["definition_sha256"] != run["definition_sha256"]
