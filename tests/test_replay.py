"""Every built-in workflow replays its committed history: a non-deterministic change fails CI.

Histories live in tests/fixtures/histories/<workflow>.json; record one for a new workflow with
`python -m tests.fixtures.record_histories <name>`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
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


# Every path a run can stay on for long, with the history that records it and the event that
# proves the history took that path: a non-deterministic change on any of them fails replay.
PATHS_THAT_LAST = {
    "an approval decided by update": ("compliance-documentation.approved-review", "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"),
    "an approval ladder's steps fired by their timers": ("compliance-documentation.timed-out-review", "TIMER_FIRED"),
    "an incident's paging ladder fired by its timers": ("incident-response.escalated", "TIMER_FIRED"),
    "an incident acknowledged and resolved": ("incident-response", "WORKFLOW_EXECUTION_UPDATE_COMPLETED"),
    "a callback delivered to a waiting step": ("declarative.saga", "WORKFLOW_EXECUTION_SIGNALED"),
    "an event delivered to a subscriber": ("event-delivery", "WORKFLOW_EXECUTION_SIGNALED"),
    "a child workflow": ("declarative", "CHILD_WORKFLOW_EXECUTION_COMPLETED"),
    "a saga compensating on cancel": ("customer-onboarding.cancelled", "WORKFLOW_EXECUTION_CANCELED"),
    "a saga compensating on failure": ("declarative.saga", "WORKFLOW_EXECUTION_FAILED"),
    "an activation by the contact's link": ("customer-onboarding", "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"),
}


@pytest.mark.parametrize("path", PATHS_THAT_LAST)
def test_a_committed_history_records_every_path_that_lasts(path):
    name, event_type = PATHS_THAT_LAST[path]
    history = load_history(name.split(".")[0], HISTORIES / f"{name}.json")
    wanted = EventType.Value(f"EVENT_TYPE_{event_type}")
    assert any(event.event_type == wanted for event in history.events), \
        f"{name}.json does not record {path}: re-record it with python -m tests.fixtures.record_histories {name}"
