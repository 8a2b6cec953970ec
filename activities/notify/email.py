"""The `deliver-email` activity: one e-mail per attempt, over SMTP (STEWARD_SMTP_*).

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

import hashlib
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
from pydantic import BaseModel, Field
from temporalio import activity

from activities.notify.delivery import delivery_failure, delivery_log_context
from activities.notify.message import Notice, as_html, as_text, links_for
from steward import runtime
from steward.logs import get_logger

log = get_logger(__name__)

EMAIL_UNAVAILABLE = "EmailUnavailable"  # retryable: unreachable, timed out, 4xx
EMAIL_REJECTED = "EmailRejected"  # non-retryable: the relay refused the message or the recipient (5xx)
EMAIL_MISCONFIGURED = "EmailMisconfigured"  # non-retryable: no relay, a refused login, a bad certificate
NON_RETRYABLE = (EMAIL_REJECTED, EMAIL_MISCONFIGURED)


class EmailDeliveryRequest(BaseModel):
    message_id: str = Field(description="Identical on every retry; becomes the Message-ID.")
    to: str = Field(max_length=320)
    notice: Notice
    occurred_at: datetime


class EmailDeliveryResult(BaseModel):
    delivered: bool
    attempt: int


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


@activity.defn(name="deliver-email")
async def deliver_email(request: EmailDeliveryRequest) -> EmailDeliveryResult:
    info = activity.info()
    settings = runtime.settings()
    with delivery_log_context(recipient_domain=_domain(request.to)):
        if not settings.smtp_host:
            raise delivery_failure("no SMTP relay is configured (STEWARD_SMTP_HOST)", EMAIL_MISCONFIGURED,
                                   non_retryable=True)
        message = compose(request, settings.smtp_from)
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
            error = delivery_failure("the SMTP relay refused the login", EMAIL_MISCONFIGURED, non_retryable=True)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            transient = all(400 <= code < 500 for code in codes)
            error = delivery_failure(f"the SMTP relay refused the recipient ({', '.join(map(str, codes))})",
                                     EMAIL_UNAVAILABLE if transient else EMAIL_REJECTED, non_retryable=not transient)
        except aiosmtplib.SMTPResponseException as exc:
            transient = 400 <= exc.code < 500
            error = delivery_failure(f"the SMTP relay answered {exc.code}",
                                     EMAIL_UNAVAILABLE if transient else EMAIL_REJECTED, non_retryable=not transient)
        except ssl.SSLCertVerificationError:
            error = delivery_failure("the SMTP relay's certificate did not verify", EMAIL_MISCONFIGURED,
                                     non_retryable=True)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            error = delivery_failure("the SMTP relay is unreachable", EMAIL_UNAVAILABLE)
        else:
            log.info("email delivered")
            return EmailDeliveryResult(delivered=True, attempt=info.attempt)
        log.warning("email not delivered", error_type=error.type, reason=error.message)
        raise error
