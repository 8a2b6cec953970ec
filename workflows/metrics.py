"""Business metrics from workflow code, through the Temporal SDK's metric meter: the worker serves
them on its Prometheus endpoint (steward/temporal_client.metrics_runtime), and the meter records
nothing while a run replays, so a worker restart never counts a run twice.

Labels are bounded: workflow names, statuses, channels, severities. The SDK adds namespace,
task_queue and workflow_type. docs/operations.md says what each metric means.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


def count(name: str, description: str, **labels: str) -> None:
    workflow.metric_meter().create_counter(name, description).add(1, labels)


def observe_duration(name: str, description: str, duration: timedelta, **labels: str) -> None:
    workflow.metric_meter().create_histogram_timedelta(name, description).record(duration, labels)


def since_start() -> timedelta:
    return workflow.now() - workflow.info().start_time
