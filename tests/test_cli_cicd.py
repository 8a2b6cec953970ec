"""The CLI as a pipeline runs it: `steward runs start --wait`, `runs result` and `artifacts get` as
subprocesses against one real `steward up`, with an API key from `steward apikey create` in
STEWARD_API_KEY. A gate opens on exit code 0 only; every other end has its own code (docs/ci-cd.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from steward.cli.main import WAIT_REJECTED, WAIT_STILL_GOING, WATCH_EXIT_CODES
from steward.identity import Principal, issue_token
from tests.support import DEADLINE_S, eventually, wait_for_run, watch
from tests.test_compliance_workflow import CLEAR, PAYSLIP
from tests.test_supervisor import REPO, SECRET, Steward, running_steward

COMPLETED, FAILED, CANCELLED = (WATCH_EXIT_CODES[f"run.{end}"] for end in ("completed", "failed", "cancelled"))
TENANT = "acme"
FINGERPRINT_INPUT = {"documents": [{"name": "release-notes.txt", "text": "Release 4.2: one fix."}]}


def bearer(sub: str, role: str) -> dict[str, str]:
    token = issue_token(SECRET, Principal(sub=sub, roles=(role,), tenant=TENANT), timedelta(minutes=10))
    return {"Authorization": f"Bearer {token}"}


class Pipeline:
    """A CI job's view of Steward: the API's URL and a key in the environment, nothing in flags."""

    def __init__(self, steward: Steward, api_key: str, workdir: Path) -> None:
        self.steward, self.workdir = steward, workdir
        self.env = {k: v for k, v in os.environ.items() if k not in ("STEWARD_TOKEN", "STEWARD_API_KEY")}
        self.env.update(PYTHONPATH=str(REPO), STEWARD_API_URL=steward.api_url, STEWARD_API_KEY=api_key)

    def input_file(self, name: str, value: dict) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(value))
        return str(path)

    @asynccontextmanager
    async def cli(self, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
        """`steward ARGS` running beside the test, which may act on the run meanwhile; killed if left running."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "steward", *args, env=env or self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        code, out, err = await self.run_for_bytes(*args, env=env)
        return code, out.decode(), err

    async def run_for_bytes(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        async with self.cli(*args, env=env) as process:
            out, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
            return process.returncode, out, err.decode()


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    return process.returncode, out.decode(), err.decode()


async def first_line(process: asyncio.subprocess.Process) -> str:
    return (await asyncio.wait_for(process.stdout.readline(), DEADLINE_S)).decode().rstrip("\n")


@pytest.fixture(scope="module")
async def pipeline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    root = tmp_path_factory.mktemp("cicd")
    async with running_steward(root) as steward:
        created = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "steward", "apikey", "create", "--name", "ci", "--role", "operator",
            "--tenant", TENANT, "--data-dir", str(root / "data"),
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        code, key, err = await finished(created)
        assert code == 0, err
        watch("the CI's API key", key.strip())
        yield Pipeline(steward, key.strip(), root)


@pytest.fixture
async def http(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    """The test's own calls (cancel, decide), to this module's `steward up` rather than conftest's API."""
    async with httpx.AsyncClient(base_url=pipeline.steward.api_url, timeout=30) as client:
        yield client


async def test_start_wait_exits_0_when_the_run_completes_printing_its_link_and_stages(pipeline, http):
    code, out, err = await pipeline.run("runs", "start", "document-fingerprint", "--wait", "--timeout", "5m",
                                        "--input", pipeline.input_file("fingerprint.json", FINGERPRINT_INPUT))
    assert code == COMPLETED, err
    run_id, link = out.splitlines()[0].split("  ")
    assert link == f"{pipeline.steward.api_url}/v1/runs/{run_id}"
    assert out.splitlines()[1:] == ["stage: fingerprinting", "stage: done", "run completed"]

    code, out, err = await pipeline.run("runs", "result", run_id)
    assert code == 0, err
    assert json.loads(out) == (await http.get(f"/v1/runs/{run_id}", headers=bearer("sam", "operator"))).json()["result"]


async def test_start_wait_exits_1_when_the_run_fails(pipeline):
    code, out, _ = await pipeline.run("runs", "start", "test-failing", "--wait",
                                      "--input", pipeline.input_file("failing.json", {"reason": "no"}))
    assert code == FAILED
    assert out.splitlines()[-1] == "run failed: TestBusinessRefusal"


async def test_start_wait_exits_3_when_the_run_is_cancelled(pipeline, http, tmp_path):
    gate = {"started_file": str(tmp_path / "started"), "release_file": str(tmp_path / "release")}
    async with pipeline.cli("runs", "start", "test-gated", "--wait",
                            "--input", pipeline.input_file("gate-cancel.json", gate)) as waiting:
        run_id = (await first_line(waiting)).split("  ")[0]
        await eventually(lambda: _exists(gate["started_file"]), "the gated activity to start")
        assert waiting.returncode is None  # the run holds: so does the pipeline
        cancelled = await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer("sam", "operator"))
        assert cancelled.status_code == 202, cancelled.text
        code, out, _ = await finished(waiting)
    assert code == CANCELLED
    assert out.splitlines()[-1] == "run cancelled"

    code, out, err = await pipeline.run("runs", "result", run_id)
    assert code == CANCELLED and out == "" and f"run {run_id} is cancelled" in err


async def test_start_wait_exits_7_when_its_timeout_passes_and_the_run_goes_on(pipeline, http, tmp_path):
    gate = {"started_file": str(tmp_path / "started"), "release_file": str(tmp_path / "release")}
    # The gate is released only after the CLI gave up: the run cannot end within the timeout.
    code, out, err = await pipeline.run("runs", "start", "test-gated", "--wait", "--timeout", "1s",
                                        "--input", pipeline.input_file("gate-timeout.json", gate))
    assert code == WAIT_STILL_GOING, err
    run_id = out.splitlines()[0].split("  ")[0]
    assert "--timeout 1s reached; the run goes on" in err
    run = (await http.get(f"/v1/runs/{run_id}", headers=bearer("sam", "operator"))).json()
    assert run["status"] == "running"

    code, out, err = await pipeline.run("runs", "result", run_id)
    assert code == WAIT_STILL_GOING and "has not ended yet" in err
    Path(gate["release_file"]).touch()
    assert (await wait_for_run(http, run_id, bearer("sam", "operator")))["status"] == "completed"


async def test_start_wait_exits_6_when_an_approver_rejects_and_the_report_downloads_intact(pipeline, http, tmp_path):
    review = {"applicant": {**CLEAR, "pep": True}, "documents": [PAYSLIP]}  # a PEP: a person must decide
    async with pipeline.cli("runs", "start", "compliance-documentation", "--wait", "--input", "-") as waiting:
        waiting.stdin.write(json.dumps(review).encode())
        waiting.stdin.close()
        run_id = (await first_line(waiting)).split("  ")[0]

        async def waiting_for_approval() -> bool:
            run = (await http.get(f"/v1/runs/{run_id}", headers=bearer("vera", "approver"))).json()
            return run["status"] == "waiting_for_approval"

        await eventually(waiting_for_approval, "the review to wait for an approver")
        decided = await http.post(f"/v1/runs/{run_id}/approvals", headers=bearer("vera", "approver"),
                                  json={"decision": "reject", "comment": "Source of funds unclear."})
        assert decided.status_code == 200, decided.text
        code, out, err = await finished(waiting)
    assert code == WAIT_REJECTED, err
    lines = out.splitlines()
    assert "approval compliance-review: waiting for approver" in lines
    assert "approval compliance-review: rejected" in lines
    assert lines[-2:] == ["run completed", "decision: rejected"]

    code, out, _ = await pipeline.run("runs", "result", run_id)
    result = json.loads(out)
    assert code == 0 and result["decision"] == "rejected" and result["decided_by"] == "vera"

    report = tmp_path / "report.pdf"
    code, _, err = await pipeline.run("artifacts", "get", run_id, "compliance-report.pdf", "-o", str(report))
    assert code == 0, err
    pdf = report.read_bytes()
    assert pdf.startswith(b"%PDF") and hashlib.sha256(pdf).hexdigest() == result["report"]["sha256"]
    assert report.stat().st_mode & 0o777 == 0o600  # a report carries personal data
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]  # no partial file left beside it

    code, _, err = await pipeline.run("artifacts", "get", run_id, "compliance-report.pdf", "-o", str(report))
    assert code == 2 and "--force" in err
    code, streamed, _ = await pipeline.run_for_bytes("artifacts", "get", run_id, "compliance-report.pdf", "-o", "-")
    assert code == 0 and streamed == pdf
    code, _, err = await pipeline.run("artifacts", "get", run_id, "no-such.pdf", "-o", str(tmp_path / "x.pdf"))
    assert code == 2 and "404 not_found" in err and not (tmp_path / "x.pdf").exists()


async def test_a_token_works_like_an_api_key_and_an_unknown_key_is_refused(pipeline):
    as_person = {**pipeline.env, "STEWARD_TOKEN": bearer("sam", "operator")["Authorization"].split()[1]}
    del as_person["STEWARD_API_KEY"]
    code, out, err = await pipeline.run("runs", "list", "--json", env=as_person)
    assert code == 0 and "runs" in json.loads(out), err

    bogus = {**pipeline.env, "STEWARD_API_KEY": "stw_0000000000000000_" + "x" * 43}
    code, _, err = await pipeline.run("runs", "list", env=bogus)
    assert code == 2 and "401" in err


async def _exists(path: str) -> bool:
    return Path(path).exists()
