"""The API's Prometheus metrics, served at /metrics in the text exposition format.

Labels are bounded by construction: a route is its template (`/v1/runs/{run_id}`), never the
raw path, and a request no route matched is `unmatched`; workflows are catalog names; statuses
are HTTP codes. Nothing carries a run id, a tenant or a principal. Gauges that describe runs
(approvals pending) are counted from Temporal's visibility when scraped, so they are right
whichever process started or decided what.

docs/operations.md says what each metric means, and holds the alert rules built on them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# Request latencies from a millisecond (a probe) to a minute (a long poll of GET /v1/runs/{id}?wait).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "unmatched"


class ApiMetrics:
    """One registry per app, so tests building several apps in one process never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("steward_http_requests", "HTTP requests answered, by route template and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("steward_http_request_duration_seconds", "Time to answer, by route template.",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.runs_started = Counter("steward_runs_started", "Runs started through the API, by workflow.",
                                    ["workflow"], registry=self.registry)
        self.approvals_pending = Gauge("steward_approvals_pending",
                                       "Runs waiting for an approval decision, by workflow (from visibility).",
                                       ["workflow"], registry=self.registry)

    def observe(self, route: str | None, method: str, status: int, seconds: float) -> None:
        route = route or UNMATCHED
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
