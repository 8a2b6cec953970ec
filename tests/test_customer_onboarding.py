"""customer-onboarding end to end: the real API and worker, against real CRM, SCIM, Stripe and SMTP
servers (tests/crm_server.py, scim_server.py, stripe_server.py, smtp.py) or the embedded default."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor, Worker

from activities.onboarding.models import OnboardingInput
from steward import runtime
from steward.activation import token_digest
from steward.identity import Principal, issue_token
from steward.search_attributes import for_new_run
from steward.settings import Settings
from tests.conftest import TEST_DATA_CONVERTER
from tests.smtp import SmtpServer, smtp_server
from tests.support import eventually, wait_for_run, watch
from workers.worker import sandbox_runner
from workflows.customer_onboarding import NAME, SPEC, CustomerOnboardingWorkflow

if TYPE_CHECKING:  # loaded as plugins below; importing them first would stop pytest rewriting their asserts
    from tests.crm_server import CrmServer
    from tests.scim_server import ScimServer
    from tests.stripe_server import StripeServer

pytest_plugins = ["tests.crm_server", "tests.scim_server", "tests.stripe_server"]

REQUESTER = {"sub": "rita", "roles": ("requester",)}
APPROVER = {"sub": "vera", "roles": ("approver",)}
TOKEN_IN_LINK = re.compile(r"/activate/([A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+)")


def onboarding_input(*, pep: bool = False, plan: str = "team") -> dict[str, Any]:
    # A fresh address each time: the SCIM server keeps userNames unique for the whole session.
    return {
        "customer": {"company_name": "Becker Logistik GmbH", "plan": plan, "country": "DE"},
        "contact": {"full_name": "Hanna Becker", "email": f"hanna.becker+{uuid.uuid4().hex[:8]}@example.com",
                    "date_of_birth": "1986-03-14", "document_id": "DE-C01X00T47", "pep": pep,
                    "occupation": "Managing director", "annual_income": 140000, "source_of_funds": "salary"},
    }


@dataclass
class Systems:
    """The outside world of one test: the three connectors' servers, an SMTP server, and the
    settings that point the worker's activities at them."""

    crm: CrmServer
    scim: ScimServer
    stripe: StripeServer
    smtp: SmtpServer
    settings: Settings

    def activation_token(self, to: str) -> str:
        (message,) = [m for m in self.smtp.mailbox.messages if m["To"] == to]
        tokens = set(TOKEN_IN_LINK.findall(message.get_body(("plain",)).get_content()))
        (token,) = tokens
        watch("an activation token", token)
        return token

    async def records(self, onboarding_id: str) -> dict[str, list[dict[str, Any]]]:
        return {"accounts": self.crm.accounts(onboarding_id), "users": await self.scim.users(onboarding_id),
                "customers": await self.stripe.customers(onboarding_id),
                "subscriptions": await self.stripe.subscriptions(onboarding_id)}


@pytest.fixture
def systems(settings: Settings, crm_server: CrmServer, scim_server: ScimServer,
            stripe_server: StripeServer) -> Iterator[Systems]:
    with smtp_server() as smtp:
        own = stripe_server.settings(scim_server.settings(crm_server.settings(settings)))
        own = own.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "none"})
        runtime.configure(own)  # what the session worker's activities read
        try:
            yield Systems(crm_server, scim_server, stripe_server, smtp, own)
        finally:
            runtime.configure(settings)


async def start(http, auth, body: dict[str, Any]) -> str:
    response = await http.post(f"/v1/workflows/{NAME}/runs", json={"input": body}, headers=auth(**REQUESTER))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def onboarding_in(http, auth, run_id: str, state: str) -> dict:
    seen: dict[str, Any] = {}

    async def reached() -> dict | None:
        run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
        seen.update(run)
        view = run.get("onboarding") or {}
        if run["status"] != "running" and view.get("state") != state:
            raise AssertionError(f"the onboarding ended instead: {run}")
        return run if view.get("state") == state else None

    try:
        return await eventually(reached, f"onboarding {run_id} to be {state}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {seen.get('status')} {seen.get('onboarding')}") from None


async def test_onboarding_provisions_everything_and_the_link_activates_once(http, auth, systems, client, log_lines):
    body = onboarding_input()
    run_id = await start(http, auth, body)
    waiting = await onboarding_in(http, auth, run_id, "waiting_for_activation")

    # The compliance review is a run of the tenant's own, cleared by policy here.
    review_id = waiting["onboarding"]["compliance"]["run_id"]
    review = (await http.get(f"/v1/runs/{review_id}", headers=auth())).json()
    assert review["workflow"] == "compliance-documentation" and review["status"] == "completed"
    listed = (await http.get("/v1/runs", params={"workflow": "compliance-documentation"}, headers=auth())).json()
    assert review_id in [run["id"] for run in listed["runs"]]

    token = systems.activation_token(body["contact"]["email"])
    page = await http.get(f"/activate/{token}")
    assert page.status_code == 200 and "Activate" in page.text  # opening the link changes nothing
    assert (await onboarding_in(http, auth, run_id, "waiting_for_activation"))

    first = await http.post(f"/v1/activations/{token}")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "activated"
    second = await http.post(f"/v1/activations/{token}")
    unknown = await http.post(f"/v1/activations/{token[:-4]}AAAA")
    assert second.status_code == unknown.status_code == 404 and second.json() == unknown.json()

    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed", run
    result = run["result"]
    assert result["account"]["status"] == "active" and result["compliance"]["decision"] == "approved"
    assert [step["step"] for step in run["onboarding"]["steps"]] == [
        "crm_account", "compliance_review", "identity_user", "billing_subscription", "welcome_email", "activation",
        "account_active"]

    records = await systems.records(run_id)
    (account,), (user,), (customer,), (subscription,) = records.values()
    assert account["status"] == "active" and user["active"] is True
    assert subscription["customer"] == customer["id"] and subscription["plan"]["id"] == "steward-team"
    assert result["subscription"]["subscription_id"] == subscription["id"]

    # The token reached the contact and nothing else: not run details, not history (decoded).
    assert token not in str(run)
    history = await decoded_history(client, run_id)
    assert token not in history and token_digest(token) in history
    assert [line for line in log_lines.lines if token in line] == []

    # The audit log names who activated (the link) and keeps the run's record, without the token.
    audit = (await http.get(f"/v1/runs/{run_id}/audit", headers=auth(sub="ada", roles=("auditor",)))).json()
    (activated,) = [e for e in audit["entries"] if e["kind"] == "update.accepted"]
    assert (activated["data"]["update"], activated["data"]["by"]) == ("steward.activate", "activation-link")
    assert token not in str(audit)


async def test_rejected_review_undoes_the_crm_account_and_nothing_else_is_made(http, auth, systems):
    run_id = await start(http, auth, onboarding_input(pep=True))
    review_id = (await onboarding_in(http, auth, run_id, "in_review"))["onboarding"]["compliance"]["run_id"]
    decided = await eventually(lambda: _decide(http, auth, review_id, "reject", "Source of funds unexplained."),
                               "the review to wait for a person")
    assert decided.status_code == 200, decided.text

    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "failed"
    view = run["onboarding"]
    assert view["state"] == "failed"
    assert view["reason"] == "compliance review rejected: Source of funds unexplained."
    assert view["compliance"]["decision"] == "rejected" and view["compliance"]["decided_by"] == "vera"
    assert [(c["step"], c["status"]) for c in view["compensations"]] == [("CRM account", "undone")]
    assert "compliance review rejected" in run["error"]["message"] and "CRM account" in run["error"]["message"]

    records = await systems.records(run_id)
    assert [a["status"] for a in records["accounts"]] == ["archived"]
    assert records["users"] == records["customers"] == records["subscriptions"] == []


async def _decide(http, auth, run_id: str, decision: str, comment: str):
    response = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": decision, "comment": comment},
                               headers=auth(**APPROVER))
    return response if response.status_code != 409 else None


async def test_billing_failure_undoes_the_user_and_the_crm_account(http, auth, systems):
    # A plan the billing system does not know: Stripe refuses, retrying cannot help.
    runtime.configure(systems.settings.model_copy(update={"billing_plans": {"team": "steward-retired-plan"}}))
    run_id = await start(http, auth, onboarding_input())

    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "failed"
    view = run["onboarding"]
    assert view["reason"].startswith("billing subscription failed: ")
    assert [(c["step"], c["status"]) for c in view["compensations"]] == [
        ("billing subscription", "nothing_to_undo"), ("identity user", "undone"), ("CRM account", "undone")]
    steps = {step["step"]: step["status"] for step in view["steps"]}
    assert steps["billing_subscription"] == "failed" and "welcome_email" not in steps

    records = await systems.records(run_id)
    assert [a["status"] for a in records["accounts"]] == ["archived"]
    assert [u["active"] for u in records["users"]] == [False]
    assert records["subscriptions"] == []
    assert systems.smtp.mailbox.messages == []


async def test_cancelling_while_waiting_for_activation_undoes_every_step_and_kills_the_link(http, auth, systems):
    body = onboarding_input()
    run_id = await start(http, auth, body)
    await onboarding_in(http, auth, run_id, "waiting_for_activation")
    token = systems.activation_token(body["contact"]["email"])

    cancelled = await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())
    assert cancelled.status_code == 202, cancelled.text
    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "cancelled"
    view = run["onboarding"]
    assert view["state"] == "cancelled" and view["reason"] == "the onboarding was cancelled"
    assert [(c["step"], c["status"]) for c in view["compensations"]] == [
        ("billing subscription", "undone"), ("identity user", "undone"), ("CRM account", "undone")]

    records = await systems.records(run_id)
    assert [a["status"] for a in records["accounts"]] == ["archived"]
    assert [u["active"] for u in records["users"]] == [False]
    assert [s["status"] for s in records["subscriptions"]] == ["canceled"]
    assert (await http.post(f"/v1/activations/{token}")).status_code == 404


async def test_invalid_input_is_a_422_naming_the_field(http, auth):
    body = onboarding_input()
    body["contact"]["email"] = "not-an-address"
    response = await http.post(f"/v1/workflows/{NAME}/runs", json={"input": body}, headers=auth(**REQUESTER))
    assert response.status_code == 422
    assert "contact.email" in response.text


# --- an activity whose side effect happened, but whose completion Temporal never heard of ------

CREATES = ("create-crm-account", "create-identity-user", "create-billing-subscription")


class LoseFirstCompletion(Interceptor):
    """Lets each create's first attempt do its work, then fails it as a worker dying right after
    the side effect would: Temporal retries an activity whose effect already exists."""

    def __init__(self) -> None:
        self.lost: list[str] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        lost = self.lost

        class Lose(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                result = await self.next.execute_activity(input)
                info = activity.info()
                if info.activity_type in CREATES and info.attempt == 1:
                    lost.append(info.activity_type)
                    raise RuntimeError("the worker died before reporting the completion")
                return result

        return Lose(next)


@pytest.fixture
async def lossy_worker(client: Client, worker: None) -> AsyncIterator[tuple[str, LoseFirstCompletion]]:
    """The onboarding on a task queue of its own; its compliance review runs on the session's worker."""
    task_queue = f"onboarding-lossy-{uuid.uuid4().hex[:8]}"
    losing = LoseFirstCompletion()
    async with Worker(client, task_queue=task_queue, workflows=[CustomerOnboardingWorkflow],
                      activities=list(SPEC.activities), workflow_runner=sandbox_runner(), interceptors=[losing]):
        yield task_queue, losing


async def onboard_on(client: Client, task_queue: str, tenant: str) -> str:
    run_id = f"onboarding-{uuid.uuid4()}"
    request = OnboardingInput.model_validate(onboarding_input())
    handle = await client.start_workflow(
        CustomerOnboardingWorkflow.run, request, id=run_id, task_queue=task_queue,
        memo={"tenant": tenant, "requested_by": "rita"}, search_attributes=for_new_run(NAME, tenant, "rita"))

    async def waiting() -> bool:
        view = (await (await handle.describe()).memo()).get("onboarding") or {}
        assert view.get("state") not in ("failed", "cancelled"), view
        return view.get("state") == "waiting_for_activation"

    await eventually(waiting, "the onboarding to wait for activation")
    return run_id


async def end(client: Client, run_id: str) -> None:
    handle = client.get_workflow_handle(run_id)
    await handle.cancel()
    await eventually(lambda: _closed(handle), "the onboarding to end")


async def _closed(handle) -> bool:
    return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_a_lost_completion_never_makes_a_second_account_user_or_subscription(client, tenant, systems,
                                                                                   lossy_worker):
    task_queue, losing = lossy_worker
    run_id = await onboard_on(client, task_queue, tenant)
    assert sorted(losing.lost) == sorted(CREATES)  # every create ran twice, its first effect kept

    records = await systems.records(run_id)
    assert {name: len(found) for name, found in records.items()} == {
        "accounts": 1, "users": 1, "customers": 1, "subscriptions": 1}
    # Each retry looked the record up by its onboarding id first and found the first attempt's:
    # no second create was even sent (the SCIM and Stripe servers would not dedupe it by key).
    assert len(systems.crm.posts(f"{run_id}:crm-account")) == 1
    assert [r.path for r in systems.crm.requests if r.method == "GET"].count("/accounts") >= 2
    await end(client, run_id)


async def test_a_lost_completion_never_makes_a_second_row_in_the_embedded_systems(client, tenant, settings,
                                                                                  lossy_worker):
    task_queue, losing = lossy_worker
    run_id = await onboard_on(client, task_queue, tenant)
    assert sorted(losing.lost) == sorted(CREATES)

    with sqlite3.connect(settings.connectors_db_path) as db:
        counts = {table: db.execute(f"SELECT COUNT(*) FROM {table} WHERE onboarding_id = ?", (run_id,)).fetchone()[0]
                  for table in ("accounts", "users", "subscriptions")}
    assert counts == {"accounts": 1, "users": 1, "subscriptions": 1}
    await end(client, run_id)


# --- helpers ----------------------------------------------------------------------------------

async def decoded_history(client: Client, run_id: str) -> str:
    """The run's whole history as text, every payload decrypted: what a holder of the keys sees."""
    history = (await client.get_workflow_handle(run_id).fetch_history()).to_json_dict()
    payloads: list[Payload] = []
    _collect(history, payloads)
    decoded = await TEST_DATA_CONVERTER.payload_codec.decode(payloads)
    return str(history) + "\n".join(p.data.decode(errors="replace") for p in decoded)


def _collect(node: Any, into: list[Payload]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            into.append(Payload(metadata={k: base64.b64decode(v) for k, v in node["metadata"].items()},
                                data=base64.b64decode(node.get("data", ""))))
            return
        for value in node.values():
            _collect(value, into)
    elif isinstance(node, list):
        for value in node:
            _collect(value, into)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


# --- `steward up` as a user runs it: the embedded systems and the token at rest ---------------

async def test_embedded_onboarding_survives_a_restart_and_its_token_is_in_no_file_or_log(tmp_path):
    from activities.connectors.embedded import describe
    from tests.test_supervisor import SECRET, running_steward

    identity = {"Authorization": "Bearer " + issue_token(
        SECRET, Principal(sub="rita", roles=("requester",), tenant="acme"), timedelta(minutes=30))}
    body = onboarding_input()
    for start_dir in ("first", "second"):
        (tmp_path / start_dir).mkdir()
    with smtp_server() as smtp:
        relay = {"STEWARD_SMTP_HOST": "127.0.0.1", "STEWARD_SMTP_PORT": str(smtp.port), "STEWARD_SMTP_SECURITY": "none"}
        async with running_steward(tmp_path / "first", **relay, STEWARD_DATA_DIR=str(tmp_path / "data")) as steward:
            async with httpx.AsyncClient(base_url=steward.api_url, timeout=30) as http:
                run_id = await start(http, lambda **_: identity, body)
                await onboarding_in(http, lambda **_: identity, run_id, "waiting_for_activation")
        (message,) = smtp.mailbox.messages
        token = TOKEN_IN_LINK.findall(message.get_body(("plain",)).get_content())[0]
        watch("an activation token", token)

        async with running_steward(tmp_path / "second", **relay, STEWARD_DATA_DIR=str(tmp_path / "data")) as steward:
            async with httpx.AsyncClient(base_url=steward.api_url, timeout=30) as http:
                activated = await http.post(f"/v1/activations/{token}")
                assert activated.status_code == 200, activated.text
                run = await wait_for_run(http, run_id, identity)
    logs = [(tmp_path / start / name).read_bytes() for start in ("first", "second")
            for name in ("stdout.jsonl", "stderr.txt")]

    assert run["status"] == "completed", run
    kept = describe(Settings(data_dir=tmp_path / "data"), run_id)
    assert kept["account"]["status"] == "active" and kept["user"]["email"] == body["contact"]["email"]
    assert kept["subscription"]["status"] == "trialing"
    # Temporal's database, the connectors' database, artifacts, keys: the token is in none of them.
    assert files_containing(tmp_path / "data", token.encode()) == []
    assert not any(token.encode() in log for log in logs)


async def test_every_invalid_activation_token_gets_the_same_404(http, auth, gate):
    # A run that is not an onboarding, a run that does not exist, and no token at all.
    other = (await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth())).json()["id"]
    secret = "A" * 43
    tokens = [f"{base64.urlsafe_b64encode(other.encode()).decode().rstrip('=')}.{secret}",
              f"{base64.urlsafe_b64encode(b'customer-onboarding-nope').decode().rstrip('=')}.{secret}",
              "not-a-token", "x" * 600]
    answers = [await http.post(f"/v1/activations/{token}") for token in tokens]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert answers[0].json()["error"]["code"] == "not_found"
    await http.post(f"/v1/runs/{other}/cancel", headers=auth())


async def test_an_unused_link_expires_the_onboarding_is_undone_and_the_link_is_dead(skipping_env, skipping_api, auth,
                                                                                   settings):
    body = {**onboarding_input(), "activation_ttl": "PT2H"}
    run_id = await start(skipping_api, auth, body)
    await onboarding_in(skipping_api, auth, run_id, "waiting_for_activation")
    token = maildir_token(settings.mail_dir, body["contact"]["email"])  # no relay in the session settings

    await skipping_env.sleep(timedelta(hours=2, minutes=1))
    run = await wait_for_run(skipping_api, run_id, auth())
    assert run["status"] == "failed" and run["error"]["type"] == "ActivationExpired"
    view = run["onboarding"]
    assert view["reason"] == "the activation link expired unused after 2 hours"
    assert [c["step"] for c in view["compensations"]] == ["billing subscription", "identity user", "CRM account"]
    assert (await skipping_api.post(f"/v1/activations/{token}")).status_code == 404


def maildir_token(mail_dir: Path, to: str) -> str:
    for path in (mail_dir / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] == to:
            (token,) = TOKEN_IN_LINK.findall(message.get_body(("plain",)).get_content())
            watch("an activation token", token)
            return token
    raise AssertionError(f"no e-mail to {to} in {mail_dir}")
