"""Structured JSON logs on stdout for every Steward process.

structlog renders one JSON object per line. The standard library's loggers (temporalio's
`workflow.logger` and `activity.logger`, uvicorn) go through the same renderer, so an operator
greps one format. Temporal's log context (`temporal_workflow` / `temporal_activity` extras) is
flattened into workflow_id, run_id and activity fields, and the current OpenTelemetry trace id is
added wherever a span is active.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Temporal's own loggers are chatty at INFO about internals operators never act on.
_QUIET_LOGGERS = {
    "temporalio": logging.WARNING,
    "uvicorn.error": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    # Stripe's library logs each request's URL at info; a customer lookup's URL holds an e-mail address.
    "stripe": logging.WARNING,
}
_APPLICATION_LOGGERS = ("temporalio.workflow", "temporalio.activity")


def _add_trace_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
    return event


def _flatten_temporal_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace Temporal's nested log context with flat, greppable id fields."""
    wf = event.pop("temporal_workflow", None)
    if isinstance(wf, dict):
        event.setdefault("workflow_id", wf.get("workflow_id"))
        event.setdefault("run_id", wf.get("run_id"))
        event.setdefault("workflow_type", wf.get("workflow_type"))
    act = event.pop("temporal_activity", None)
    if isinstance(act, dict):
        event.setdefault("workflow_id", act.get("workflow_id"))
        event.setdefault("run_id", act.get("workflow_run_id"))
        event.setdefault("activity_type", act.get("activity_type"))
        event.setdefault("activity_id", act.get("activity_id"))
        event.setdefault("attempt", act.get("attempt"))
    # Temporal appends the same context to the message text; the fields above carry it.
    message = event.get("event")
    if isinstance(message, str) and (wf or act) and " ({" in message:
        event["event"] = message.split(" ({", 1)[0]
    return event


def configure_logging(level: str = "info", component: str = "steward") -> None:
    """Route structlog and stdlib logging to JSON lines on stdout; safe to call more than once."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_id,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _flatten_temporal_context],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_LEVELS[level])
    for name, quiet_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, _LEVELS[level]))
    # workflow.logger and activity.logger are where our own workflows and activities speak.
    for name in _APPLICATION_LOGGERS:
        logging.getLogger(name).setLevel(_LEVELS[level])
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(component=component)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
