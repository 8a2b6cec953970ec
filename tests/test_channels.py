"""Notification channels for people: e-mail to a real SMTP server (plain, STARTTLS, implicit TLS,
login), Slack to a real HTTP receiver, and a notice that falls through from a channel that fails
to the next one, through a real worker."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify.email import EmailDeliveryRequest, deliver_email, message_id_header
from activities.notify.message import ActionRequest, Link, Notice
from activities.notify.slack import SlackDeliveryRequest, deliver_slack
from steward import runtime
from steward.action_links import ActionClaim, InvalidActionLink, verify_action
from steward.settings import Settings
from tests.conftest import TEST_SECRET
from tests.smtp import smtp_server
from tests.support import wait_for_run, watch
from tests.test_webhooks import Reply, serve_receiver

NOTICE = Notice(
    title="Disk almost full on db-1", lines=["Free space fell below 5%.", "Runbook: clean WAL archives."],
    fields=[("Severity", "critical"), ("Service", "db")], links=[Link(label="Open the run", url="https://x/runs/1")],
)
ACK = ActionRequest(action="acknowledge", label="Acknowledge", run_id="incident-response-abc", tenant="acme")
AT = datetime(2026, 11, 30, 3, 14, tzinfo=UTC)
SLACK_URL_SECRET = "T000/B000/slack-webhook-secret-part"
watch("a Slack webhook URL", SLACK_URL_SECRET)


@pytest.fixture
def use_settings(settings: Settings) -> Iterator[Callable[..., Settings]]:
    def use(**changes) -> Settings:
        own = settings.model_copy(update=changes)
        runtime.configure(own)
        return own

    yield use
    runtime.configure(settings)


def email_request(to: str = "oncall@example.com", notice: Notice = NOTICE) -> EmailDeliveryRequest:
    return EmailDeliveryRequest(message_id="incident-1:page-1:oncall", to=to, notice=notice, occurred_at=AT)


def the_ack_link(text: str) -> str:
    return next(word for word in text.split() if "/act/" in word)


# --- e-mail --------------------------------------------------------------------------------


async def test_email_arrives_with_text_html_and_an_ack_link_signed_for_its_recipient(use_settings):
    with smtp_server() as server:
        use_settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none",
                     smtp_from="steward@alerts.example.com", public_url="https://steward.example.com")
        result = await ActivityEnvironment().run(
            deliver_email, email_request(notice=NOTICE.model_copy(update={"action": ACK})))

    assert result.delivered
    (message,) = server.mailbox.messages
    assert message["Subject"] == NOTICE.title and message["To"] == "oncall@example.com"
    assert message["From"] == "steward@alerts.example.com"
    assert message["Message-ID"] == message_id_header("incident-1:page-1:oncall", "alerts.example.com")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Severity: critical" in text and "Free space fell below 5%." in text and "https://x/runs/1" in text
    assert "Disk almost full on db-1" in html and "https://x/runs/1" in html
    link = the_ack_link(text)
    assert link.startswith("https://steward.example.com/act/") and link in html
    claim = verify_action(TEST_SECRET, urlsplit(link).path.rsplit("/", 1)[1])
    assert claim == ActionClaim(action="acknowledge", run_id=ACK.run_id, tenant="acme", recipient="oncall@example.com")
    with pytest.raises(InvalidActionLink):
        verify_action("another-secret-of-another-steward-0123456789", urlsplit(link).path.rsplit("/", 1)[1])


async def test_a_retried_email_keeps_its_message_id():
    first = email_request()
    assert message_id_header(first.message_id, "x.org") == message_id_header(email_request().message_id, "x.org")
    assert message_id_header(first.message_id, "x.org") != message_id_header("incident-1:page-2:oncall", "x.org")


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_over_tls_verifies_the_relay_and_logs_in(security, tmp_path: Path, use_settings):
    password_file = tmp_path / "smtp-password"
    password_file.write_text("relay-password-42\n")
    password_file.chmod(0o600)
    watch("the SMTP password", "relay-password-42")
    with smtp_server(tmp_path, security=security, login=("steward", "relay-password-42")) as server:
        use_settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security=security,
                     smtp_ca_file=server.ca_file, smtp_username="steward", smtp_password_file=password_file)
        result = await ActivityEnvironment().run(deliver_email, email_request())

    assert result.delivered and len(server.mailbox.messages) == 1


async def test_a_relay_whose_certificate_does_not_verify_is_refused_without_retrying(tmp_path: Path, use_settings):
    with smtp_server(tmp_path, security="starttls") as server:
        use_settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls")  # system CAs only
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(deliver_email, email_request())

    assert (failure.value.type, failure.value.non_retryable) == ("EmailMisconfigured", True)
    assert server.mailbox.messages == []


async def test_a_wrong_password_is_refused_without_retrying(tmp_path: Path, use_settings):
    password_file = tmp_path / "smtp-password"
    password_file.write_text("not-the-password")
    password_file.chmod(0o600)
    with smtp_server(tmp_path, security="starttls", login=("steward", "relay-password-42")) as server:
        use_settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls",
                     smtp_ca_file=server.ca_file, smtp_username="steward", smtp_password_file=password_file)
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(deliver_email, email_request())

    assert (failure.value.type, failure.value.non_retryable) == ("EmailMisconfigured", True)


@pytest.mark.parametrize(("local_part", "reply", "error_type", "non_retryable"), [
    ("nobody", "550 5.1.1 no such user", "EmailRejected", True),
    ("busy", "451 4.3.0 try again later", "EmailUnavailable", False),
])
async def test_a_refused_recipient_fails_typed(local_part, reply, error_type, non_retryable, use_settings):
    with smtp_server() as server:
        server.mailbox.refuse[local_part] = reply
        use_settings(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(deliver_email, email_request(to=f"{local_part}@example.com"))

    assert (failure.value.type, failure.value.non_retryable) == (error_type, non_retryable)
    assert server.mailbox.messages == []


async def test_without_a_relay_email_lands_in_the_maildir_under_the_data_dir(use_settings, tmp_path):
    use_settings(smtp_host=None, data_dir=tmp_path)
    result = await ActivityEnvironment().run(deliver_email, email_request(to="oncall@example.com"))

    assert (result.delivered, result.transport) == (True, "maildir")
    (message,) = mailbox.Maildir(tmp_path / "mail", create=False)
    assert message["To"] == "oncall@example.com" and message["Subject"] == NOTICE.title
    assert (tmp_path / "mail").stat().st_mode & 0o777 == 0o700


async def test_an_unreachable_relay_is_retried(use_settings):
    use_settings(smtp_host="127.0.0.1", smtp_port=1, smtp_security="none", smtp_timeout_s=5)
    with pytest.raises(ApplicationError) as unreachable:
        await ActivityEnvironment().run(deliver_email, email_request())

    assert (unreachable.value.type, unreachable.value.non_retryable) == ("EmailUnavailable", False)


# --- Slack ---------------------------------------------------------------------------------


async def test_slack_gets_block_kit_with_a_text_fallback_and_escaped_values(use_settings):
    notice = NOTICE.model_copy(update={"action": ACK, "fields": [("Service", "<!channel> & <https://evil|click>")]})
    async with serve_receiver() as receiver:
        use_settings(slack_webhook_url=SecretStr(f"{receiver.url}/{SLACK_URL_SECRET}"), public_url="https://s.example")
        result = await ActivityEnvironment().run(deliver_slack, SlackDeliveryRequest(notice=notice))

    assert result.delivered and result.status_code == 200
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert NOTICE.title in body["text"] and "Free space fell below 5%." in body["text"]
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["header", "section", "section", "section", "actions"]
    field = body["blocks"][1]["fields"][0]["text"]
    assert "<!channel>" not in field and "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in field
    buttons = body["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Acknowledge", "Open the run"]
    claim = verify_action(TEST_SECRET, buttons[0]["url"].rsplit("/", 1)[1])
    assert claim.recipient == "slack" and claim.run_id == ACK.run_id


@pytest.mark.parametrize(("status", "error_type", "non_retryable"), [
    (404, "SlackRejected", True), (400, "SlackRejected", True), (503, "SlackUnavailable", False),
    (429, "SlackRateLimited", False),
])
async def test_slack_failures_are_typed(status, error_type, non_retryable, use_settings):
    async with serve_receiver() as receiver:
        receiver.script(default=Reply(status, headers={"Retry-After": "7"} if status == 429 else {}))
        use_settings(slack_webhook_url=SecretStr(receiver.url))
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(deliver_slack, SlackDeliveryRequest(notice=NOTICE))

    assert (failure.value.type, failure.value.non_retryable) == (error_type, non_retryable)
    if status == 429:
        assert failure.value.next_retry_delay is not None and failure.value.next_retry_delay.total_seconds() == 7


# --- Falling through, in a real workflow -----------------------------------------------------


async def test_a_channel_that_fails_falls_through_to_the_next_and_every_try_is_recorded(use_settings, http, auth):
    with smtp_server() as server:
        async with serve_receiver() as receiver:
            receiver.script(default=Reply(404))  # a revoked Slack webhook
            use_settings(slack_webhook_url=SecretStr(receiver.url), smtp_host="127.0.0.1", smtp_port=server.port,
                         smtp_security="none")
            targets = [{"channel": "slack"}, {"channel": "email", "to": "primary@example.com"},
                       {"channel": "email", "to": "never-tried@example.com"}]
            started = await http.post("/v1/workflows/test-channels/runs",
                                      json={"input": {"targets": targets, "with_ack_link": True}}, headers=auth())
            run = await wait_for_run(http, started.json()["id"], auth())

    slack, mail = run["result"]["records"]
    assert (slack["channel"], slack["delivered"], slack["error_type"]) == ("slack", False, "SlackRejected")
    assert (mail["channel"], mail["recipient"], mail["delivered"]) == ("email", "primary@example.com", True)
    (message,) = server.mailbox.messages
    assert message["To"] == "primary@example.com"
    claim = verify_action(TEST_SECRET, urlsplit(the_ack_link(message.get_body(("plain",)).get_content())).path
                          .rsplit("/", 1)[1])
    assert claim.run_id == run["id"] and claim.recipient == "primary@example.com" and claim.tenant == run["tenant"]


async def test_when_every_channel_fails_the_run_still_completes_with_the_failures_recorded(use_settings, http, auth):
    with smtp_server() as server:
        server.mailbox.refuse["gone"] = "550 5.1.1 no such user"
        use_settings(slack_webhook_url=None, smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
        targets = [{"channel": "slack"}, {"channel": "email", "to": "gone@example.com"}, {"channel": "webhook"}]
        started = await http.post("/v1/workflows/test-channels/runs", json={"input": {"targets": targets}},
                                  headers=auth())
        run = await wait_for_run(http, started.json()["id"], auth())

    assert run["status"] == "completed"
    records = run["result"]["records"]
    assert [(r["channel"], r["delivered"]) for r in records] == [("slack", False), ("email", False), ("webhook", False)]
    assert [r["error_type"] for r in records[:2]] == ["SlackMisconfigured", "EmailRejected"]
    assert records[2]["skipped"]
