"""What the incident tests share: Alertmanager's payloads, a real API key, the places pages reach
(a real SMTP server, a Slack receiver, the platform webhook's receiver) and a routing file of the
test's own. Test modules use it with `pytest_plugins = ["tests.incident_fixtures"]`."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from steward import runtime
from steward.apikeys import store
from steward.settings import Settings
from tests.smtp import smtp_server
from tests.support import eventually, watch
from tests.test_webhooks import SECRET as WEBHOOK_SECRET
from tests.test_webhooks import serve_receiver

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
HOOK = "/v1/hooks/alertmanager"
ROUTING = """\
version: 1
routes:
  - name: everyone
    match: {}
    steps:
      - after: PT0S
        page:
          - name: on-call
            via: [{channel: slack}, {channel: email, to: oncall}]
          - name: platform-webhook
            via: [{channel: webhook}]
"""


def payload(name: str, group: str) -> dict[str, Any]:
    """A committed Alertmanager body, its group made this test's own."""
    body = json.loads((FIXTURES / f"{name}.json").read_text())
    if "groupKey" in body:
        body["groupKey"] = f"{body['groupKey']}:{group}"
    return copy.deepcopy(body)


@pytest.fixture
def group() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def alertmanager_key(settings: Settings, tenant: str) -> dict[str, str]:
    """A real API key, as Alertmanager's credentials_file would hold it."""
    key, _ = store(settings.api_keys_path).create(f"alertmanager-{uuid.uuid4().hex[:8]}", ["operator"], tenant)
    watch("an API key", key)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def outside(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    """What pages reach: a real SMTP server, a Slack receiver and the platform webhook's receiver,
    with the activities' settings pointed at them and a routing file of this test's own."""

    class Outside:
        def route(self, text: str, **changes: Any) -> Settings:
            path = tmp_path / f"routing-{uuid.uuid4().hex[:6]}.yaml"
            path.write_text(text)
            own = settings.model_copy(update={
                "incident_routing": path, "smtp_host": "127.0.0.1", "smtp_port": self.smtp.port,
                "smtp_security": "none", "oncall_email": "oncall@example.com",
                "slack_webhook_url": SecretStr(self.slack.url), "notify_webhook_url": self.webhook.url,
                "notify_webhook_secret": SecretStr(WEBHOOK_SECRET), "public_url": "https://steward.example.com",
                **changes,
            })
            runtime.configure(own)
            return own

    return Outside()


@pytest.fixture
async def pages(outside) -> Iterator[Any]:
    with smtp_server() as smtp:
        async with serve_receiver() as slack, serve_receiver() as webhook:
            outside.smtp, outside.slack, outside.webhook = smtp, slack, webhook
            outside.route(ROUTING)
            yield outside
    runtime.configure(None)


@pytest.fixture(autouse=True)
def restore_settings(settings: Settings) -> Iterator[None]:
    yield
    runtime.configure(settings)


def slack_for(outside, run_id: str) -> list[dict]:
    """This run's Slack messages (runs of earlier tests may still be paging; each links its run)."""
    return [body for body in (json.loads(r.body) for r in outside.slack.requests) if run_id in body["text"]]


def recipients(outside, run_id: str) -> list[str]:
    """Who this run e-mailed, in order. Runs of earlier tests may still be paging (the SMTP server
    is this test's, the settings are process-wide): each page links its own run."""
    return [m["To"] for m in outside.smtp.mailbox.messages if run_id in m.get_body(("plain",)).get_content()]


async def run_of(http, auth, run_id: str) -> dict:
    response = await http.get(f"/v1/runs/{run_id}", headers=auth())
    assert response.status_code == 200, response.text
    return response.json()


async def incident_where(http, auth, run_id: str, what: str, check: Callable[[dict], bool]) -> dict:
    async def probe() -> dict | None:
        incident = (await run_of(http, auth, run_id))["incident"]
        return incident if incident and check(incident) else None

    return await eventually(probe, what)


async def fire(http, key, name: str, group: str) -> dict:
    response = await http.post(HOOK, json=payload(name, group), headers=key)
    assert response.status_code == 202, response.text
    return response.json()
