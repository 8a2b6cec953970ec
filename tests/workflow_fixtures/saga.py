"""test-saga: steps that each register an undo before they run, then a failure or a wait.

Every step and undo appends a line to a ledger file in `ledger_dir`, so a test reads what really
ran, and in which order. An undo can be made to fail its first attempts (`undo_failures`), or to
hold until the test drops a release file (`hold_undo_of`), so a test can cancel the run while
it is undoing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from workflows.saga import CompensationRecord, Saga, describe_compensations
from workflows.spec import WorkflowSpec

STEP_RETRY = RetryPolicy(maximum_attempts=1)


class StepInput(BaseModel):
    ledger_dir: str
    step: str
    fail: bool = False
    undo_failures: int = 0
    hold_undo: bool = False


class Undone(BaseModel):
    found: bool
    detail: str


def _write(request: StepInput, line: str) -> None:
    with (Path(request.ledger_dir) / "ledger").open("a") as ledger:
        ledger.write(line + "\n")


@activity.defn(name="test-saga-do")
async def do_step(request: StepInput) -> None:
    if request.fail:
        raise ApplicationError(f"{request.step} failed", type="StepFailed", non_retryable=True)
    _write(request, f"do {request.step}")


@activity.defn(name="test-saga-undo")
async def undo_step(request: StepInput) -> Undone:
    attempt = activity.info().attempt
    if attempt <= request.undo_failures:
        raise ApplicationError(f"undo {request.step}: attempt {attempt} fails", type="Unavailable")
    if request.hold_undo:
        (Path(request.ledger_dir) / "holding").write_text(request.step)
        while not (Path(request.ledger_dir) / "release").exists():
            activity.heartbeat()
            await asyncio.sleep(0.05)
    done = (Path(request.ledger_dir) / "ledger").read_text().count(f"do {request.step}\n") if (
        Path(request.ledger_dir) / "ledger").exists() else 0
    _write(request, f"undo {request.step} (attempt {attempt})")
    return Undone(found=bool(done), detail=f"{request.step} undone" if done else f"{request.step}: nothing")


class SagaInput(BaseModel):
    ledger_dir: str
    steps: list[str]
    fail_at: str | None = None
    undo_failures: int = 0
    hold_undo_of: str | None = None
    wait_after: bool = False


class SagaOutput(BaseModel):
    compensations: list[CompensationRecord]


@workflow.defn(name="test-saga")
class SagaWorkflow:
    @workflow.run
    async def run(self, request: SagaInput) -> SagaOutput:
        saga = Saga()
        try:
            for step in request.steps:
                argument = StepInput(ledger_dir=request.ledger_dir, step=step, fail=step == request.fail_at,
                                     undo_failures=request.undo_failures, hold_undo=step == request.hold_undo_of)
                saga.on_failure_undo(step, undo_step, argument)
                await workflow.execute_activity(do_step, argument, start_to_close_timeout=timedelta(seconds=10),
                                                retry_policy=STEP_RETRY)
            if request.wait_after:
                await workflow.wait_condition(lambda: False)
        except BaseException as error:
            if not (is_cancelled_exception(error) or isinstance(error, Exception)):
                raise
            records = await saga.compensate()
            if is_cancelled_exception(error):
                raise
            raise ApplicationError(describe_compensations(records), type="SagaFailed", non_retryable=True) from None
        return SagaOutput(compensations=saga.records)


SPEC = WorkflowSpec(
    name="test-saga",
    description="Test workflow: steps with registered compensations, undone in reverse.",
    workflow=SagaWorkflow,
    input_model=SagaInput,
    output_model=SagaOutput,
    activities=(do_step, undo_step),
)
