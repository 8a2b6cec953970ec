"""The audit trail end to end: runs write it without code of their own, the API serves it (also
after Temporal has forgotten the run), a SIEM reads it as JSON Lines, and it verifies."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

from tests.support import eventually, wait_for_run
from tests.test_compliance_workflow import APPROVER, CLEAR, PAYSLIP, waiting_for_approval

REPO = Path(__file__).resolve().parents[1]
AUDITOR = {"sub": "ada", "roles": ("auditor",)}


async def reviewed_run(http, auth, key: str) -> tuple[str, dict]:
    """A politically exposed applicant, approved by a person: every kind of entry the review makes."""
    body = {"input": {"applicant": {**CLEAR, "pep": True}, "documents": [PAYSLIP]}}
    started = await http.post("/v1/workflows/compliance-documentation/runs", json=body,
                              headers={**auth(sub="rita", roles=("requester",)), "Idempotency-Key": key})
    run_id = started.json()["id"]
    await waiting_for_approval(http, auth, run_id)
    receipt = (await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve", "comment": "Checked."},
                               headers=auth(**APPROVER))).json()
    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed"
    return run_id, receipt


async def audit_of(http, auth, run_id: str) -> list[dict]:
    async def complete() -> list[dict] | None:  # the end is written as the run closes
        response = await http.get(f"/v1/runs/{run_id}/audit", headers=auth(**AUDITOR))
        entries = response.json()["entries"] if response.status_code == 200 else []
        return entries if entries and entries[-1]["kind"] == "run.ended" else None

    return await eventually(complete, f"the audit of {run_id} to end")


async def test_a_review_leaves_every_kind_of_entry_without_personal_data(http, auth):
    run_id, receipt = await reviewed_run(http, auth, "audit-kinds-1")
    entries = await audit_of(http, auth, run_id)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "run.started" and kinds[-1] == "run.ended"
    for kind in ("llm.call", "approval.requested", "approval.voted", "approval.decided", "update.accepted",
                 "artifact.written", "notification.skipped"):
        assert kind in kinds, (kind, kinds)
    by_kind = {e["kind"]: e for e in entries}

    started = by_kind["run.started"]["data"]
    assert started["requested_by"] == "rita"
    assert started["idempotency_key_sha256"] == hashlib.sha256(b"audit-kinds-1").hexdigest()
    assert len(started["input_sha256"]) == 64
    vote = by_kind["approval.voted"]["data"]["receipt"]
    assert (vote["approver"], vote["decision"]) == ("vera", "approve")
    assert vote["shown_sha256"] == receipt["shown_sha256"] and "comment" not in vote
    assert by_kind["update.accepted"]["data"]["by"] == "vera"
    llm = by_kind["llm.call"]["data"]
    assert llm["model_version"] == "steward-offline-1" and len(llm["prompt_sha256"]) == 64
    run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
    assert by_kind["artifact.written"]["data"]["sha256"] == run["artifacts"][0]["sha256"]
    assert by_kind["run.ended"]["data"]["status"] == "completed"
    # Sequence numbers rise; the run's entries are a subsequence of the tenant's chain.
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)

    text = json.dumps(entries)
    assert CLEAR["full_name"] not in text and CLEAR["document_id"] not in text and "Checked." not in text


async def test_the_audit_outlives_the_runs_history_in_temporal(http, auth, client):
    run_id, _ = await reviewed_run(http, auth, "audit-outlives-1")
    before = await audit_of(http, auth, run_id)
    await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=run_id)))

    async def forgotten() -> bool:
        return (await http.get(f"/v1/runs/{run_id}", headers=auth())).status_code == 404

    await eventually(forgotten, "Temporal to forget the run")
    after = await http.get(f"/v1/runs/{run_id}/audit", headers=auth(**AUDITOR))
    assert after.status_code == 200 and after.json()["entries"] == before


async def test_only_the_runs_tenant_with_audit_read_sees_its_audit(http, auth):
    run_id, _ = await reviewed_run(http, auth, "audit-tenant-1")
    await audit_of(http, auth, run_id)
    elsewhere = await http.get(f"/v1/runs/{run_id}/audit", headers=auth(**AUDITOR, tenant="globex"))
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "not_found"
    requester = await http.get(f"/v1/runs/{run_id}/audit", headers=auth(sub="rita", roles=("requester",)))
    assert requester.status_code == 403


async def test_a_siem_reads_the_tenants_log_as_json_lines_and_resumes(http, auth, tenant):
    run_id, _ = await reviewed_run(http, auth, "audit-siem-1")
    await audit_of(http, auth, run_id)
    everything = await http.get("/v1/audit", params={"limit": 10_000}, headers=auth(**AUDITOR))
    assert everything.status_code == 200 and everything.headers["content-type"] == "application/x-ndjson"
    lines = everything.text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert {json.loads(line)["tenant"] for line in lines} == {tenant}

    pages, after = [], 0
    while True:
        page = await http.get("/v1/audit", params={"after": after, "limit": 4}, headers=auth(**AUDITOR))
        if not page.text:
            break
        pages += page.text.splitlines()
        after = int(page.headers["Steward-Audit-Next-After"])
    assert pages == lines

    first_at = json.loads(lines[0])["at"]
    none_before = await http.get("/v1/audit", params={"until": first_at}, headers=auth(**AUDITOR))
    assert none_before.text == ""
    backwards = await http.get("/v1/audit", params={"since": "2026-12-02T00:00:00", "until": "2026-12-01T00:00:00"},
                               headers=auth(**AUDITOR))
    # A window that closes before it opens holds nothing, and skips nothing.
    assert backwards.status_code == 200 and backwards.text == ""
    assert backwards.headers["Steward-Audit-Next-After"] == "0"
    epoch = await http.get("/v1/audit", params={"since": "0.5"}, headers=auth(**AUDITOR))
    assert epoch.status_code == 422 and epoch.json()["error"]["details"][0]["field"] == "query.since"


async def test_a_cancel_request_is_recorded_with_who_asked(http, auth):
    body = {"input": {"applicant": {**CLEAR, "pep": True}, "documents": [PAYSLIP]}}
    run_id = (await http.post("/v1/workflows/compliance-documentation/runs", json=body,
                              headers=auth(sub="rita", roles=("requester",)))).json()["id"]
    await waiting_for_approval(http, auth, run_id)
    assert (await http.post(f"/v1/runs/{run_id}/cancel", headers=auth(sub="oscar"))).status_code == 202
    entries = await audit_of(http, auth, run_id)
    (asked,) = [e for e in entries if e["kind"] == "run.cancel_requested"]
    assert asked["data"]["by"] == "oscar"
    assert entries[-1]["data"]["status"] == "cancelled"


async def test_the_log_the_worker_wrote_verifies(http, auth, settings, tenant):
    run_id, _ = await reviewed_run(http, auth, "audit-verify-1")
    await audit_of(http, auth, run_id)
    env = {**os.environ, "STEWARD_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "steward", "audit", "verify", "--tenant", tenant], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{tenant}: " in result.stdout and "signed heads: intact" in result.stdout
