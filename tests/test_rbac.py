"""The role-based policy: every default role against every route, deny wins, nothing else is
allowed, and a broken policy file stops start-up naming file, line and problem."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from api.deps import require
from policies import rbac
from policies.loader import PolicyError
from steward.identity import DEFAULT_ROLES
from tests.support import free_port, serve_api

DOCS = {"documents": [{"name": "a.txt", "text": "hello"}]}
# (role) → what each route answers. A 403 must name the permission in the third column.
ROUTES = [
    ("list workflows", "GET", "/v1/workflows", "workflows:read"),
    ("start a run", "POST", "/v1/workflows/document-fingerprint/runs", "runs:start:document-fingerprint"),
    ("list runs", "GET", "/v1/runs", "runs:read"),
    ("read a run", "GET", "/v1/runs/{run}", "runs:read"),
    ("approvals inbox", "GET", "/v1/approvals", "approvals:decide"),
    ("decide", "POST", "/v1/runs/{run}/approvals", "approvals:decide"),
    ("download an artifact", "GET", "/v1/runs/{run}/artifacts/report.pdf", "artifacts:read"),
    ("acknowledge", "POST", "/v1/runs/{run}/ack", "incidents:respond"),
    ("alertmanager hook", "POST", "/v1/hooks/alertmanager", "hooks:alertmanager"),
    ("cancel a run", "POST", "/v1/runs/{run}/cancel", "runs:cancel"),
]
# Past the permission check, the run (a held test-gated run) has no approval pending (409), no
# artifacts (404) and is no incident (409), and the hook's empty body is refused (422): those
# answers prove the route let the caller through.
EXPECTED = {
    "requester":          [200, 202, 200, 200, 403, 403, 403, 403, 403, 403],
    "approver":           [200, 403, 200, 200, 200, 409, 404, 403, 403, 403],
    "compliance_lead":    [200, 403, 200, 200, 200, 409, 404, 403, 403, 403],
    "auditor":            [200, 403, 200, 200, 403, 403, 404, 403, 403, 403],
    "operator":           [200, 202, 200, 200, 403, 403, 404, 409, 422, 202],
    "incident_commander": [200, 403, 200, 200, 200, 409, 404, 409, 403, 403],
    "admin":              [200, 202, 200, 200, 200, 409, 404, 409, 422, 202],
}


def test_every_default_role_has_an_expected_answer_for_every_route():
    assert set(EXPECTED) == set(DEFAULT_ROLES) == set(rbac.load().roles)
    assert all(len(answers) == len(ROUTES) for answers in EXPECTED.values())


@pytest.mark.parametrize("role", list(EXPECTED))
async def test_each_role_gets_exactly_its_permissions_on_every_route(http, auth, gate, role):
    held = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth(roles=("operator",)))
    assert held.status_code == 202, held.text
    run_id = held.json()["id"]
    caller = auth(sub=f"dev-{role}", roles=(role,))
    answers, refusals = [], {}
    for name, method, path, permission in ROUTES:
        body = ({"input": DOCS} if name == "start a run" else {"decision": "approve"} if name == "decide"
                else {} if name in ("acknowledge", "alertmanager hook") else None)
        response = await http.request(method, path.format(run=run_id), json=body, headers=caller)
        answers.append(response.status_code)
        if response.status_code == 403:
            refusals[name] = response.json()["error"]
            assert refusals[name] == {"code": "forbidden", "message": f"missing permission {permission}",
                                      "details": {"permission": permission}}, name
    assert dict(zip([r[0] for r in ROUTES], answers, strict=True)) == dict(
        zip([r[0] for r in ROUTES], EXPECTED[role], strict=True))
    await http.post(f"/v1/runs/{run_id}/cancel", headers=auth(roles=("operator",)))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/inbox"])
async def test_public_pages_need_no_token_and_no_permission(http, path):
    assert (await http.get(path)).status_code == 200


async def test_role_the_policy_does_not_know_grants_nothing(http, auth):
    response = await http.get("/v1/workflows", headers=auth(roles=("superuser",)))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["details"] == {"claim": "roles"} and "no role Steward knows" in error["message"]
    # Beside a known role it is simply ignored: the known role's grants decide.
    response = await http.get("/v1/runs/some-id/audit", headers=auth(roles=("superuser", "requester")))
    assert response.status_code == 403 and response.json()["error"]["details"] == {"permission": "audit:read"}


async def test_unknown_workflow_is_404_before_the_start_permission(http, auth):
    response = await http.post("/v1/workflows/no-such-flow/runs", json={"input": {}},
                               headers=auth(roles=("auditor",)))
    assert response.status_code == 404


async def test_permission_is_checked_before_the_body(http, auth):
    response = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": {"bad": 1}},
                               headers=auth(roles=("approver",)))
    assert response.status_code == 403


# --- the engine ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rbac.yaml"
    path.write_text(text)
    return path


DENY_CANCEL = """\
version: 1
roles:
  ops:
    allow: ["*"]
    deny: [runs:cancel]
  reader:
    allow: [workflows:read, runs:read]
  no-cancel:
    deny: ["runs:*"]
"""


def test_deny_wins_over_allow_within_a_role_and_across_roles(tmp_path):
    policy = rbac.parse(write(tmp_path, DENY_CANCEL))
    assert policy.allows(["ops"], "runs:start:document-fingerprint")
    assert not policy.allows(["ops"], "runs:cancel")
    assert policy.allows(["reader"], "runs:read")
    assert not policy.allows(["reader", "no-cancel"], "runs:read")  # another role's deny
    assert policy.missing(["ops"], ["runs:read", "runs:cancel", "codec:decode"]) == ["runs:cancel"]


def test_anything_not_allowed_is_denied(tmp_path):
    policy = rbac.parse(write(tmp_path, DENY_CANCEL))
    assert not policy.allows(["reader"], "runs:cancel")
    assert not policy.allows([], "workflows:read")
    assert not policy.allows(["stranger"], "workflows:read")


def test_wildcards_cover_a_family_and_nothing_beside_it():
    assert rbac.matches("runs:start:*", "runs:start:compliance-documentation")
    assert not rbac.matches("runs:start:*", "runs:read")
    assert rbac.matches("runs:*", "runs:start:x") and rbac.matches("runs:*", "runs:cancel")
    assert not rbac.matches("runs:*", "runsx:read")
    assert rbac.matches("*", "codec:decode")
    assert not rbac.matches("runs:read", "runs:read:all")


def test_shipped_policy_gives_each_default_role_what_the_issue_says():
    policy = rbac.load()
    assert policy.allows(["requester"], "runs:start:compliance-documentation")
    assert policy.missing(["requester"], ["runs:cancel", "approvals:decide"]) == ["runs:cancel", "approvals:decide"]
    assert policy.missing(["auditor"], ["runs:read", "artifacts:read", "audit:read"]) == []
    assert not any(policy.allows(["auditor"], a) for a in ("runs:start:x", "runs:cancel", "approvals:decide"))
    assert policy.allows(["compliance_lead"], "approvals:escalated")
    assert not policy.allows(["approver"], "approvals:escalated")
    assert policy.missing(["operator"], ["runs:cancel", "hooks:alertmanager", "codec:decode"]) == []
    assert policy.allows(["admin"], "audit:read") and policy.allows(["admin"], "approvals:escalated")


async def test_custom_policy_is_enforced_by_the_api(settings, client, worker, tmp_path, auth, gate):
    own = settings.model_copy(update={"api_port": free_port(), "rbac_policy": write(tmp_path, DENY_CANCEL)})
    async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        ops = auth(roles=("ops",))
        held = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=ops)
        assert held.status_code == 202, held.text
        refused = await http.post(f"/v1/runs/{held.json()['id']}/cancel", headers=ops)
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == "missing permission runs:cancel"
        # The shipped policy's operator is not a role here.
        assert (await http.get("/v1/runs", headers=auth(roles=("operator",)))).status_code == 403
        Path(gate["release_file"]).touch()  # nobody may cancel here: let the run finish


def test_require_refuses_an_action_the_platform_does_not_know():
    with pytest.raises(ValueError, match="runs:cancle"):
        require("runs:cancle")


# --- a broken policy stops start-up, naming file, line and problem ---------------------------


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("version: 1\nroles:\n  ops:\n    allow: [runs:read\n", 5, "not valid YAML"),
    ("version: 1\nroles:\n  ops:\n    description: x\n    allw: [runs:read]\n", 5, "'allw' was unexpected"),
    ("version: 1\nroles:\n  ops:\n    allow:\n      - runs:read\n      - runs:cancle\n", 6,
     "'runs:cancle' is not a known action"),
    ("version: 1\nroles:\n  ops:\n    allow: runs:read\n", 4, "is not of type 'array'"),
    ("version: 1\nroles:\n  ops: {}\n  bad role: {}\n", 4, "'bad role' does not match"),
    ("version: 2\nroles:\n  ops: {}\n", 1, "1 was expected"),
], ids=["yaml-syntax", "unexpected-key", "unknown-action", "wrong-type", "bad-role-name", "wrong-version"])
def test_broken_policy_names_file_line_and_problem(tmp_path, settings, text, line, problem):
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        rbac.check_startup(settings.model_copy(update={"rbac_policy": path}))
    message = str(raised.value)
    assert message.startswith(str(path)) and problem in message, message
    assert re.search(rf"\bline {line}\b", message), message


def test_missing_policy_file_names_the_file(tmp_path, settings):
    with pytest.raises(PolicyError, match="cannot be read"):
        rbac.check_startup(settings.model_copy(update={"rbac_policy": tmp_path / "absent.yaml"}))


def test_shipped_policy_passes_the_startup_check(settings):
    assert set(rbac.check_startup(settings).roles) == set(DEFAULT_ROLES)


def test_security_doc_lists_the_default_policy_as_shipped():
    text = (Path(__file__).parents[1] / "docs" / "security.md").read_text()
    table = text.split("### The default policy", 1)[1].split("\n\n", 2)[1]
    documented = {}
    for row in table.splitlines()[2:]:
        role, allowed, denied = (cell.strip() for cell in row.strip("|").split("|"))
        documented[role.strip("`")] = (re.findall(r"`([^`]+)`", allowed), re.findall(r"`([^`]+)`", denied))
    shipped = {name: (list(role.allow), list(role.deny)) for name, role in rbac.load().roles.items()}
    assert documented == shipped
