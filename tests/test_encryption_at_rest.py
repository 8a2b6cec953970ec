"""Nothing an applicant told us is readable at rest: the hard way, on a real `steward up` with its
persistent SQLite, after a full compliance review."""

from __future__ import annotations

import io
import signal
from datetime import timedelta
from pathlib import Path

import httpx
from pypdf import PdfReader

from steward.identity import Principal, issue_token
from tests.support import eventually, wait_for_run
from tests.test_supervisor import SECRET, running_steward

NAME = "Zebulon Quillfeather-Marchetti"
DOCUMENT_PHRASE = "inherited the Quillfeather vineyard"


def token(sub: str, role: str) -> dict[str, str]:
    principal = Principal(sub=sub, roles=(role,), tenant="acme")
    return {"Authorization": f"Bearer {issue_token(SECRET, principal, timedelta(minutes=10))}"}


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_applicant_data_is_nowhere_in_the_data_dir_or_logs_after_a_review(tmp_path):
    body = {"input": {
        "applicant": {"full_name": NAME, "date_of_birth": "1979-04-01", "country": "IT", "document_id": "IT-YA0000001",
                      "occupation": "Winemaker", "annual_income": 90000, "source_of_funds": "inheritance",
                      "pep": True},
        "documents": [{"name": "letter.txt", "text": f"I {DOCUMENT_PHRASE} from my aunt {NAME}."}],
    }}
    async with running_steward(tmp_path) as steward:
        async with httpx.AsyncClient(base_url=steward.api_url, timeout=30) as http:
            started = await http.post("/v1/workflows/compliance-documentation/runs", json=body,
                                      headers=token("rita", "requester"))
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]

            async def waiting() -> bool:
                run = (await http.get(f"/v1/runs/{run_id}", headers=token("rita", "requester"))).json()
                return run["status"] == "waiting_for_approval"

            await eventually(waiting, "the review to wait for a person")
            decided = await http.post(f"/v1/runs/{run_id}/approvals", headers=token("vera", "approver"),
                                      json={"decision": "approve", "comment": "Checked."})
            assert decided.status_code == 200, decided.text
            run = await wait_for_run(http, run_id, token("rita", "requester"))
            assert run["status"] == "completed"
            # Control: the name went all the way through, so the search below can find it if it leaks.
            assert run["approvals"][0]["shown"]["applicant"]["full_name"] == NAME
            pdf = await http.get(f"/v1/runs/{run_id}/artifacts/compliance-report.pdf", headers=token("a", "auditor"))
            assert NAME in "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
        steward.process.send_signal(signal.SIGINT)
        await steward.process.wait()

    data_dir = tmp_path / "data"
    assert (data_dir / "temporal.db").exists() and any((data_dir / "artifacts").rglob("*.pdf"))
    for needle in (NAME.encode(), DOCUMENT_PHRASE.encode(), "Quillfeather".encode("utf-16-le")):
        assert files_containing(data_dir, needle) == [], f"{needle!r} found at rest"
    logs = steward.log_path.read_bytes()
    assert b"Quillfeather" not in logs and DOCUMENT_PHRASE.encode() not in logs
