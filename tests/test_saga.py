"""The saga building block (workflows/saga.py) through a real worker: compensations registered
before each step run newest first, are retried until they succeed, are safe on a step that never
happened, and finish even when the run is cancelled while they run."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from tests.support import eventually
from tests.workflow_fixtures.saga import SagaInput, SagaOutput
from workflows.spec import DEFAULT_TASK_QUEUE


def ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger"
    return path.read_text().splitlines() if path.exists() else []


async def start(client: Client, request: SagaInput):
    return await client.start_workflow("test-saga", request, id=f"test-saga-{uuid.uuid4()}",
                                       task_queue=DEFAULT_TASK_QUEUE, result_type=SagaOutput)


async def test_a_failed_step_undoes_the_steps_before_it_newest_first(client, worker, tmp_path):
    handle = await start(client, SagaInput(ledger_dir=str(tmp_path), steps=["a", "b", "c", "d"], fail_at="c"))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    # c's undo is registered before c runs: it runs too, and finds nothing to undo.
    assert ledger(tmp_path) == ["do a", "do b", "undo c (attempt 1)", "undo b (attempt 1)", "undo a (attempt 1)"]
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "SagaFailed"
    assert cause.message == "undone: b undone; a undone"


async def test_a_compensation_that_fails_is_retried_until_it_succeeds(client, worker, tmp_path):
    handle = await start(client, SagaInput(ledger_dir=str(tmp_path), steps=["a"], fail_at=None, undo_failures=1,
                                           wait_after=True))
    await eventually(lambda: _async(ledger(tmp_path) == ["do a"]), "the step to run")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert ledger(tmp_path) == ["do a", "undo a (attempt 2)"]


async def test_cancelling_while_compensating_lets_every_compensation_finish(client, worker, tmp_path):
    handle = await start(client, SagaInput(ledger_dir=str(tmp_path), steps=["a", "b", "c"], fail_at="c",
                                           hold_undo_of="b"))
    await eventually(lambda: _async((tmp_path / "holding").exists()), "b's undo to start")
    await handle.cancel()
    (tmp_path / "release").touch()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    # The cancel request neither interrupted b's undo nor skipped a's; the run reports the failure
    # that started the undoing.
    assert ledger(tmp_path) == ["do a", "do b", "undo c (attempt 1)", "undo b (attempt 1)", "undo a (attempt 1)"]
    assert isinstance(failure.value.cause, ApplicationError) and failure.value.cause.type == "SagaFailed"


async def _async(value):
    return value
