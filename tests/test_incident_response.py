"""incident-response end to end: Alertmanager's own payloads posted to the real endpoint with a real
API key, pages to a real SMTP server and real HTTP receivers (webhook signatures checked by the
Standard Webhooks reference library), acknowledgement and resolution through the API, the
postmortem read back with pypdf."""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr
from httpx_sse import aconnect_sse
from pypdf import PdfReader

from steward import search_attributes as sa
from steward.apikeys import store
from tests.incident_fixtures import (
    HOOK,
    ROUTING,
    WEBHOOK_SECRET,
    fire,
    incident_where,
    payload,
    recipients,
    run_of,
    slack_for,
)
from tests.support import eventually, free_port, wait_for_run, watch
from tests.test_webhooks import serve_receiver

pytest_plugins = ["tests.incident_fixtures"]

# --- intake ----------------------------------------------------------------------------------


async def test_a_firing_group_opens_one_incident_and_pages_on_call(http, auth, alertmanager_key, pages, group, client):
    accepted = await fire(http, alertmanager_key, "firing", group)
    run_id = accepted["incident"]

    incident = await incident_where(http, auth, run_id, "the first pages",
                                    lambda i: len([p for p in i["pages"] if p["delivered"]]) == 2)

    assert accepted["status"] == "accepted" and run_id.startswith("incident-response-")
    assert (incident["title"], incident["severity"], incident["service"], incident["state"]) == (
        "payments-api pods are crash looping", "critical", "payments-api", "triggered")
    assert incident["alert_count"] == 1 and incident["alerts"][0]["fingerprint"] == "5f1e2d3c4b5a6978"
    # OOMKilled with exit code 137: the rules weigh memory and a crash loop alike.
    assert {"Memory exhaustion (OOM)", "Crash loop"} == {h["cause"] for h in incident["hypotheses"][:2]}
    (slack_message,) = slack_for(pages, run_id)
    assert "payments-api pods are crash looping" in slack_message["text"]
    assert recipients(pages, run_id) == []  # Slack delivered: e-mail was the fallback, not needed
    (event,) = [e for e in pages.webhook.verified() if run_id in json.dumps(e)]
    assert event["type"] == "incident.page" and event["data"]["fields"]["Service"] == "payments-api"
    description = await client.get_workflow_handle(run_id).describe()
    attributes = description.typed_search_attributes
    assert (attributes.get(sa.SEVERITY), attributes.get(sa.SERVICE), attributes.get(sa.INCIDENT_STATE)) == (
        "critical", "payments-api", "triggered")
    assert await description.static_summary() == "Incident: PodCrashLooping on payments-api [critical]"


async def test_a_repeat_pages_nobody_again_and_a_new_alert_joins_the_timeline(http, auth, alertmanager_key, pages,
                                                                               group):
    run_id = (await fire(http, alertmanager_key, "firing", group))["incident"]
    await incident_where(http, auth, run_id, "the first pages", lambda i: len(i["pages"]) == 2 and
                         all(p["delivered"] for p in i["pages"]))

    again = await fire(http, alertmanager_key, "repeated", group)  # unknown fields tolerated
    repeated = await incident_where(http, auth, run_id, "the repeat", lambda i: i["notifications"] == 2)
    joined = await fire(http, alertmanager_key, "joining", group)
    incident = await incident_where(http, auth, run_id, "the new alert", lambda i: i["notifications"] == 3)

    assert again["incident"] == joined["incident"] == run_id
    assert len(repeated["pages"]) == 2 and len(incident["pages"]) == 2  # nobody paged twice
    assert incident["alert_count"] == 2
    assert any("alert PodCrashLooping joined" in e["event"] for e in incident["timeline"])
    assert len(slack_for(pages, run_id)) == 1


async def test_resolved_resolves_the_incident_and_the_postmortem_tells_what_happened(http, auth, alertmanager_key,
                                                                                      pages, group):
    run_id = (await fire(http, alertmanager_key, "firing", group))["incident"]
    await incident_where(http, auth, run_id, "the pages", lambda i: len(i["pages"]) == 2)
    acked = await http.post(f"/v1/runs/{run_id}/ack", json={"comment": "looking"}, headers=auth(sub="olga"))
    assert acked.status_code == 200, acked.text

    resolved = await fire(http, alertmanager_key, "resolved", group)
    run = await wait_for_run(http, run_id, auth())

    assert resolved["status"] == "accepted" and run["status"] == "completed"
    result = run["result"]
    assert result["state"] == "resolved" and result["resolved"]["by"] == "alertmanager"
    assert result["acknowledged"]["by"] == "olga" and result["time_to_acknowledge_s"] > 0
    assert result["pages_delivered"] == 2 and result["pages_failed"] == 0
    (artifact,) = run["artifacts"]
    assert artifact["name"] == "postmortem.pdf" and artifact["sha256"] == result["postmortem"]["sha256"]
    pdf = await http.get(f"/v1/runs/{run_id}/artifacts/postmortem.pdf", headers=auth())
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in ("Postmortem", "payments-api pods are crash looping", "Memory exhaustion (OOM)",
                     "acknowledged by olga", "resolved by alertmanager", "5f1e2d3c4b5a6978", "steward-offline-1",
                     "Time to resolve"):
        assert expected in text, expected


async def test_resolved_without_an_open_incident_starts_nothing(http, alertmanager_key, client, group):
    response = await http.post(HOOK, json=payload("resolved-without-incident", group), headers=alertmanager_key)

    assert response.status_code == 202 and response.json()["status"] == "ignored"
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{response.json()['incident']}'")]
    assert runs == []


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b.pop("groupKey"), "groupKey"),
    (lambda b: b["alerts"][0].pop("fingerprint"), "alerts.0.fingerprint"),
    (lambda b: b.update(version="3"), "version"),
    (lambda b: b.update(status="pending"), "status"),
    (lambda b: b.update(alerts=[]), "alerts"),
])
async def test_a_malformed_body_is_422_naming_the_field_and_starts_nothing(http, alertmanager_key, client, change,
                                                                          field, group):
    body = payload("firing", group)
    change(body)

    response = await http.post(HOOK, json=body, headers=alertmanager_key)

    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]


async def test_the_committed_malformed_payload_is_refused(http, alertmanager_key):
    response = await http.post(HOOK, json=payload("malformed", "x"), headers=alertmanager_key)

    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert response.status_code == 422 and {"groupKey", "alerts.0.fingerprint"} <= fields


async def test_the_hook_needs_its_permission(http, auth, group):
    response = await http.post(HOOK, json=payload("firing", group), headers=auth(roles=("requester",)))

    assert response.status_code == 403 and response.json()["error"]["details"]["permission"] == "hooks:alertmanager"


async def test_the_same_group_firing_after_its_incident_closed_opens_a_new_incident(http, auth, alertmanager_key,
                                                                                     pages, group, client):
    first = (await fire(http, alertmanager_key, "firing", group))["incident"]
    await fire(http, alertmanager_key, "resolved", group)
    await wait_for_run(http, first, auth())

    second = (await fire(http, alertmanager_key, "firing", group))["incident"]
    incident = await incident_where(http, auth, second, "the new incident's pages", lambda i: len(i["pages"]) == 2)

    assert second == first  # one id per group and tenant, a new run under it
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{first}'")]
    assert len({r.run_id for r in runs}) == 2
    assert incident["state"] == "triggered" and incident["notifications"] == 1


async def test_two_tenants_with_the_same_group_get_two_incidents(http, settings, pages, group):
    keys = []
    for tenant in (f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"):
        key, _ = store(settings.api_keys_path).create(f"am-{uuid.uuid4().hex[:8]}", ["operator"], tenant)
        watch("an API key", key)
        keys.append({"Authorization": f"Bearer {key}"})

    ids = {(await fire(http, key, "firing", group))["incident"] for key in keys}

    assert len(ids) == 2


# --- responding through the API --------------------------------------------------------------


async def test_ack_then_resolve_through_the_api_with_conflicts_and_permissions(http, auth, alertmanager_key, pages,
                                                                               group, tenant):
    run_id = (await fire(http, alertmanager_key, "firing", group))["incident"]
    await incident_where(http, auth, run_id, "the pages", lambda i: len(i["pages"]) == 2)

    refused = await http.post(f"/v1/runs/{run_id}/ack", json={}, headers=auth(roles=("requester",)))
    elsewhere = await http.post(f"/v1/runs/{run_id}/ack", json={}, headers=auth(tenant="another-tenant"))
    acked = await http.post(f"/v1/runs/{run_id}/ack", json={"comment": "mine"}, headers=auth(sub="olga"))
    again = await http.post(f"/v1/runs/{run_id}/ack", json={}, headers=auth(sub="pavel"))
    resolved = await http.post(f"/v1/runs/{run_id}/resolve", json={"comment": "rolled back"},
                               headers=auth(sub="pavel", roles=("incident_commander",)))
    after = await http.post(f"/v1/runs/{run_id}/resolve", json={}, headers=auth(sub="olga"))

    assert refused.status_code == 403 and refused.json()["error"]["details"]["permission"] == "incidents:respond"
    assert elsewhere.status_code == 404
    assert acked.status_code == 200 and (acked.json()["by"], acked.json()["via"]) == ("olga", "api")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_acknowledged"
    assert resolved.status_code == 200 and resolved.json()["by"] == "pavel"
    assert after.status_code == 409 and after.json()["error"]["code"] == "already_resolved"
    run = await wait_for_run(http, run_id, auth())
    assert run["result"]["resolved"] == {**run["result"]["resolved"], "by": "pavel", "comment": "rolled back"}

    # The audit log has the incident's record: analysis, pages, who acknowledged and resolved, the write-up.
    entries = await eventually(lambda: _ended_audit(http, auth, run_id), "the incident's audit to end")
    kinds = [e["kind"] for e in entries]
    assert {"run.started", "llm.call", "notification.delivered", "artifact.written", "run.ended"} <= set(kinds)
    updates = [(e["data"]["update"], e["data"]["by"]) for e in entries if e["kind"] == "update.accepted"]
    assert updates == [("steward.ack", "olga"), ("steward.resolve", "pavel")]
    assert "rolled back" not in str(entries)  # comments are kept as digests

    # Its events say the same, without names: paged, acknowledged, resolved.
    async with aconnect_sse(http, "GET", f"/v1/runs/{run_id}/events", headers=auth()) as source:
        events = [json.loads(sse.data) async for sse in source.aiter_sse()]
    types = [e["type"] for e in events]
    assert types.count("incident.paged") == 2 and types.index("incident.paged") < types.index("incident.acknowledged")
    assert types.index("incident.acknowledged") < types.index("incident.resolved") < types.index("run.completed")
    assert {e["data"]["channel"] for e in events if e["type"] == "incident.paged"} <= {"email", "slack", "webhook"}
    assert "olga" not in json.dumps(events) and "pavel" not in json.dumps(events)


async def _ended_audit(http, auth, run_id: str) -> list[dict] | None:
    response = await http.get(f"/v1/runs/{run_id}/audit", headers=auth(sub="ada", roles=("auditor",)))
    entries = response.json()["entries"] if response.status_code == 200 else []
    return entries if entries and entries[-1]["kind"] == "run.ended" else None


async def test_acknowledging_another_workflow_is_409(http, auth):
    started = await http.post("/v1/workflows/document-fingerprint/runs",
                              json={"input": {"documents": [{"name": "a.txt", "text": "x"}]}}, headers=auth())
    response = await http.post(f"/v1/runs/{started.json()['id']}/ack", json={}, headers=auth())

    assert response.status_code == 409 and response.json()["error"]["code"] == "not_an_incident"


async def test_an_incident_started_through_the_run_api_is_analysed_from_its_log_excerpt(http, auth, pages):
    body = {"input": {"title": "Checkout errors", "severity": "high", "service": "checkout",
                      "description": "5xx on checkout since 02:10", "labels": {"team": "web"},
                      "log_excerpt": "upstream inventory: connection refused\nupstream inventory: connection refused"}}
    started = await http.post("/v1/workflows/incident-response/runs", json=body, headers=auth())
    assert started.status_code == 202, started.text

    incident = await incident_where(http, auth, started.json()["id"], "the pages", lambda i: len(i["pages"]) == 2)

    assert incident["hypotheses"][0]["cause"] == "Dependency unavailable"
    assert incident["alerts"] == [] and incident["severity"] == "high"


# --- the ladder, on the time-skipping server ---------------------------------------------------

LADDER = """\
version: 1
routes:
  - name: ladder
    match: {}
    steps:
      - after: PT0S
        page:
          - name: primary
            via: [{channel: email, to: primary@example.com}]
      - after: PT5M
        page:
          - name: secondary
            via: [{channel: email, to: secondary@example.com}]
    repeat: 1
    repeat_every: PT30M
"""


async def test_the_ladder_climbs_repeats_and_stops_at_the_acknowledgement(skipping_env, skipping_api, auth,
                                                                         alertmanager_key, pages, group):
    pages.route(LADDER)
    run_id = (await fire(skipping_api, alertmanager_key, "firing", group))["incident"]
    await eventually(lambda: _count(pages, run_id, 1), "the primary's page")

    await skipping_env.sleep(timedelta(minutes=6))
    await eventually(lambda: _count(pages, run_id, 2), "the secondary's page after 5 minutes")
    await skipping_env.sleep(timedelta(minutes=25))  # 31 min: the ladder's second round begins
    await eventually(lambda: _count(pages, run_id, 3), "the primary's page again")
    acked = await skipping_api.post(f"/v1/runs/{run_id}/ack", json={}, headers=auth(sub="olga"))
    await skipping_env.sleep(timedelta(hours=2))  # the secondary's second page would have been at 35 min

    assert acked.status_code == 200
    assert recipients(pages, run_id) == ["primary@example.com", "secondary@example.com", "primary@example.com"]
    incident = (await run_of(skipping_api, auth, run_id))["incident"]
    assert [(p["rung"], p["recipient"]) for p in incident["pages"]] == [(0, "primary"), (1, "secondary"), (2, "primary")]
    assert incident["state"] == "acknowledged"


async def _count(outside, run_id: str, n: int) -> bool:
    return len(recipients(outside, run_id)) >= n


async def test_a_group_alertmanager_stops_repeating_resolves_itself_after_its_quiet_period(
        skipping_env, skipping_api, auth, alertmanager_key, pages, group):
    pages.route(ROUTING.replace("    steps:", "    auto_resolve_after: PT1H\n    steps:"))
    run_id = (await fire(skipping_api, alertmanager_key, "firing", group))["incident"]
    await incident_where(skipping_api, auth, run_id, "the pages", lambda i: len(i["pages"]) == 2)
    await skipping_env.sleep(timedelta(minutes=50))
    await fire(skipping_api, alertmanager_key, "repeated", group)  # the group is still alive: the clock restarts

    await skipping_env.sleep(timedelta(minutes=70))
    run = await wait_for_run(skipping_api, run_id, auth())

    resolved = run["result"]["resolved"]
    assert resolved["by"] == "quiet period" and "1:00:00" in resolved["comment"]
    opened = datetime.fromisoformat(run["started_at"])
    assert datetime.fromisoformat(resolved["at"]) - opened >= timedelta(minutes=110)


async def test_a_channel_that_is_down_falls_through_to_the_next(skipping_api, auth, alertmanager_key, pages, group):
    pages.route(ROUTING, slack_webhook_url=SecretStr(f"http://127.0.0.1:{free_port()}/down"))
    run_id = (await fire(skipping_api, alertmanager_key, "firing", group))["incident"]

    incident = await incident_where(skipping_api, auth, run_id, "the on-call page",
                                    lambda i: any(p["recipient"] == "on-call" and p["delivered"] for p in i["pages"]))

    page = next(p for p in incident["pages"] if p["recipient"] == "on-call")
    slack, mail = page["deliveries"]
    assert (slack["channel"], slack["delivered"], slack["error_type"], slack["attempts"]) == (
        "slack", False, "SlackUnavailable", 3)
    assert (mail["channel"], mail["recipient"], mail["delivered"]) == ("email", "oncall@example.com", True)
    assert recipients(pages, run_id) == ["oncall@example.com"]
    assert any("paged on-call by email after slack failed" in e["event"] for e in incident["timeline"])


# --- remediation -----------------------------------------------------------------------------

REMEDIATION = """\
    remediation:
      webhook_url: {url}
      approval_timeout: PT20M
"""


async def remediation_awaiting_approval(api, auth, alertmanager_key, pages, group, automation) -> str:
    """An incident, acknowledged, whose suggested remediation waits for a person to approve it."""
    pages.route(ROUTING + REMEDIATION.format(url=automation.url), notify_allow_private_networks=True)
    run_id = (await fire(api, alertmanager_key, "firing", group))["incident"]
    await incident_where(api, auth, run_id, "the pages", lambda i: len(i["pages"]) == 2)
    await api.post(f"/v1/runs/{run_id}/ack", json={}, headers=auth(sub="olga"))
    await incident_where(api, auth, run_id, "the approval",
                         lambda i: (i["remediation"] or {}).get("status") == "pending")
    return run_id


async def test_an_approved_remediation_is_sent_to_the_automation_signed(http, auth, alertmanager_key, pages, group):
    async with serve_receiver() as automation:
        run_id = await remediation_awaiting_approval(http, auth, alertmanager_key, pages, group, automation)
        approved = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve", "comment": "go"},
                                   headers=auth(sub="ic-ana", roles=("incident_commander",)))
        incident = await incident_where(http, auth, run_id, "the remediation to run",
                                        lambda i: i["remediation"]["status"] == "executed")
        (event,) = automation.verified(WEBHOOK_SECRET)

    assert approved.status_code == 200, approved.text
    remediation = incident["remediation"]
    assert remediation["decided_by"] == ["ic-ana"] and remediation["status_code"] == 200
    assert event["type"] == "incident.remediation" and event["data"]["run_id"] == run_id
    assert event["data"]["action"] == remediation["suggestion"]["action"] and event["data"]["approved_by"] == ["ic-ana"]
    assert any("remediation approved by ic-ana" in e["event"] for e in incident["timeline"])


async def test_a_remediation_nobody_approves_in_time_is_not_run(skipping_env, skipping_api, auth, alertmanager_key,
                                                               pages, group):
    async with serve_receiver() as automation:
        run_id = await remediation_awaiting_approval(skipping_api, auth, alertmanager_key, pages, group, automation)
        await skipping_env.sleep(timedelta(minutes=21))
        incident = await incident_where(skipping_api, auth, run_id, "the ladder to reject it",
                                        lambda i: i["remediation"]["status"] == "rejected")

    assert incident["remediation"]["reason"] == "remediation not approved in time"
    assert automation.requests == []


async def test_resolving_while_a_remediation_waits_withdraws_it(http, auth, alertmanager_key, pages, group):
    async with serve_receiver() as automation:
        run_id = await remediation_awaiting_approval(http, auth, alertmanager_key, pages, group, automation)
        await fire(http, alertmanager_key, "resolved", group)
        run = await wait_for_run(http, run_id, auth())

    assert run["result"]["remediation"]["status"] == "not_needed"
    assert [a["status"] for a in run["approvals"]] == ["withdrawn"]
    assert automation.requests == []
    late = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve"},
                           headers=auth(sub="ic-ana", roles=("incident_commander",)))
    assert late.status_code == 409


async def test_a_group_of_several_alerts_is_one_incident_with_them_all(http, auth, alertmanager_key, pages, group):
    run_id = (await fire(http, alertmanager_key, "grouped", group))["incident"]

    incident = await incident_where(http, auth, run_id, "the pages", lambda i: len(i["pages"]) == 2)

    assert incident["alert_count"] == 2 and {a["labels"]["pod"] for a in incident["alerts"]} == {"checkout-1", "checkout-2"}
    assert (incident["title"], incident["severity"], incident["service"]) == (
        "checkout p99 latency above 2 s", "warning", "checkout")
    assert incident["hypotheses"][0]["cause"] == "Dependency unavailable"
