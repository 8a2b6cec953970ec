"""The API against its own OpenAPI document: schemathesis generates requests for every operation
(seeded, bounded) and checks there is no 5xx and every response matches its documented schema."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from steward.identity import Principal, issue_token
from tests.conftest import TEST_SECRET
from tests.support import free_port, serve_api

SEED = 20261122
MAX_EXAMPLES = 10
CHECKS = "not_a_server_error,response_schema_conformance"


async def test_every_operation_answers_within_its_documented_schema_and_never_5xx(client, settings, worker, tmp_path):
    # An API of its own: the generated volume must not meet the shared per-principal rate limit.
    own = settings.model_copy(update={"api_port": free_port(), "rate_limit_per_minute": 1_000_000})
    token = issue_token(TEST_SECRET, Principal(sub="fuzzer", roles=("admin",), tenant="fuzz-tenant"),
                        timedelta(hours=1))
    st = Path(sys.executable).parent / "st"
    async with serve_api(own, client) as url:
        process = await asyncio.create_subprocess_exec(
            str(st), "run", f"{url}/openapi.json", "--header", f"Authorization: Bearer {token}",
            "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
            "--phases", "examples,coverage,fuzzing", "--report-dir", str(tmp_path / "report"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-8000:]
    assert "passed" in text and "Selected: " in text
