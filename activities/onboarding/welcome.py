"""The welcome e-mail, with the one-time activation link (steward/activation.py).

The token is made here, put in the message and sent; the activity returns only its SHA-256. It
is never in workflow history, a log line, run details or an artifact — even encrypted. So a
retry cannot send the same link again: each attempt makes a new token, and the run keeps the
digest of the attempt that completed. In the rare case that a worker dies after the relay took
the message and before Temporal heard of it, the contact gets two e-mails and only the newer
link works (the older one answers like a used one).
"""

from __future__ import annotations

from temporalio import activity

from activities.notify.delivery import delivery_log_context
from activities.notify.email import EmailDeliveryRequest, compose, send
from activities.notify.message import Link, Notice
from activities.onboarding.models import WelcomeRequest, WelcomeSent
from steward import runtime
from steward.activation import activation_url, new_activation_token, token_digest
from steward.logs import get_logger

log = get_logger(__name__)


def welcome_notice(request: WelcomeRequest, link: str) -> Notice:
    expires = request.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return Notice(
        title=f"Welcome to Steward, {request.company_name}",
        lines=[f"Hello {request.contact_name},",
               f"the {request.plan} account of {request.company_name} is ready. Activate it with the link below; "
               f"it works once, until {expires}.",
               "If you did not expect this e-mail, ignore it: nothing happens until the link is used."],
        fields=[("Company", request.company_name), ("Plan", request.plan)],
        links=[Link(label="Activate your account", url=link)],
    )


@activity.defn(name="send-welcome-email")
async def send_welcome_email(request: WelcomeRequest) -> WelcomeSent:
    info = activity.info()
    settings = runtime.settings()
    with delivery_log_context(recipient_domain=request.to.rsplit("@", 1)[-1]):
        token = new_activation_token(request.onboarding_id)
        notice = welcome_notice(request, activation_url(settings.link_base_url, token))
        # A Message-ID per attempt: each attempt carries a new link, and a mail client that drops a
        # second message with a Message-ID it has seen would keep the older, dead one.
        message_id = f"{request.message_id}/attempt-{info.attempt}"
        message = compose(EmailDeliveryRequest(message_id=message_id, to=request.to, notice=notice,
                                               occurred_at=request.occurred_at), settings.smtp_from)
        transport = await send(message, settings)
        log.info("welcome e-mail sent", transport=transport)
        return WelcomeSent(token_sha256=token_digest(token), transport=transport, attempt=info.attempt)
