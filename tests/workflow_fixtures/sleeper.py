"""test-sleeper: a durable timer measured in days, for time-skipping tests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

# Long enough for multi-day timers, short enough that a 30-day one must time out.
SLEEPER_EXECUTION_TIMEOUT = timedelta(days=7)


class SleeperInput(BaseModel):
    days: float = Field(gt=0)


class SleeperOutput(BaseModel):
    slept_days: float


@workflow.defn(name="test-sleeper")
class SleeperWorkflow:
    @workflow.run
    async def run(self, request: SleeperInput) -> SleeperOutput:
        enter_stage("sleeping")
        await asyncio.sleep(timedelta(days=request.days).total_seconds())
        enter_stage("done")
        return SleeperOutput(slept_days=request.days)


SPEC = WorkflowSpec(
    name="test-sleeper",
    description="Test workflow: sleeps for days on a durable timer.",
    workflow=SleeperWorkflow,
    input_model=SleeperInput,
    output_model=SleeperOutput,
    execution_timeout=SLEEPER_EXECUTION_TIMEOUT,
)
