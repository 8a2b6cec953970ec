"""Following runs: status and stage, lists filtered server-side and paged, cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support import eventually, wait_for_run

DOCS = {"documents": [{"name": "a.txt", "text": "alpha"}]}


async def start(http, headers, workflow: str, payload: dict) -> str:
    response = await http.post(f"/v1/workflows/{workflow}/runs", json={"input": payload}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def test_running_run_shows_status_running_and_its_current_stage(http, auth, gate):
    run_id = await start(http, auth(), "test-gated", gate)
    await eventually(lambda: _exists(gate["started_file"]), "the activity to start")
    run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
    assert run["status"] == "running"
    assert run["stage"] == "waiting-for-release"
    assert run["closed_at"] is None and run["result"] is None
    Path(gate["release_file"]).touch()
    assert (await wait_for_run(http, run_id, auth()))["status"] == "completed"


async def _exists(path: str) -> bool:
    return Path(path).exists()


async def test_failed_run_reports_the_typed_business_error(http, auth):
    run_id = await start(http, auth(), "test-failing", {"reason": "applicant withdrew"})
    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "failed"
    assert run["error"] == {"type": "TestBusinessRefusal", "message": "applicant withdrew"}
    assert run["result"] is None


async def test_cancel_stops_a_running_run_and_a_second_cancel_is_409(http, auth, gate):
    run_id = await start(http, auth(), "test-gated", gate)
    response = await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())
    assert response.status_code == 202
    assert response.json() == {"id": run_id, "cancel_requested": True, "links": {"self": f"/v1/runs/{run_id}"}}
    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "cancelled"
    again = await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_closed"


async def test_cancel_of_unknown_run_is_404(http, auth):
    response = await http.post("/v1/runs/never-started/cancel", headers=auth())
    assert response.status_code == 404


async def list_ids(http, headers, **params) -> list[str]:
    response = await http.get("/v1/runs", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["runs"]]


async def test_list_shows_only_the_callers_tenant_filtered_by_workflow_and_status(http, auth, gate):
    mine = await start(http, auth(), "document-fingerprint", DOCS)
    held = await start(http, auth(), "test-gated", gate)
    theirs = await start(http, auth(tenant="other-tenant-list"), "document-fingerprint", DOCS)
    await wait_for_run(http, mine, auth())

    async def listed() -> list[str] | None:
        ids = await list_ids(http, auth())
        return ids if {mine, held} <= set(ids) else None

    ids = await eventually(listed, "both runs in visibility")
    assert theirs not in ids
    await eventually(lambda: _listed_exactly(http, auth(), [mine], workflow="document-fingerprint", status="completed"),
                     "the completed run under its filter")
    await eventually(lambda: _listed_exactly(http, auth(), [held], status="running"), "the held run as running")
    assert await list_ids(http, auth(), status="failed") == []
    Path(gate["release_file"]).touch()
    await wait_for_run(http, held, auth())


async def _listed_exactly(http, headers, expected: list[str], **params) -> bool:
    return await list_ids(http, headers, **params) == expected


async def test_list_pages_through_every_run_with_next_page_token(http, auth):
    started = {await start(http, auth(), "document-fingerprint", DOCS) for _ in range(3)}
    # Visibility orders by close time: runs closing mid-paging would move between pages.
    for run_id in started:
        await wait_for_run(http, run_id, auth())
    await eventually(lambda: _count_is(http, auth(), 3), "three completed runs listed")
    seen: list[str] = []
    token = None
    for _ in range(5):
        params = {"page_size": 2, **({"next_page_token": token} if token else {})}
        page = (await http.get("/v1/runs", params=params, headers=auth())).json()
        seen += [r["id"] for r in page["runs"]]
        token = page["next_page_token"]
        if not token:
            break
    assert sorted(seen) == sorted(started)


async def _count_is(http, headers, n: int) -> bool:
    return len(await list_ids(http, headers, page_size=100, status="completed")) == n


async def test_list_rejects_bad_page_size_status_workflow_and_token(http, auth):
    cases = [({"page_size": 101}, 422, "page_size"), ({"page_size": 0}, 422, "page_size"),
             ({"status": "sleeping"}, 422, "status")]
    for params, status, field in cases:
        response = await http.get("/v1/runs", params=params, headers=auth())
        assert response.status_code == status, params
        assert response.json()["error"]["details"][0]["field"] == f"query.{field}"
    unknown = await http.get("/v1/runs", params={"workflow": "nope"}, headers=auth())
    assert unknown.status_code == 404
    bad_token = await http.get("/v1/runs", params={"next_page_token": "%%%"}, headers=auth())
    assert bad_token.status_code == 400
    assert bad_token.json()["error"]["code"] == "bad_request"


async def test_get_with_wait_answers_as_soon_as_the_run_ends(http, auth, gate):
    run_id = await start(http, auth(), "test-gated", gate)
    await eventually(lambda: _exists(gate["started_file"]), "the activity to start")

    async def release_soon() -> None:
        await asyncio.sleep(0.2)
        Path(gate["release_file"]).touch()

    releaser = asyncio.create_task(release_soon())
    response = await http.get(f"/v1/runs/{run_id}", params={"wait": 50}, headers=auth())
    await releaser
    run = response.json()
    assert (run["status"], run["result"], run["stage"]) == ("completed", {"attempts": 1}, "waiting-for-release")
    assert run["closed_at"] is not None


async def test_get_with_wait_on_a_run_that_stays_open_returns_it_running(http, auth, gate):
    run_id = await start(http, auth(), "test-gated", gate)
    response = await http.get(f"/v1/runs/{run_id}", params={"wait": 0.5}, headers=auth())
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert (await http.get(f"/v1/runs/{run_id}", params={"wait": 51}, headers=auth())).status_code == 422
    await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())


async def test_page_tokens_only_work_for_the_query_they_were_issued_for(http, auth):
    for _ in range(3):
        await start(http, auth(), "document-fingerprint", DOCS)
    await eventually(lambda: _count_is_at_least(http, auth(), 3), "three runs listed")
    page = (await http.get("/v1/runs", params={"page_size": 1}, headers=auth())).json()
    token = page["next_page_token"]
    assert token
    # Another filter, or another tenant, may not continue this listing.
    other_filter = await http.get("/v1/runs", params={"page_size": 1, "status": "completed",
                                                      "next_page_token": token}, headers=auth())
    other_tenant = await http.get("/v1/runs", params={"page_size": 1, "next_page_token": token},
                                  headers=auth(tenant="someone-else"))
    assert other_filter.status_code == other_tenant.status_code == 400
    assert (await http.get("/v1/runs", params={"page_size": 1, "next_page_token": token},
                           headers=auth())).status_code == 200


async def test_forged_page_token_is_refused_before_it_reaches_temporal(http, auth):
    import base64

    forged = base64.urlsafe_b64encode(b"\x00" * 16 + b"garbage the server would retry on").decode()
    for path in ("/v1/runs", "/v1/approvals"):
        response = await http.get(path, params={"next_page_token": forged},
                                  headers=auth(roles=("operator", "approver")))
        assert response.status_code == 400, path
        assert response.json()["error"]["details"][0]["field"] == "next_page_token"


async def _count_is_at_least(http, headers, n: int) -> bool:
    return len(await list_ids(http, headers, page_size=100)) >= n
