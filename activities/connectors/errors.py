"""How a connector fails: three ApplicationError types a workflow and its retry policies match.

Connectors never retry themselves. A failure a retry may cure (the system is down, slow, rate
limiting) is retryable and Temporal retries it; one it cannot (the request is wrong, the
credentials are) is non-retryable and fails the step at once, so a saga can undo what was done.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.exceptions import ApplicationError

from activities.llm.providers.openai_compatible import retry_after

CONNECTOR_UNAVAILABLE = "ConnectorUnavailable"  # network, timeout, 5xx, 408, 429: retried
CONNECTOR_REJECTED = "ConnectorRejected"  # a 4xx the request cannot heal by repeating: not retried
CONNECTOR_MISCONFIGURED = "ConnectorMisconfigured"  # no address, a refused credential: not retried
NON_RETRYABLE = (CONNECTOR_REJECTED, CONNECTOR_MISCONFIGURED)


def unavailable(system: str, message: str, *, next_retry_delay: timedelta | None = None) -> ApplicationError:
    return ApplicationError(f"{system}: {message}", {"system": system}, type=CONNECTOR_UNAVAILABLE,
                            next_retry_delay=next_retry_delay)


def rejected(system: str, message: str, status: int | None = None) -> ApplicationError:
    return ApplicationError(f"{system}: {message}", {"system": system, "status": status}, type=CONNECTOR_REJECTED,
                            non_retryable=True)


def misconfigured(system: str, message: str) -> ApplicationError:
    return ApplicationError(f"{system}: {message}", {"system": system}, type=CONNECTOR_MISCONFIGURED,
                            non_retryable=True)


def for_status(system: str, response: httpx.Response, what: str) -> ApplicationError:
    """The failure an HTTP answer that is not a success means. The body is not quoted: it may
    echo personal data back."""
    status = response.status_code
    if status in (401, 403):
        return misconfigured(system, f"{what} was refused ({status}): check the credentials")
    if status == 429:
        return unavailable(system, f"{what}: rate limited (429)", next_retry_delay=retry_after(response.headers))
    if status == 408 or status >= 500:
        return unavailable(system, f"{what} failed ({status})")
    return rejected(system, f"{what} was rejected ({status})", status)


def for_transport(system: str, error: httpx.HTTPError, what: str) -> ApplicationError:
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "is unreachable"
    return unavailable(system, f"{what}: the system {kind}")
