"""Saga: undo, in reverse, what a run already did elsewhere, when it cannot finish.

A workflow registers a step's compensation *before* the step runs: a step whose activity timed
out may still have happened on the other side, so a compensation must be safe on nothing (it
finds nothing and says so). When the run fails for good, or is cancelled, `compensate()` runs the
registered compensations newest first, each an activity retried until it succeeds, in a task the
run's cancellation cannot interrupt: a cancel request that arrives while undoing waits for the
undoing to finish. Each compensation's answer becomes a record for the run's result, its error
and the Temporal UI.

A compensation activity returns a model with `found: bool` and `detail: str`
(activities/connectors/models.Undone): what was undone, in words, or that there was nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

# A compensation is one request to a system; a minute covers a slow one.
COMPENSATION_TIMEOUT = timedelta(minutes=1)
# Retried until it succeeds: an outage or a revoked credential is fixed by someone, and the run
# waits, its pending compensation and last error visible in the Temporal UI. Backoff caps at
# ten minutes so a long outage costs few attempts. (The activity must not raise non-retryable
# errors: those would end the retrying; see activities/onboarding/provisioning.py.)
COMPENSATION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                                 maximum_interval=timedelta(minutes=10), maximum_attempts=0)


class CompensationRecord(BaseModel):
    step: str
    status: Literal["undone", "nothing_to_undo"]
    detail: str
    at: datetime


@dataclass(frozen=True)
class _Compensation:
    step: str
    activity: Callable[..., Any] | None
    argument: BaseModel | None
    run: Callable[[], Awaitable[str]] | None = None  # a compensation of the workflow's own: says what it did


class Saga:
    """The compensations a run has registered, and the records of those it ran."""

    def __init__(self, *, on_record: Callable[[CompensationRecord], None] | None = None) -> None:
        self._pending: list[_Compensation] = []
        self.records: list[CompensationRecord] = []
        self._on_record = on_record

    def on_failure_undo(self, step: str, activity: Callable[..., Any], argument: BaseModel) -> None:
        """Before running `step`: if the run cannot finish, `activity(argument)` undoes it."""
        self._pending.append(_Compensation(step, activity, argument))

    def on_failure_run(self, step: str, undo: Callable[[], Awaitable[str]]) -> None:
        """Before running `step`: if the run cannot finish, `undo()` (the workflow's own steps,
        retried as they choose) undoes it and says what it did."""
        self._pending.append(_Compensation(step, None, None, undo))

    @property
    def registered(self) -> list[str]:
        return [c.step for c in self._pending]

    async def compensate(self) -> list[CompensationRecord]:
        """Run every registered compensation, newest first, shielded from cancellation."""
        undoing = asyncio.create_task(self._undo_all())
        while True:
            try:
                return await asyncio.shield(undoing)
            except asyncio.CancelledError:
                # The run was cancelled while undoing: finish undoing first; the caller ends the
                # run as cancelled afterwards.
                workflow.logger.info("cancel request while compensating: compensations continue")

    async def _undo_all(self) -> list[CompensationRecord]:
        while self._pending:
            compensation = self._pending.pop()
            if compensation.run is not None:
                record = CompensationRecord(step=compensation.step, status="undone", detail=await compensation.run(),
                                            at=workflow.now())
            else:
                undone = await workflow.execute_activity(
                    compensation.activity, compensation.argument, start_to_close_timeout=COMPENSATION_TIMEOUT,
                    retry_policy=COMPENSATION_RETRY,
                )
                record = CompensationRecord(step=compensation.step,
                                            status="undone" if undone.found else "nothing_to_undo",
                                            detail=undone.detail, at=workflow.now())
            self.records.append(record)
            if self._on_record:
                self._on_record(record)
        return list(self.records)


def describe_compensations(records: list[CompensationRecord]) -> str:
    """One sentence for a run's error message: what was undone, in the order it was undone."""
    undone = [r.detail for r in records if r.status == "undone"]
    return f"undone: {'; '.join(undone)}" if undone else "nothing needed undoing"
