"""The compliance report: one PDF a person can read and an auditor can check, stored as a run artifact.

This module turns a `ComplianceReportInput` into the data templates/compliance-report.typ lays
out: every value formatted, every text made drawable. `render_compliance_report` is pure — the
same input gives the same bytes — so a retried activity stores the same file under the same
digest: the PDF's date is the workflow's clock (`generated_at`) and nothing random goes in.

Fonts come from PyPI packages, never from the machine (fonts.py): Arimo (Latin, Greek, Cyrillic,
Hebrew, Vietnamese) for text and Roboto Mono for digests and ids, falling back to a face for
Arabic, Devanagari, Thai and CJK. A character none of them can draw (an emoji, for one) is printed
as its code point, e.g. ``[U+1F600]``, and the report says so under its title: nothing in a name
disappears silently.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.artifacts.store import ArtifactRef
from activities.reports.models import REPORT_NAME, ComplianceReportInput
from activities.reports.pdf import render_and_store, render_pdf
from activities.reports.text import MONO_CHARS_NARROW, ReportText, llm_calls, size, utc, when

REPORT_INVALID = "ComplianceReportInvalid"  # the input cannot be rendered or stored: not retried
TEMPLATE = "compliance-report.typ"


def _applicant(t: ReportText, request: ComplianceReportInput) -> dict[str, Any]:
    a = request.applicant
    income = f"{a.annual_income:,.2f}" if a.annual_income is not None else "—"
    return {"full_name": t(a.full_name), "rows": t.rows([
        [("Full name", t.styled(a.full_name, "strong"))],
        [("Date of birth", f"{a.date_of_birth.isoformat()} (age {a.age})"), ("Country", a.country)],
        [("Document id", t.digest(a.document_id, width=MONO_CHARS_NARROW)),
         ("PEP", "Yes — politically exposed" if a.pep else "No")],
        [("Occupation", a.occupation or "—"), ("Annual income", income)],
        [("Source of funds", a.source_of_funds or "—")],
    ])}


def _decision(t: ReportText, request: ComplianceReportInput) -> dict[str, Any]:
    d = request.decision
    decided_by = "policy (automatic)" if d.decided_by == "policy" else d.decided_by
    return {
        "decision": d.decision,
        "rows": t.rows([
            [("Decided by", decided_by), ("Decided at", when(d.decided_at))],
            [("Receipt digest", t.digest(d.receipt_sha256))],
        ]),
        "reason": t(d.reason) if d.reason else None,
        "comment": t(d.comment) if d.comment else None,
    }


def _receipt(t: ReportText, number: int, receipt: dict[str, Any]) -> dict[str, Any]:
    """Receipts arrive as recorded on the run (dicts): every field is optional here."""

    def text(key: str) -> str:
        value = receipt.get(key)
        return "—" if value in (None, "") else str(value)

    roles = receipt.get("roles")
    roles_text = ", ".join(map(str, roles)) if isinstance(roles, list) and roles else text("roles")
    decision = text("decision")
    return {"title": t(f"Receipt {number}  ·  {text('approver')}"), "rows": t.rows([
        [("Approver", text("approver")), ("Decision", t.styled(decision, decision))],
        [("Roles", roles_text), ("Decided at", when(receipt.get("decided_at")))],
        [("Approval key", text("approval_key")), ("Outcome", text("outcome"))],
        [("Shown SHA-256", t.digest(receipt.get("shown_sha256")))],
        [("Update id", t.digest(receipt.get("update_id")))],
        [("Comment", text("comment") if receipt.get("comment") else "No comment.")],
    ])}


def report_data(request: ComplianceReportInput, fonts_dir: Path) -> dict[str, Any]:
    """What templates/compliance-report.typ lays out: every value formatted and drawable."""
    t = ReportText(fonts_dir)
    return {
        "title": t(f"Compliance review — run {request.run_id}"),
        "subject": "Compliance review: applicant, risk assessment, decision and audit trail",
        "run_id": t(request.run_id),
        "generated_at": when(request.generated_at),
        "code_points_shown": t.shows_code_points(request.model_dump()),
        "applicant": _applicant(t, request),
        "documents": [[t(d.name), t(d.content_type), size(d.bytes), t.digest(d.sha256, width=MONO_CHARS_NARROW)]
                      for d in request.documents],
        "risk": {
            "level": request.risk_level,
            "reasons": [t(r) for r in request.reasons],
            "explanation": t(request.explanation) if request.explanation else None,
            "review_reasons": [t(r) for r in request.review_reasons],
        },
        "decision": _decision(t, request),
        "llm": llm_calls(t, request.llm_records),
        "timeline": [[when(e.at), t(e.event)] for e in request.timeline],
        "receipts": [_receipt(t, i, r) for i, r in enumerate(request.receipts, start=1)],
    }


def render_compliance_report(request: ComplianceReportInput, fonts_dir: Path) -> bytes:
    """The report as PDF bytes: the same request (and fonts) always give the same bytes."""
    return render_pdf(TEMPLATE, report_data(request, fonts_dir), created_at=utc(request.generated_at),
                      fonts_dir=fonts_dir)


# A plain `def`: rendering is CPU work, so the worker runs this in its process pool, on the CPU
# task queue (workers/cpu.py), where it cannot hold the GIL against workflow tasks.
@activity.defn(name="generate-compliance-report")
def generate_compliance_report(request: ComplianceReportInput) -> ArtifactRef:
    ref = render_and_store(request.run_id, request.tenant, REPORT_NAME,
                           partial(render_compliance_report, request), invalid=REPORT_INVALID)
    activity.logger.info("compliance report stored", extra={"bytes": ref.size, "sha256": ref.sha256})
    return ref
