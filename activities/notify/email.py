"""The `deliver-email` activity: one e-mail per attempt, over SMTP (STEWARD_SMTP_*); `send` for
activities that compose their own message (the welcome e-mail's one-time activation link).

Without STEWARD_SMTP_HOST, e-mail goes to a Maildir under the data dir (`<data dir>/mail`, named
in `steward up`'s banner): a new user sees every message with any mail reader, and nothing is
lost. A production deployment sets an SMTP relay.

STARTTLS (submission, port 587), implicit TLS (port 465) or a plain local relay; a username and a
password from a file of mode 0600 when the relay wants them; the relay's certificate checked
against the system's CAs or STEWARD_SMTP_CA_FILE. Temporal owns retries: a connection that fails,
times out or meets a 4xx is retried; a 5xx the relay gives for the recipient, a refused login or a
certificate that does not verify fail at once, typed, so the caller can fall through to its next
channel.

The Message-ID is derived from the workflow's message id, the same on every attempt, so a mail
system that already has the message can drop a retry's copy. Logs name the recipient's domain,
never the address.
"""

from __future__ import annotations

import asyncio
import hashlib
import mailbox
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify.delivery import delivery_failure, delivery_log_context
from activities.notify.message import Notice, as_html, as_text, links_for
from steward import runtime
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

EMAIL_UNAVAILABLE = "EmailUnavailable"  # retryable: unreachable, timed out, 4xx
EMAIL_REJECTED = "EmailRejected"  # non-retryable: the relay refused the message or the recipient (5xx)
EMAIL_MISCONFIGURED = "EmailMisconfigured"  # non-retryable: a refused login, a bad certificate
NON_RETRYABLE = (EMAIL_REJECTED, EMAIL_MISCONFIGURED)


class EmailDeliveryRequest(BaseModel):
    message_id: str = Field(description="Identical on every retry; becomes the Message-ID.")
    to: str = Field(max_length=320)
    notice: Notice
    occurred_at: datetime


class EmailDeliveryResult(BaseModel):
    delivered: bool
    attempt: int
    transport: Literal["smtp", "maildir"] = "smtp"


def message_id_header(message_id: str, domain: str) -> str:
    return f"<{hashlib.sha256(message_id.encode()).hexdigest()[:32]}@{domain}>"


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1] if "@" in address else "?"


def compose(request: EmailDeliveryRequest, sender: str) -> EmailMessage:
    links = links_for(request.notice, request.to)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = request.to
    message["Subject"] = request.notice.title
    message["Date"] = format_datetime(request.occurred_at.astimezone(timezone.utc))
    message["Message-ID"] = message_id_header(request.message_id, _domain(sender) or "steward")
    message.set_content(as_text(request.notice, links))
    message.add_alternative(as_html(request.notice, links), subtype="html")
    return message


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


Transport = Literal["smtp", "maildir"]


async def send(message: EmailMessage, settings: Settings) -> Transport:
    """Send `message` over the configured SMTP relay, or without one put it in the Maildir under
    the data dir (`settings.mail_dir`). Failures are typed ApplicationErrors (see the types above);
    call it inside an activity."""
    if not settings.smtp_host:
        await asyncio.to_thread(_to_maildir, message, settings.mail_dir)
        return "maildir"
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            tls_context=_tls_context(str(settings.smtp_ca_file) if settings.smtp_ca_file else None),
            username=settings.smtp_username,
            password=settings.smtp_password() if settings.smtp_username else None,
            timeout=settings.smtp_timeout_s,
        )
    except aiosmtplib.SMTPAuthenticationError:
        raise delivery_failure("the SMTP relay refused the login", EMAIL_MISCONFIGURED, non_retryable=True) from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = sorted({r.code for r in exc.recipients})
        transient = all(400 <= code < 500 for code in codes)
        kind = EMAIL_UNAVAILABLE if transient else EMAIL_REJECTED
        raise delivery_failure(f"the SMTP relay refused the recipient ({', '.join(map(str, codes))})", kind,
                               non_retryable=not transient) from None
    except aiosmtplib.SMTPResponseException as exc:
        transient = 400 <= exc.code < 500
        kind = EMAIL_UNAVAILABLE if transient else EMAIL_REJECTED
        raise delivery_failure(f"the SMTP relay answered {exc.code}", kind, non_retryable=not transient) from None
    except ssl.SSLCertVerificationError:
        raise delivery_failure("the SMTP relay's certificate did not verify", EMAIL_MISCONFIGURED,
                               non_retryable=True) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        raise delivery_failure("the SMTP relay is unreachable", EMAIL_UNAVAILABLE) from None
    return "smtp"


def _to_maildir(message: EmailMessage, root: Path) -> None:
    # Private like the rest of the data dir: these are real messages to real addresses.
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(exist_ok=True, mode=0o700)
    mailbox.Maildir(root, create=False).add(message)


@activity.defn(name="deliver-email")
async def deliver_email(request: EmailDeliveryRequest) -> EmailDeliveryResult:
    info = activity.info()
    settings = runtime.settings()
    with delivery_log_context(recipient_domain=_domain(request.to)):
        try:
            transport = await send(compose(request, settings.smtp_from), settings)
        except ApplicationError as error:
            log.warning("email not delivered", error_type=error.type, reason=error.message)
            raise
        log.info("email delivered", transport=transport)
        return EmailDeliveryResult(delivered=True, attempt=info.attempt, transport=transport)
