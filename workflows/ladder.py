"""The one timer engine for "remind, escalate, decide": a ladder of rungs on durable timers.

Approvals climb it while nobody decides (workflows/approvals.py); incident paging climbs it while
nobody acknowledges (workflows/incident_response.py). A rung fires `after` a time measured from
when the ladder started, unless the ladder is `done` by then; `repeat` runs the whole ladder again
that many more times, each round `period` after the one before. The waits are
`workflow.wait_condition(..., timeout=)`: durable timers that survive worker restarts and that
time-skipping tests cross in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow

Rung = TypeVar("Rung")


async def climb(rungs: Sequence[Rung], *, after: Callable[[Rung], timedelta], started_at: datetime,
                done: Callable[[], bool], on_rung: Callable[[Rung, int], None], repeat: int = 0,
                period: timedelta | None = None) -> bool:
    """Fire each rung whose time comes before `done()`; True once done, False when the rungs ran out.

    `on_rung(rung, number)` is called with the rung and its number across rounds (0, 1, ...); it
    runs in the workflow, so it must not block (start notifications as tasks). Rungs must be in
    order of `after`. `period` defaults to the last rung's `after`.
    """
    if repeat and period is None:
        period = after(rungs[-1]) if rungs else timedelta(0)
    number = 0
    for round_ in range(repeat + 1):
        offset = (period or timedelta(0)) * round_
        for rung in rungs:
            remaining = offset + after(rung) - (workflow.now() - started_at)
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(done, timeout=remaining)
                    return True
                except asyncio.TimeoutError:
                    pass
            if done():
                return True
            on_rung(rung, number)
            number += 1
            if done():
                return True
    return done()
