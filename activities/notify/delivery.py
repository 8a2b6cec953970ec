"""What every delivery activity (webhook, email, Slack) shares: its log context and the shape of
its failures, so a log line or a failed delivery reads the same whichever channel it came from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError


@contextmanager
def delivery_log_context(**fields: Any) -> Iterator[None]:
    """Bind the activity's ids and attempt (plus `fields`, never personal data) to every log line."""
    info = activity.info()
    with structlog.contextvars.bound_contextvars(
        workflow_id=info.workflow_id, run_id=info.workflow_run_id, activity_type=info.activity_type,
        attempt=info.attempt, **fields,
    ):
        yield


def delivery_failure(message: str, error_type: str, *, non_retryable: bool = False,
                     next_retry_delay: timedelta | None = None, **details: Any) -> ApplicationError:
    """A failed delivery. Its details carry what the workflow cannot know itself: how many attempts
    were made (ActivityError does not say), plus `details` such as the target's host. Outside an
    activity (the API checking a URL before anything is sent) there is no attempt to count."""
    attempt = activity.info().attempt if activity.in_activity() else None
    return ApplicationError(message, {**details, "attempt": attempt}, type=error_type,
                            non_retryable=non_retryable, next_retry_delay=next_retry_delay)
