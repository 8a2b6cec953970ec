"""CPU-bound (`def`) activities run in the worker's process pool, one at a time per process, so a
burst waits in Temporal's task queue instead of timing out inside the worker."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from temporalio.client import Client

from steward import runtime
from tests.support import running_workers
from tests.workflow_fixtures.cpu_burst import BurstInput, BurstResult, CpuBurstWorkflow, spin
from workers.cpu import default_size, is_cpu_bound
from workers.worker import build_workers
from workflows.catalog import Catalog
from workflows.spec import WorkflowSpec


def burst_catalog(task_queue: str) -> Catalog:
    spec = WorkflowSpec(name="test-cpu-burst", description="CPU burst.", workflow=CpuBurstWorkflow,
                        input_model=BurstInput, output_model=BurstResult, activities=(spin,), task_queue=task_queue)
    return Catalog({spec.name: spec})


@pytest.fixture
def one_process(settings):
    runtime.configure(settings.model_copy(update={"cpu_workers": 1}))
    yield
    runtime.configure(settings)


async def test_a_burst_larger_than_the_pool_waits_its_turn_and_no_attempt_times_out(client: Client, one_process):
    task_queue = f"burst-{uuid.uuid4().hex[:8]}"
    # Ten 0.3 s tasks on one process: 3 s of work against a 2 s timeout each. A worker that
    # accepted all ten at once would start their clocks together and time the last ones out.
    burst = BurstInput(activities=10, cpu_seconds=0.3, timeout_s=2)

    async with running_workers(client, burst_catalog(task_queue), platform=False):
        result = await client.execute_workflow(CpuBurstWorkflow.run, burst, id=f"burst-{uuid.uuid4().hex}",
                                               task_queue=task_queue, result_type=BurstResult)

    assert len(result.pids) == 10
    assert len(set(result.pids)) == 1 and os.getpid() not in result.pids  # one pool process, not the worker


async def test_cpu_bound_activities_are_never_hosted_without_a_process_pool(client: Client) -> None:
    with pytest.raises(ValueError, match="CPU-bound activities but no CPU pool"):
        build_workers(client, burst_catalog("burst-no-pool"), grace=timedelta(seconds=1), cpu=None, platform=False)


def test_plain_def_activities_are_cpu_bound_and_async_ones_are_not() -> None:
    from activities.llm.activity import run_llm_task
    from activities.reports.compliance_report import generate_compliance_report

    assert is_cpu_bound(generate_compliance_report) and is_cpu_bound(spin)
    assert not is_cpu_bound(run_llm_task)
    assert 1 <= default_size() <= 4
