"""Declarative definitions are reread while the API runs: adding, editing, breaking or deleting a
file in the definitions folder changes what the API lists and starts, with no restart."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import eventually, wait_for_run
from tests.test_declarative import api_with_definitions

GREETING = """\
workflow:
  id: reload-greeting
  description: Greets a team after a short pause.
  input: {type: object, required: [team], properties: {team: {type: string, minLength: 1}}}
  output: "{'greeting': 'Hello ' + input.team}"
  steps:
    - name: pause
      sleep: 1s
"""

SHARDED_GREETING = GREETING.replace(
    "required: [team], properties: {team: {type: string, minLength: 1}}",
    "required: [team, shard], properties: {team: {type: string, minLength: 1}, shard: {type: integer, minimum: 1}}")

PAUSE = """\
workflow:
  id: reload-pause
  description: Only pauses.
  steps:
    - name: pause
      sleep: 1s
"""


async def listed(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await http.get("/v1/workflows", headers=headers)
    assert response.status_code == 200, response.text
    return {w["name"]: w for w in response.json()["workflows"]}


def logged(log_lines, event: str) -> list[dict[str, Any]]:
    return [line for line in log_lines.events() if line.get("event") == event]


async def test_a_definition_added_while_the_api_runs_is_listed_as_declarative_and_runs(
        client, settings, worker, auth, tmp_path, log_lines):
    async with api_with_definitions(settings, client, tmp_path) as (folder, http):
        assert "reload-greeting" not in await listed(http, auth())

        (folder / "greeting.yaml").write_text(GREETING)

        async def appeared() -> dict[str, Any] | None:
            return (await listed(http, auth())).get("reload-greeting")

        greeting = await eventually(appeared, "the added definition to be listed")
        assert greeting["tags"] == ["declarative"] and greeting["input_schema"]["required"] == ["team"]
        started = await http.post("/v1/workflows/reload-greeting/runs", json={"input": {"team": "core"}},
                                  headers=auth())
        assert started.status_code == 202, started.text
        run = await wait_for_run(http, started.json()["id"], auth())
    assert run["status"] == "completed", run
    assert run["result"]["output"] == {"greeting": "Hello core"}
    reloads = logged(log_lines, "declarative definitions reloaded")
    assert {"added": ["reload-greeting"], "changed": [], "removed": []}.items() <= reloads[0].items()


async def test_an_edited_definitions_new_input_schema_is_what_starting_a_run_checks(
        client, settings, worker, auth, tmp_path, log_lines):
    async with api_with_definitions(settings, client, tmp_path, greeting=GREETING) as (folder, http):
        before = await http.post("/v1/workflows/reload-greeting/runs", json={"input": {"team": "core"}},
                                 headers=auth())
        assert before.status_code == 202, before.text

        (folder / "greeting.yaml").write_text(SHARDED_GREETING)

        async def sharded() -> bool:
            return "shard" in (await listed(http, auth()))["reload-greeting"]["input_schema"]["required"]

        await eventually(sharded, "the edited input schema to be listed")
        refused = await http.post("/v1/workflows/reload-greeting/runs", json={"input": {"team": "core"}},
                                  headers=auth())
        assert refused.status_code == 422 and "shard" in refused.text, refused.text
        accepted = await http.post("/v1/workflows/reload-greeting/runs",
                                   json={"input": {"team": "core", "shard": 2}}, headers=auth())
        assert accepted.status_code == 202, accepted.text
    reloads = logged(log_lines, "declarative definitions reloaded")
    assert {"added": [], "changed": ["reload-greeting"], "removed": []}.items() <= reloads[-1].items()


async def test_a_deleted_definitions_workflow_disappears_and_cannot_be_started(
        client, settings, worker, auth, tmp_path):
    async with api_with_definitions(settings, client, tmp_path, greeting=GREETING, pause=PAUSE) as (folder, http):
        assert {"reload-greeting", "reload-pause"} <= (await listed(http, auth())).keys()

        (folder / "greeting.yaml").unlink()

        async def gone() -> bool:
            return "reload-greeting" not in await listed(http, auth())

        await eventually(gone, "the deleted definition to leave the list")
        refused = await http.post("/v1/workflows/reload-greeting/runs", json={"input": {"team": "core"}},
                                  headers=auth())
        assert refused.status_code == 404, refused.text
        assert "reload-pause" in await listed(http, auth())


async def test_a_definition_made_broken_is_logged_and_left_out_while_the_others_stay(
        client, settings, worker, auth, tmp_path, log_lines):
    async with api_with_definitions(settings, client, tmp_path, greeting=GREETING, pause=PAUSE) as (folder, http):
        (folder / "greeting.yaml").write_text(GREETING.replace("sleep: 1s", "sleep: soon"))

        async def left_out() -> bool:
            return "reload-greeting" not in await listed(http, auth())

        await eventually(left_out, "the broken definition to leave the list")
        workflows = await listed(http, auth())
        assert "reload-pause" in workflows and "compliance-documentation" in workflows
        started = await http.post("/v1/workflows/reload-pause/runs", json={"input": {}}, headers=auth())
        assert started.status_code == 202, started.text
    problems = [line["problem"] for line in logged(log_lines, "declarative definition not loaded")]
    where = f"{folder / 'greeting.yaml'}:8:14: workflow.steps[0].sleep"
    assert any(problem.startswith(where) for problem in problems), problems
    reloads = logged(log_lines, "declarative definitions reloaded")
    assert {"added": [], "changed": [], "removed": ["reload-greeting"]}.items() <= reloads[-1].items()


async def test_a_reload_that_fails_is_logged_and_the_watch_reads_the_next_change(
        client, settings, worker, auth, tmp_path, log_lines, monkeypatch):
    from api import definitions_watch

    read = definitions_watch.with_definitions
    failures = []

    def fails_once(*args: Any) -> Any:
        if not failures:
            failures.append(args)
            raise RuntimeError("a reload bug")
        return read(*args)

    async with api_with_definitions(settings, client, tmp_path, pause=PAUSE) as (folder, http):
        monkeypatch.setattr(definitions_watch, "with_definitions", fails_once)
        (folder / "greeting.yaml").write_text(GREETING)

        async def failed() -> bool:
            return bool(logged(log_lines, "declarative definitions not reloaded"))

        await eventually(failed, "the failed reload to be logged")
        workflows = await listed(http, auth())  # the catalog as it was before the failed read
        assert "reload-pause" in workflows and "reload-greeting" not in workflows
        (folder / "second.yaml").write_text(PAUSE.replace("reload-pause", "reload-second"))

        async def caught_up() -> bool:
            return {"reload-greeting", "reload-second", "reload-pause"} <= (await listed(http, auth())).keys()

        await eventually(caught_up, "the next change to be read")
    assert "a reload bug" in logged(log_lines, "declarative definitions not reloaded")[0]["exception"]
