"""The worker's histograms, by name, with their buckets.

Named here, in the kernel, because the runtime that serves them (steward/temporal_client.py)
fixes their buckets before any workflow or activity records one. The SDK's defaults suit
latencies of milliseconds; an approval waits hours, and an LLM step costs fractions of a cent.
"""

from __future__ import annotations

APPROVAL_DECISION_SECONDS = "steward_approval_decision_seconds"
INCIDENT_TIME_TO_ACKNOWLEDGE_SECONDS = "steward_incident_time_to_acknowledge_seconds"
INCIDENT_TIME_TO_RESOLVE_SECONDS = "steward_incident_time_to_resolve_seconds"
LLM_STEP_COST_USD = "steward_llm_step_cost_usd"

_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0

HISTOGRAM_BUCKETS: dict[str, list[float]] = {
    APPROVAL_DECISION_SECONDS: [_MINUTE, 5 * _MINUTE, 15 * _MINUTE, _HOUR, 4 * _HOUR, 8 * _HOUR, _DAY, 2 * _DAY,
                                3 * _DAY, 7 * _DAY, 30 * _DAY],
    INCIDENT_TIME_TO_ACKNOWLEDGE_SECONDS: [30.0, _MINUTE, 2 * _MINUTE, 5 * _MINUTE, 10 * _MINUTE, 15 * _MINUTE,
                                           30 * _MINUTE, _HOUR, 4 * _HOUR, _DAY],
    INCIDENT_TIME_TO_RESOLVE_SECONDS: [5 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE, _HOUR, 2 * _HOUR, 4 * _HOUR,
                                       8 * _HOUR, _DAY, 3 * _DAY, 7 * _DAY],
    LLM_STEP_COST_USD: [0.0, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
}
