"""`steward demo`: two compliance reviews on a running Steward, one cleared by policy and one that
needs a person, and how to decide the second one three ways."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta

import httpx

from steward.identity import Principal, issue_token
from steward.settings import Settings

WORKFLOW = "compliance-documentation"
TOKEN_TTL = timedelta(hours=8)
WAIT_S = 30

CLEAR_CASE = {
    "applicant": {"full_name": "Hanna Becker", "date_of_birth": "1986-03-14", "country": "DE",
                  "document_id": "DE-C01X00T47", "occupation": "Teacher", "annual_income": 52000,
                  "source_of_funds": "salary", "pep": False},
    "documents": [{"name": "payslip-2026-10.txt", "content_type": "text/plain",
                   "text": "Payslip October 2026. Employer: Gymnasium am Park. Net salary 3,050 EUR."}],
}
FLAGGED_CASE = {
    "applicant": {"full_name": "Marek Nowak", "date_of_birth": "1971-09-02", "country": "PL",
                  "document_id": "PL-AB1234567", "occupation": "Deputy minister", "annual_income": 180000,
                  "source_of_funds": "cash savings", "pep": True},
    "documents": [{"name": "source-of-funds.txt", "content_type": "text/plain",
                   "text": "Funds were accumulated in cash and moved through an offshore account in 2025."}],
}


def _token(settings: Settings, sub: str, *roles: str) -> str:
    return issue_token(settings.jwt_signing_secret(), Principal(sub=sub, roles=roles, tenant=settings.dev_tenant),
                       TOKEN_TTL)


def run_demo(settings: Settings, api_url: str) -> int:
    # The requester may approve in general, so the refusal shown below is separation of duties.
    requester = _token(settings, "dev-requester", "requester", "approver")
    approver = _token(settings, "dev-approver", "approver")
    runs = {}
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {requester}"}, timeout=WAIT_S + 10) as http:
        try:
            for label, case in (("clear", CLEAR_CASE), ("flagged", FLAGGED_CASE)):
                response = http.post(f"/v1/workflows/{WORKFLOW}/runs", json={"input": case},
                                     headers={"Idempotency-Key": f"demo-{label}-{uuid.uuid4().hex[:8]}"})
                response.raise_for_status()
                runs[label] = response.json()["id"]
            clear = http.get(f"/v1/runs/{runs['clear']}", params={"wait": WAIT_S}).json()
            flagged = http.get(f"/v1/runs/{runs['flagged']}").json()
        except httpx.HTTPError as exc:
            print(f"steward demo: the API at {api_url} did not answer as expected ({exc}); is `make up` running?",
                  file=sys.stderr)
            return 1

    result = clear.get("result") or {}
    print(f"""
1. A clear case: {runs['clear']}
   status {clear['status']}, decision {result.get('decision', '-')} by {result.get('decided_by', '-')}, \
risk {result.get('risk_level', '-')}
   report: {api_url}/v1/runs/{runs['clear']}/artifacts/compliance-report.pdf

2. A flagged case (politically exposed person, cash funds): {runs['flagged']}
   status {flagged['status']}, stage {flagged['stage']}. A person must decide. Three ways:

   curl:
     curl -s -X POST {api_url}/v1/runs/{runs['flagged']}/approvals \\
       -H "Authorization: Bearer {approver}" -H 'content-type: application/json' \\
       -d '{{"decision": "approve", "comment": "PEP register checked; funds documented."}}'

   CLI:
     STEWARD_TOKEN={approver} \\
       .venv/bin/steward approvals decide {runs['flagged']} approve --comment "PEP register checked"

   Inbox page: {api_url}/inbox  (paste the approver token above)

   The requester's own token is refused, though it holds the approver role (separation of duties):
     STEWARD_TOKEN={requester} .venv/bin/steward approvals decide {runs['flagged']} approve
""")
    return 0
