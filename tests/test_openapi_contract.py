"""The API against its own OpenAPI document: schemathesis runs every check (seeded, 25 examples
per operation, as an admin) and finds nothing: no 5xx, every answer within its documented
schema and status codes, schema-valid requests accepted, schema-violating ones refused, `Allow`
naming every method a path serves. tests/schemathesis.toml names the few rules a JSON Schema
cannot state (signed page tokens, a schedule's input typed by the workflow it names).

The API has a Temporal server of its own with no worker: the runs the generated requests start
(one operation per workflow, with that workflow's input schema) are accepted and recorded, never
executed, and thrown away with the server, so they cost the rest of the suite nothing."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from api import updates
from steward import search_attributes
from steward.devserver import temporal_binary
from steward.identity import Principal, issue_token
from tests.conftest import TEST_DATA_CONVERTER, TEST_SECRET, test_interceptors
from tests.support import free_port, serve_api

SEED = 20261122
MAX_EXAMPLES = 25
CONFIG = Path(__file__).with_name("schemathesis.toml")
TIMEOUT_S = 280  # under the suite's per-test timeout, so a hang reports what ran


async def test_every_check_passes_on_every_operation_of_the_document(settings, tmp_path, monkeypatch):
    # No worker takes an update here: waiting the production 8 s for one would prove nothing more.
    monkeypatch.setattr(updates, "UPDATE_RPC_TIMEOUT", timedelta(seconds=1))
    # An API of its own: the generated volume must not meet the shared per-principal rate limit.
    own = settings.model_copy(update={"api_port": free_port(), "rate_limit_per_minute": 1_000_000})
    token = issue_token(TEST_SECRET, Principal(sub="fuzzer", roles=("admin",), tenant="fuzz-tenant"),
                        timedelta(hours=1))
    st = Path(sys.executable).parent / "st"
    report = tmp_path / "schemathesis.txt"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), data_converter=TEST_DATA_CONVERTER,
        interceptors=test_interceptors(), search_attributes=search_attributes.ALL, dev_server_log_level="error")
    async with serve_api(own, env.client) as url:
        with report.open("w") as output:
            process = await asyncio.create_subprocess_exec(
                str(st), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
                "--header", f"Authorization: Bearer {token}", "--checks", "all", "--request-timeout", "20",
                "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
                "--phases", "examples,coverage,fuzzing", "--report-dir", str(tmp_path / "report"),
                stdout=output, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
            )
            try:
                await asyncio.wait_for(process.wait(), timeout=TIMEOUT_S)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await env.shutdown()
    text = report.read_text(errors="replace")
    assert process.returncode == 0, text[-12000:]
    assert "passed" in text and "Selected: " in text
