"""generate-compliance-report: the PDF a person reads and an auditor checks, stored as a run artifact.

The PDFs are read back with pypdf, so every assertion is about what a reader of the file gets.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import io
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.artifacts.store import default_store
from activities.llm.models import InjectionFlag, LlmCallRecord, ValidationOutcome
from activities.reports.compliance_report import (
    REPORT_INVALID,
    generate_compliance_report,
    render_compliance_report,
)
from activities.reports.fonts import prepared_fonts
from activities.reports.models import (
    REPORT_CONTENT_TYPE,
    REPORT_NAME,
    ApplicantSummary,
    ComplianceReportInput,
    DocumentDigest,
    ReportDecision,
    TimelineEntry,
)

GENERATED_AT = datetime(2026, 3, 14, 9, 30, 12, tzinfo=UTC)
PROMPT_SHA = hashlib.sha256(b"risk-classification prompt").hexdigest()
RECEIPT_SHA = hashlib.sha256(b"what alice was shown").hexdigest()
REASONS = ["Applicant is a politically exposed person", "Income is high for the stated occupation"]


def llm_record(number: int = 1, **changes) -> LlmCallRecord:
    fields = dict(
        step=f"classify-risk-{number}", task="risk-classification", provider="openai",
        model_requested="gpt-4o-mini", model_version="gpt-4o-mini-2024-07-18",
        prompt_template="risk-classification@v3", prompt_sha256=PROMPT_SHA, input_tokens=1834,
        output_tokens=212, cost_usd=0.000402, latency_ms=1284.6, attempt=1, calls=1, decision="high",
        confidence=0.82, validation=ValidationOutcome(valid=True, repaired=True),
    )
    return LlmCallRecord(**(fields | changes))


def report_input(**changes) -> ComplianceReportInput:
    fields = dict(
        run_id=f"compliance-{uuid.uuid4().hex[:12]}",
        generated_at=GENERATED_AT,
        applicant=ApplicantSummary(
            full_name="Łukasz Żółć", date_of_birth=date(1988, 4, 2), age=37, country="PL",
            document_id="AB1234567", occupation="Software engineer", annual_income=96500.0,
            source_of_funds="Salary and savings", pep=True,
        ),
        documents=[DocumentDigest(name="passport.txt", content_type="text/plain",
                                  sha256=hashlib.sha256(b"passport").hexdigest(), bytes=2481)],
        risk_level="high",
        reasons=REASONS,
        explanation="A politically exposed person needs enhanced due diligence.",
        review_reasons=["Risk level is high"],
        llm_records=[llm_record(injection_flags=[InjectionFlag(
            source="passport.txt", rule="ignore-previous-instructions", excerpt="Ignore all previous instructions",
        )])],
        decision=ReportDecision(
            decision="approved", decided_by="alice@example.com", decided_at=GENERATED_AT - timedelta(minutes=5),
            comment="Checked the PEP declaration against the registry; Zoë at the bank confirmed the income.",
            receipt_sha256=RECEIPT_SHA,
        ),
        receipts=[{
            "run_id": "r", "approval_key": "approval", "approver": "alice@example.com",
            "roles": ["approver", "compliance_lead"], "tenant": "acme", "decision": "approve",
            "comment": "Checked the PEP declaration against the registry; Zoë at the bank confirmed the income.",
            "decided_at": (GENERATED_AT - timedelta(minutes=5)).isoformat(), "shown_sha256": RECEIPT_SHA,
            "update_id": "decide-alice-3c1f9e0a", "outcome": "approved",
        }],
        timeline=[
            TimelineEntry(at=GENERATED_AT - timedelta(minutes=30), event="review started"),
            TimelineEntry(at=GENERATED_AT - timedelta(minutes=20), event="approval requested from approver"),
            TimelineEntry(at=GENERATED_AT - timedelta(minutes=5), event="alice@example.com approved"),
        ],
    )
    return ComplianceReportInput(**(fields | changes))


@pytest.fixture(scope="module")
def fonts(settings) -> Path:
    """The suite's prepared fonts: the same directory the worker's report activities use."""
    return prepared_fonts(settings.font_cache_dir)


def render(request: ComplianceReportInput, fonts: Path) -> bytes:
    return render_compliance_report(request, fonts)


def pages_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def test_report_shows_the_applicant_risk_decision_llm_calls_and_audit_trail(fonts: Path) -> None:
    request = report_input()

    text = "\n".join(pages_text(render(request, fonts)))

    assert "Łukasz Żółć" in text
    assert "HIGH RISK" in text
    for reason in REASONS:
        assert reason in text
    assert "APPROVED" in text
    assert "alice@example.com" in text
    assert "Zoë at the bank confirmed the income." in text
    assert RECEIPT_SHA in text
    assert "gpt-4o-mini-2024-07-18" in text
    assert PROMPT_SHA in text
    assert "ignore-previous-instructions" in text
    assert "approval requested from approver" in text
    assert "decide-alice-3c1f9e0a" in text
    assert request.run_id in text


def test_activity_stores_the_report_under_its_run_with_the_digest_of_its_bytes(settings) -> None:
    request = report_input()

    ref = ActivityEnvironment().run(generate_compliance_report, request)

    stored_ref, data = default_store().read(request.run_id, REPORT_NAME)
    assert data.startswith(b"%PDF-")
    assert ref == stored_ref
    assert ref.name == REPORT_NAME and ref.content_type == REPORT_CONTENT_TYPE and ref.size == len(data)
    assert ref.sha256 == stored_ref.sha256 == hashlib.sha256(data).hexdigest()


def test_retried_activity_writes_the_same_bytes_and_digest(settings, fonts: Path) -> None:
    request = report_input()

    first = ActivityEnvironment().run(generate_compliance_report, request)
    second = ActivityEnvironment().run(generate_compliance_report, request)

    assert first == second
    assert default_store().read(request.run_id, REPORT_NAME)[1] == render(request, fonts)


def test_same_input_renders_byte_identical_pdfs(fonts: Path) -> None:
    request = report_input()

    assert render(request, fonts) == render(request, fonts)


def test_pdf_dates_come_from_generated_at_not_the_worker_clock_or_zone(monkeypatch, fonts: Path) -> None:
    aware = report_input()
    naive = aware.model_copy(update={"generated_at": GENERATED_AT.replace(tzinfo=None)})
    expected = render(aware, fonts)

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        in_new_york = render(naive, fonts)
    finally:
        monkeypatch.undo()
        time.tzset()

    assert in_new_york == expected
    assert PdfReader(io.BytesIO(expected)).metadata.creation_date == GENERATED_AT


def test_many_llm_calls_and_events_span_pages_each_numbered_page_n_of_m(fonts: Path) -> None:
    request = report_input(
        llm_records=[llm_record(n) for n in range(1, 16)],
        timeline=[TimelineEntry(at=GENERATED_AT + timedelta(seconds=n), event=f"event number {n}")
                  for n in range(80)],
    )

    pages = pages_text(render(request, fonts))

    assert len(pages) > 1
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
    everything = "\n".join(pages)
    assert all(f"classify-risk-{n} " in everything for n in range(1, 16))
    assert all(f"event number {n}\n" in everything for n in range(80))


def test_long_comment_and_explanation_wrap_onto_lines_and_pages_without_losing_words(fonts: Path) -> None:
    explanation = [f"explanation{n:04d}" for n in range(700)]
    comment = [f"comment{n:04d}" for n in range(700)]
    request = report_input(
        explanation=" ".join(explanation),
        decision=report_input().decision.model_copy(update={"comment": " ".join(comment)}),
    )

    pages = pages_text(render(request, fonts))

    words = "\n".join(pages).split()
    assert set(explanation) <= set(words)
    assert set(comment) <= set(words)
    # Cut-off text would come out as one endless line; wrapped text as page-wide ones.
    assert max(len(line) for page in pages for line in page.splitlines()) < 130


def test_receipts_missing_fields_still_render(fonts: Path) -> None:
    request = report_input(receipts=[{"approver": "bob@example.com", "decision": "reject"}])

    text = "\n".join(pages_text(render(request, fonts)))

    assert "Receipt 1  ·  bob@example.com" in text
    assert "reject" in text


def test_unsafe_run_id_fails_without_retrying(settings) -> None:
    request = report_input(run_id="../outside")

    with pytest.raises(ApplicationError) as failure:
        ActivityEnvironment().run(generate_compliance_report, request)

    assert failure.value.type == REPORT_INVALID
    assert failure.value.non_retryable


def test_text_from_a_run_is_printed_as_written_never_read_as_markup(fonts: Path) -> None:
    # Typst markup and code in every free-text field: the template must set them as text.
    hostile = '#panic("x") *not bold* _not italic_ $x^2$ <label> @ref [link] \\ `raw` = heading // no comment'
    request = report_input(
        applicant=report_input().applicant.model_copy(update={"full_name": hostile, "source_of_funds": hostile}),
        reasons=[hostile], explanation=hostile,
        decision=report_input().decision.model_copy(update={"comment": hostile}),
    )

    text = "\n".join(pages_text(render(request, fonts)))

    assert text.replace("\n", " ").count(hostile) >= 4


def test_a_token_longer_than_its_line_wraps_without_losing_a_character(fonts: Path) -> None:
    token = "".join(f"{n:03d}" for n in range(200))  # 600 characters, no space
    request = report_input(explanation=f"See {token} for details.")

    pages = pages_text(render(request, fonts))

    lines = [line for page in pages for line in page.splitlines()]
    assert token in "".join("\n".join(pages).split())  # every digit, in order, across the lines
    assert max(len(line) for line in lines) < 130
    assert "\u200b" not in "\n".join(pages)  # break opportunities print nothing


def test_bold_text_is_set_in_the_bold_face_not_a_second_regular_one(fonts: Path) -> None:
    reader = PdfReader(io.BytesIO(render(report_input(), fonts)))

    names = {font.get_object()["/BaseFont"].split("+", 1)[-1]
             for page in reader.pages for font in page["/Resources"]["/Font"].values()}

    assert {"Arimo-Regular", "Arimo-Bold", "RobotoMono-Regular"} <= names


def render_in_a_new_process(request_json: str, fonts: str) -> bytes:
    return render_compliance_report(ComplianceReportInput.model_validate_json(request_json), Path(fonts))


def test_another_process_renders_the_same_bytes(fonts: Path) -> None:
    request = report_input()

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        elsewhere = pool.submit(render_in_a_new_process, request.model_dump_json(), str(fonts)).result()

    assert elsewhere == render(request, fonts)
