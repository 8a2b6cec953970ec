"""The `deliver-slack` activity: one POST per attempt to a Slack incoming webhook (Mattermost takes
the same body), STEWARD_SLACK_WEBHOOK_URL.

Block Kit `blocks` with a plain `text` fallback (message.py). Temporal owns retries: 429 after its
Retry-After, 408/5xx/unreachable again later, any other 4xx (a revoked webhook answers 403 or 404,
a bad payload 400) fails at once, typed, so the caller can fall through to its next channel.
Incoming webhooks take no idempotency key: a retried attempt whose first try did reach Slack can
post twice. The webhook URL is the credential: it is never logged nor returned.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel
from temporalio import activity

from activities.llm.providers.openai_compatible import retry_after
from activities.notify.delivery import delivery_failure, delivery_log_context
from activities.notify.message import Notice, as_slack, links_for
from steward import runtime
from steward.logs import get_logger

log = get_logger(__name__)

SLACK_UNAVAILABLE = "SlackUnavailable"  # retryable
SLACK_RATE_LIMITED = "SlackRateLimited"  # retryable, after Retry-After
SLACK_REJECTED = "SlackRejected"  # non-retryable: a 4xx other than 408/429
SLACK_MISCONFIGURED = "SlackMisconfigured"  # non-retryable: no webhook URL
NON_RETRYABLE = (SLACK_REJECTED, SLACK_MISCONFIGURED)
# Slack answers at once; a slower answer is better retried than waited on.
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RECIPIENT = "slack"  # who an action link in a Slack message was sent to: whoever reads the channel


class SlackDeliveryRequest(BaseModel):
    notice: Notice


class SlackDeliveryResult(BaseModel):
    delivered: bool
    status_code: int
    attempt: int


@activity.defn(name="deliver-slack")
async def deliver_slack(request: SlackDeliveryRequest) -> SlackDeliveryResult:
    info = activity.info()
    settings = runtime.settings()
    with delivery_log_context():
        if settings.slack_webhook_url is None:
            raise delivery_failure("no Slack webhook is configured (STEWARD_SLACK_WEBHOOK_URL)", SLACK_MISCONFIGURED,
                                   non_retryable=True)
        body = as_slack(request.notice, links_for(request.notice, RECIPIENT))
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False, trust_env=False) as client:
                response = await client.post(settings.slack_webhook_url.get_secret_value(), json=body)
        except httpx.TimeoutException:
            error = delivery_failure("Slack timed out", SLACK_UNAVAILABLE)
        except httpx.HTTPError:
            error = delivery_failure("Slack is unreachable", SLACK_UNAVAILABLE)
        else:
            status = response.status_code
            if 200 <= status < 300:
                log.info("slack message delivered", status_code=status)
                return SlackDeliveryResult(delivered=True, status_code=status, attempt=info.attempt)
            if status == 429:
                error = delivery_failure("Slack is rate limiting (429)", SLACK_RATE_LIMITED,
                                         next_retry_delay=retry_after(response.headers))
            elif status == 408 or status >= 500:
                error = delivery_failure(f"Slack failed ({status})", SLACK_UNAVAILABLE)
            else:
                error = delivery_failure(f"Slack rejected the message ({status})", SLACK_REJECTED, non_retryable=True)
        log.warning("slack message not delivered", error_type=error.type, reason=error.message)
        raise error
