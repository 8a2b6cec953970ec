"""Schedules through the API, on the real Temporal dev server: they fire, skip overlapping runs,
pause, backfill, validate their input when created, and belong to one tenant.

Temporal's time-skipping test server does not implement schedules (CreateSchedule is
"unimplemented"), so these run in real time with one-second intervals, triggers and backfills.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support import eventually, wait_for_run

FINGERPRINT = {"documents": [{"name": "a.txt", "text": "hello"}]}


def schedule(name: str | None = None, **changes: Any) -> dict[str, Any]:
    return {"name": name or f"s-{uuid.uuid4().hex[:8]}", "workflow": "document-fingerprint",
            "input": FINGERPRINT, "spec": {"cron": "0 2 * * *"}, "timezone": "Europe/Berlin", **changes}


async def created(http, auth, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/schedules", json=body, headers=auth())
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_schedule_fires_on_its_interval_and_its_runs_are_the_owners(http, auth):
    made = await created(http, auth, schedule(spec={"interval": "PT1S"}, note="every second, for the test"))
    assert made["owner"] == "alice" and made["note"] == "every second, for the test"
    assert len(made["next_action_times"]) == 5

    async def fired() -> dict | None:
        view = (await http.get(f"/v1/schedules/{made['name']}", headers=auth())).json()
        return view if view["recent_actions"] else None

    view = await eventually(fired, "the schedule to start a run")
    await http.delete(f"/v1/schedules/{made['name']}", headers=auth())
    run = await wait_for_run(http, view["recent_actions"][0]["run_id"], auth())
    assert run["status"] == "completed" and run["workflow"] == "document-fingerprint"
    assert run["schedule"] == made["name"] and run["requested_by"] == "alice"
    listed = (await http.get("/v1/runs", params={"workflow": "document-fingerprint"}, headers=auth())).json()
    assert run["id"] in [r["id"] for r in listed["runs"]]


async def test_the_input_and_the_spec_are_checked_when_the_schedule_is_created(http, auth):
    cases = [
        (schedule(input={"documents": []}), "input.documents"),
        (schedule(spec={"cron": "0 2 * * *", "interval": "PT1H"}), "spec"),
        (schedule(spec={"cron": "every day"}), "spec"),
        (schedule(timezone="Mars/Olympus"), "timezone"),
        (schedule(workflow="no-such-workflow"), "workflow"),
        (schedule(name="Not A Name"), "name"),
        (schedule(overlap="sometimes"), "overlap"),
    ]
    for body, field in cases:
        response = await http.post("/v1/schedules", json=body, headers=auth())
        assert response.status_code == 422, (body, response.text)
        assert field in [d["field"] for d in response.json()["error"]["details"]], (field, response.text)
    listed = (await http.get("/v1/schedules", headers=auth())).json()
    assert listed["schedules"] == []  # nothing half-made


async def test_the_same_request_again_changes_nothing_and_another_one_is_a_conflict(http, auth):
    body = schedule(name="nightly")
    first = await created(http, auth, body)
    again = await http.post("/v1/schedules", json=body, headers=auth())
    assert again.status_code == 200 and again.json()["created_at"] == first["created_at"]
    other = await http.post("/v1/schedules", json={**body, "spec": {"cron": "0 3 * * *"}}, headers=auth())
    assert other.status_code == 409 and other.json()["error"]["code"] == "schedule_exists"
    changed = await http.patch("/v1/schedules/nightly", json={"spec": {"cron": "0 3 * * *"}}, headers=auth())
    assert changed.status_code == 200 and changed.json()["spec"]["cron"] == "0 3 * * *"
    assert changed.json()["next_action_times"][0].endswith(("01:00:00Z", "02:00:00Z"))  # 03:00 in Berlin
    bad = await http.patch("/v1/schedules/nightly", json={"input": {"documents": []}}, headers=auth())
    assert bad.status_code == 422 and "input.documents" in bad.text
    assert (await http.delete("/v1/schedules/nightly", headers=auth())).status_code == 204
    assert (await http.get("/v1/schedules/nightly", headers=auth())).status_code == 404


async def test_overlap_skip_starts_no_second_run_while_the_first_is_going(http, auth, gate):
    made = await created(http, auth, schedule(workflow="test-gated", input=gate, overlap="skip"))
    name = made["name"]
    assert (await http.post(f"/v1/schedules/{name}/trigger", json={}, headers=auth())).status_code == 202

    async def running() -> dict | None:
        view = (await http.get(f"/v1/schedules/{name}", headers=auth())).json()
        return view if view["recent_actions"] and Path(gate["started_file"]).exists() else None

    view = await eventually(running, "the first triggered run to start")
    await http.post(f"/v1/schedules/{name}/trigger", json={}, headers=auth())

    async def skipped() -> dict | None:
        view = (await http.get(f"/v1/schedules/{name}", headers=auth())).json()
        return view if view["actions_skipped_overlap"] == 1 else None

    view = await eventually(skipped, "the second trigger to be skipped")
    assert len(view["recent_actions"]) == 1
    Path(gate["release_file"]).touch()
    run = await wait_for_run(http, view["recent_actions"][0]["run_id"], auth())
    assert run["status"] == "completed"
    await http.delete(f"/v1/schedules/{name}", headers=auth())


async def test_a_paused_schedule_starts_nothing_until_it_is_unpaused(http, auth):
    made = await created(http, auth, schedule(spec={"interval": "PT1S"}, paused=True, note="held for the test"))
    name = made["name"]
    assert made["paused"] is True and made["note"] == "held for the test"
    await asyncio.sleep(3)  # three intervals: a paused schedule takes none of them
    view = (await http.get(f"/v1/schedules/{name}", headers=auth())).json()
    assert view["actions_taken"] == 0 and view["recent_actions"] == []

    unpaused = await http.post(f"/v1/schedules/{name}/unpause", json={"note": "go"}, headers=auth())
    assert unpaused.json()["paused"] is False and unpaused.json()["note"] == "go"

    async def fired() -> bool | None:
        return True if (await http.get(f"/v1/schedules/{name}", headers=auth())).json()["actions_taken"] else None

    await eventually(fired, "the unpaused schedule to start a run")
    paused = await http.post(f"/v1/schedules/{name}/pause", json={}, headers=auth())
    assert paused.json()["paused"] is True and paused.json()["note"] == "paused by alice"
    await http.delete(f"/v1/schedules/{name}", headers=auth())


async def test_a_backfill_starts_the_runs_a_past_range_would_have_had(http, auth):
    made = await created(http, auth, schedule(spec={"cron": "0 * * * *"}, timezone="UTC", overlap="allow_all"))
    name = made["name"]
    end = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=3)  # covers three full hours: 3 runs
    response = await http.post(f"/v1/schedules/{name}/backfill", headers=auth(), json={
        "start_at": start.isoformat(), "end_at": end.isoformat()})
    assert response.status_code == 202, response.text

    async def backfilled() -> dict | None:
        view = (await http.get(f"/v1/schedules/{name}", headers=auth())).json()
        return view if len(view["recent_actions"]) == 3 else None

    view = await eventually(backfilled, "the backfill's three runs")
    assert sorted(a["scheduled_at"][11:16] for a in view["recent_actions"]) == sorted(
        (start + timedelta(hours=h)).replace(minute=0).strftime("%H:%M") for h in (1, 2, 3))
    for action in view["recent_actions"]:
        assert (await wait_for_run(http, action["run_id"], auth()))["status"] == "completed"
    refused = await http.post(f"/v1/schedules/{name}/backfill", headers=auth(), json={
        "start_at": end.isoformat(), "end_at": start.isoformat()})
    assert refused.status_code == 422
    await http.delete(f"/v1/schedules/{name}", headers=auth())


async def test_a_schedule_belongs_to_its_tenant_and_needs_schedules_manage(http, auth):
    made = await created(http, auth, schedule(name="weekly"))
    other = {"tenant": f"t-{uuid.uuid4().hex[:12]}"}
    assert (await http.get("/v1/schedules/weekly", headers=auth(**other))).status_code == 404
    assert (await http.post("/v1/schedules/weekly/trigger", json={}, headers=auth(**other))).status_code == 404
    assert (await http.delete("/v1/schedules/weekly", headers=auth(**other))).status_code == 404
    assert (await http.get("/v1/schedules", headers=auth(**other))).json()["schedules"] == []
    theirs = await http.post("/v1/schedules", json=schedule(name="weekly"), headers=auth(**other))
    assert theirs.status_code == 201  # the same name in another tenant is another schedule
    mine = (await http.get("/v1/schedules", headers=auth())).json()["schedules"]
    assert [s["name"] for s in mine] == ["weekly"] and mine[0]["created_at"] == made["created_at"]

    refused = await http.post("/v1/schedules", json=schedule(), headers=auth(roles=("requester",)))
    assert refused.status_code == 403 and "schedules:manage" in refused.text
    for headers in (auth(), auth(**other)):
        await http.delete("/v1/schedules/weekly", headers=headers)


async def test_the_weekly_re_review_starts_a_compliance_review_for_each_case_the_query_selects(
        http, auth, settings):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.support import free_port, serve_asgi
    from tests.test_definition_examples import worker_settings

    asked: list[dict[str, str]] = []

    async def cases(request: Request) -> JSONResponse:
        asked.append(dict(request.query_params))
        applicants = [{"full_name": name, "date_of_birth": "1980-01-01", "country": "DE", "document_id": f"P-{i}",
                       "occupation": "engineer", "annual_income": 70000, "source_of_funds": "salary", "pep": False}
                      for i, name in enumerate(["Ada Example", "Grace Example"])]
        return JSONResponse({"cases": [{"applicant": a} for a in applicants]})

    port = free_port()
    async with serve_asgi(Starlette(routes=[Route("/api/cases", cases)]), port):
        with worker_settings(http_endpoints={"cases": f"http://127.0.0.1:{port}/api"}):
            made = await created(http, auth, {"name": "weekly-re-review", "workflow": "re-review-high-risk",
                                              "input": {"risk": "high"}, "spec": {"cron": "0 6 * * 1"},
                                              "timezone": "Europe/Berlin"})
            await http.post("/v1/schedules/weekly-re-review/trigger", json={}, headers=auth())

            async def started() -> dict | None:
                view = (await http.get("/v1/schedules/weekly-re-review", headers=auth())).json()
                return view if view["recent_actions"] else None

            view = await eventually(started, "the triggered re-review")
            run = await wait_for_run(http, view["recent_actions"][0]["run_id"], auth())
    await http.delete(f"/v1/schedules/{made['name']}", headers=auth())
    assert run["status"] == "completed", run
    assert run["schedule"] == "weekly-re-review" and asked == [{"due": "re-review", "risk": "high"}]
    assert run["result"]["output"] == {"selected": 2, "reviews": [{"decision": "approved", "risk_level": "low"}] * 2}
    reviews = (await http.get("/v1/runs", params={"workflow": "compliance-documentation"}, headers=auth())).json()
    assert {r["id"] for r in reviews["runs"]} == {f"{run['id']}-review-0", f"{run['id']}-review-1"}


async def test_a_spec_temporal_refuses_is_a_422_naming_the_spec(http, auth):
    for spec in ({"cron": "61 2 * * *"}, {"calendar": [{"hour": [25]}]}):
        response = await http.post("/v1/schedules", json=schedule(spec=spec), headers=auth())
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "spec"
