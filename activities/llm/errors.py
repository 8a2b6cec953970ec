"""ApplicationError type names of the LLM layer: stable strings workflows and retry policies match.

Retryable: the model or the network may do better next time (Temporal's policy decides when).
Non-retryable: the same request will fail the same way; the workflow must route around it.
"""

LLM_RATE_LIMITED = "LlmRateLimited"  # retryable, after the endpoint's Retry-After
LLM_UNAVAILABLE = "LlmUnavailable"  # retryable: 5xx, timeout, connection error
LLM_BAD_RESPONSE = "LlmBadResponse"  # retryable: a body that is not a chat completion (proxy error page)
LLM_REQUEST_REJECTED = "LlmRequestRejected"  # non-retryable: 400/401/403/404/422 (configuration or request)
LLM_OUTPUT_INVALID = "LlmOutputInvalid"  # non-retryable: invalid twice; details carry the call record
LLM_UNKNOWN_TASK = "LlmUnknownTask"  # non-retryable: a workflow asked for a task that does not exist
LLM_TASK_INVALID = "LlmTaskInvalid"  # non-retryable: a definition's own task has no usable output schema

NON_RETRYABLE = (LLM_REQUEST_REJECTED, LLM_OUTPUT_INVALID, LLM_UNKNOWN_TASK, LLM_TASK_INVALID)
# Answers a workflow must send to a person instead of deciding automatically.
ROUTE_TO_REVIEW = (LLM_OUTPUT_INVALID,)
