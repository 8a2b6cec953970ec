"""Every built-in workflow replays its committed history: a non-deterministic change fails CI.

Histories live in tests/fixtures/histories/<workflow>.json; record one for a new workflow with
`python -m tests.fixtures.record_histories <name>`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows.catalog import discover
from workflows.document_fingerprint import DocumentFingerprintInput, DocumentFingerprintOutput

# This module defines a workflow, so the sandbox re-imports it: the suite's fixtures module (web
# servers, HTTP clients) must come through unsandboxed.
with workflow.unsafe.imports_passed_through():
    from tests.conftest import TEST_DATA_CONVERTER, test_interceptors
    from workers.audit import AuditInterceptor
    from workers.worker import PLATFORM_WORKFLOWS, sandbox_runner
    from workflows.declarative import DeclarativeWorkflow

HISTORIES = Path(__file__).parent / "fixtures" / "histories"
BUILTIN = sorted(discover().specs)
# The platform's own workflows, hosted outside the catalog (workers/worker.py).
PLATFORM = {w.__temporal_workflow_definition.name: w for w in PLATFORM_WORKFLOWS
            if w.__temporal_workflow_definition.name}  # the declarative interpreter is dynamic: no name


def load_history(name: str, path: Path | None = None) -> WorkflowHistory:
    path = path or HISTORIES / f"{name}.json"
    assert path.exists(), f"{name} has no committed history: python -m tests.fixtures.record_histories {name}"
    return WorkflowHistory.from_json(f"{name}-replay", path.read_text())


def histories(name: str) -> list[Path]:
    """The current history, `<name>.json`, and those of runs started before a patched change,
    `<name>.<what changed>.json`: every one must still replay."""
    return [HISTORIES / f"{name}.json", *sorted(HISTORIES.glob(f"{name}.*.json"))]


@pytest.mark.parametrize("name", [*BUILTIN, *PLATFORM, "declarative"])
async def test_workflow_replays_its_committed_histories(name):
    spec = discover().get(name)
    workflow_class = spec.workflow if spec else PLATFORM.get(name) or DeclarativeWorkflow
    # With the identity interceptor, as every worker has it: an accepted update's handler reads who
    # sent it from the header (without re-verifying, so replay survives a rotated secret).
    replayer = Replayer(workflows=[workflow_class], data_converter=TEST_DATA_CONVERTER,
                        workflow_runner=sandbox_runner(), interceptors=[*test_interceptors(), AuditInterceptor()])
    for path in histories(name):
        await replayer.replay_workflow(load_history(name, path))


with workflow.unsafe.imports_passed_through():
    from activities.benchmark import BenchmarkStepInput, benchmark_step


@workflow.defn(name="document-fingerprint")
class ChangedFingerprintWorkflow:
    """The shipped workflow with its activity swapped: what an unpatched change looks like."""

    @workflow.run
    async def run(self, request: DocumentFingerprintInput) -> DocumentFingerprintOutput:
        await workflow.execute_activity(benchmark_step, BenchmarkStepInput(step=0, payload="x"),
                                        start_to_close_timeout=timedelta(seconds=5))
        raise AssertionError("unreachable in replay")


async def test_unpatched_change_to_a_workflow_fails_replay():
    replayer = Replayer(workflows=[ChangedFingerprintWorkflow], data_converter=TEST_DATA_CONVERTER,
                        workflow_runner=sandbox_runner())
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load_history("document-fingerprint"))
