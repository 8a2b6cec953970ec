"""`python -m steward.cli.report_bench`: how long one report takes to render and store.

Reports the workflows really write. Compliance: a case cleared by policy, one a person decided
(an LLM record, a receipt), and a long one (15 LLM records, 80 timeline events, pages of text).
Incident postmortems: a typical incident (three alerts, two pages, an approved remediation) and a
long night (50 alerts, the ladder run three times over: 27 pages, 120 timeline events).
Each is rendered `--runs` times after one unmeasured render, in this process, the way a pool
process of the worker renders it: the fonts prepared once (timed apart), the Typst compiler kept.
"render + store" adds what the activity does next: encrypting the PDF and writing it atomically.

A measurement, not a test: it prints the table and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

from activities.artifacts.store import FileArtifactStore
from activities.incidents.models import (
    AckRecord,
    Alert,
    Hypothesis,
    IncidentView,
    PageRecord,
    RemediationRecord,
    ResolveRecord,
    SuggestedRemediation,
)
from activities.incidents.models import TimelineEntry as IncidentEvent
from activities.incidents.postmortem import POSTMORTEM_NAME, PostmortemInput, render_postmortem
from activities.llm.models import InjectionFlag, LlmCallRecord, ValidationOutcome
from activities.reports.compliance_report import render_compliance_report
from activities.reports.fonts import prepared_fonts
from activities.reports.models import (
    REPORT_NAME,
    ApplicantSummary,
    ComplianceReportInput,
    DocumentDigest,
    ReportDecision,
    TimelineEntry,
)
from activities.reports.pdf import PDF_CONTENT_TYPE
from steward.codec import Keyring, new_key_entry

TARGET_MEDIAN_MS = 150.0
AT = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _record(n: int) -> LlmCallRecord:
    return LlmCallRecord(
        step=f"classify-{n}", task="risk-classification", provider="openai", model_requested="gpt-4o-mini",
        model_version="gpt-4o-mini-2024-07-18", prompt_template="risk-classification@v1",
        prompt_sha256=_digest(f"prompt {n}"), input_tokens=1834, output_tokens=212, cost_usd=0.000402,
        latency_ms=1284.6, attempt=1, calls=1, decision="high", confidence=0.82,
        validation=ValidationOutcome(valid=True, repaired=n % 2 == 0),
        injection_flags=[InjectionFlag(source="statement.txt", rule="ignore-previous-instructions",
                                       excerpt="Ignore all previous instructions")] if n == 1 else [],
    )


def compliance_cases() -> dict[str, ComplianceReportInput]:
    applicant = ApplicantSummary(full_name="Sample Applicant", date_of_birth=date(1985, 5, 20), age=41, country="DE",
                                 document_id="DE-SAMPLE-01", occupation="Teacher", annual_income=50000,
                                 source_of_funds="salary")
    documents = [DocumentDigest(name="payslip.txt", content_type="text/plain", sha256=_digest("payslip"), bytes=44)]
    cleared = ComplianceReportInput(
        run_id="compliance-documentation-bench-cleared", generated_at=AT, applicant=applicant, documents=documents,
        risk_level="low", reasons=["Salaried teacher with income typical of the occupation."],
        explanation="Income, occupation and source of funds are consistent.",
        llm_records=[_record(2)],
        decision=ReportDecision(decision="approved", decided_by="policy", decided_at=AT,
                                reason="low risk, cleared by policy"),
        timeline=[TimelineEntry(at=AT, event=e) for e in ("review started", "facts extracted", "classified low risk",
                                                          "cleared by policy", "report written")],
    )
    receipt = {"approval_key": "compliance-review", "approver": "vera", "roles": ["approver"], "decision": "approve",
               "comment": "PEP register checked; funds documented.", "decided_at": AT.isoformat(),
               "shown_sha256": _digest("shown"), "update_id": "decide-vera-3c1f9e0a", "outcome": "approved"}
    reviewed = cleared.model_copy(update={
        "run_id": "compliance-documentation-bench-reviewed", "risk_level": "high", "llm_records": [_record(1)],
        "review_reasons": ["the applicant is a politically exposed person"],
        "applicant": applicant.model_copy(update={"pep": True}),
        "decision": ReportDecision(decision="approved", decided_by="vera", decided_at=AT + timedelta(hours=2),
                                   comment="PEP register checked; funds documented.",
                                   receipt_sha256=_digest("shown")),
        "receipts": [receipt],
    })
    long = reviewed.model_copy(update={
        "run_id": "compliance-documentation-bench-long", "llm_records": [_record(n) for n in range(1, 16)],
        "explanation": " ".join(f"Observation {n} about the applicant's funds and history." for n in range(150)),
        "timeline": [TimelineEntry(at=AT + timedelta(minutes=n), event=f"event number {n}") for n in range(80)],
        "receipts": [receipt] * 3,
    })
    return {"cleared by policy": cleared, "decided by a person": reviewed, "long (15 LLM calls)": long}


def _alert(n: int, status: str = "firing") -> Alert:
    return Alert(fingerprint=_digest(f"alert {n}")[:16], status=status,
                 labels={"alertname": "KubePodCrashLooping", "service": "payments-api", "pod": f"payments-api-{n}"},
                 annotations={"summary": f"Pod payments-api-{n} is crash looping",
                              "runbook_url": "https://runbooks.example.com/KubePodCrashLooping"},
                 starts_at=AT + timedelta(seconds=n), ends_at=AT + timedelta(hours=1) if status == "resolved" else None,
                 generator_url="https://prometheus.example.com/graph?g0.expr=kube_pod_restarts")


def _page(rung: int, recipient: str, at: datetime, *, delivered: bool = True) -> PageRecord:
    tried = [{"channel": "slack", "recipient": "slack", "at": at.isoformat(), "delivered": False,
              "error_type": "SlackUnavailable", "error": "Slack failed (503)", "attempts": 3}] if not delivered else []
    tried.append({"channel": "email", "recipient": recipient, "at": at.isoformat(), "delivered": delivered,
                  "attempts": 1})
    return PageRecord(rung=rung, recipient=recipient, at=at, delivered=delivered, deliveries=tried)


def postmortem_cases() -> dict[str, PostmortemInput]:
    ack, resolved = AT + timedelta(minutes=7), AT + timedelta(minutes=41)
    typical = IncidentView(
        title="payments-api pods are crash looping", severity="critical", service="payments-api", state="resolved",
        route="payments-critical", alerts=[_alert(n, "resolved") for n in range(3)], alert_count=3, notifications=4,
        hypotheses=[Hypothesis(cause="Memory exhaustion (OOM)", likelihood=0.7,
                               evidence=["alert text mentions OOMKilled", "restarts began after the 02:00 deploy"]),
                    Hypothesis(cause="Bad deploy", likelihood=0.2, evidence=["a rollout finished at 01:58"])],
        remediation=RemediationRecord(
            suggestion=SuggestedRemediation(action="restart the payments-api deployment with the previous image",
                                            rationale="the crash loop began with the new image", risk="medium"),
            status="executed", decided_by=["ic-ana"], status_code=202),
        pages=[_page(0, "pay-primary@example.com", AT), _page(0, "slack", AT)],
        acknowledged=AckRecord(by="pay-primary@example.com", via="link", at=ack),
        resolved=ResolveRecord(by="alertmanager", at=resolved, comment="every alert of the group resolved"),
        timeline=[IncidentEvent(at=AT + timedelta(minutes=m), event=e) for m, e in (
            (0, "incident opened: payments-api pods are crash looping (critical, payments-api)"),
            (0, "root cause: Memory exhaustion (OOM) (70%)"), (0, "paged pay-primary@example.com by email"),
            (7, "acknowledged by pay-primary@example.com (link)"), (9, "remediation approved by ic-ana"),
            (10, "remediation sent: the automation answered 202"), (41, "resolved by alertmanager"))],
    )
    night = typical.model_copy(update={
        "alerts": [_alert(n) for n in range(50)], "alert_count": 50, "notifications": 40,
        "pages": [_page(n // 3, f"oncall-{n % 3}@example.com", AT + timedelta(minutes=5 * n), delivered=n % 4 != 0)
                  for n in range(27)],
        "acknowledged": AckRecord(by="oncall-2@example.com", via="api", at=AT + timedelta(hours=2, minutes=16),
                                  comment="Was asleep; on it now."),
        "resolved": ResolveRecord(by="oncall-2@example.com", at=AT + timedelta(hours=5), comment="Node pool replaced."),
        "timeline": [IncidentEvent(at=AT + timedelta(minutes=n), event=f"alert payments-api-{n} joined the incident")
                     for n in range(120)],
    })
    base = {"run_id": "incident-response-bench", "generated_at": resolved, "first_alert_at": AT,
            "explanation": "The pods restart with exit code 137 shortly after start, which points at memory.",
            "llm_records": [_record(3)]}
    return {"postmortem (typical)": PostmortemInput(**base, incident=typical),
            "postmortem (long night)": PostmortemInput(**{**base, "run_id": "incident-response-bench-night"},
                                                       incident=night)}


def cases() -> list[tuple[str, str, str, Callable[[Path], bytes]]]:
    """(label, run id, artifact name, render) for every report measured."""
    return ([(label, r.run_id, REPORT_NAME, partial(render_compliance_report, r))
             for label, r in compliance_cases().items()]
            + [(label, r.run_id, POSTMORTEM_NAME, partial(render_postmortem, r))
               for label, r in postmortem_cases().items()])


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steward.cli.report_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="measured renders per report (default 50)")
    runs = parser.parse_args(argv).runs
    with tempfile.TemporaryDirectory(prefix="steward-report-bench-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        fonts = prepared_fonts(root / "fonts")
        prepare_s = time.perf_counter() - started
        store = FileArtifactStore(root / "artifacts", Keyring.parse(new_key_entry(), "bench"))
        print(f"fonts prepared once in {prepare_s:.1f} s (a new data dir only); {runs} renders per report\n")
        print(f"{'report':<24}{'KiB':>7}{'render p50':>12}{'p90':>8}{'+ store p50':>13}{'p90':>8}")
        medians = []
        for label, run_id, artifact, render_report in cases():
            data = render_report(fonts)  # unmeasured: the compiler's first use
            render, stored = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                data = render_report(fonts)
                t1 = time.perf_counter()
                store.put(run_id, artifact, data, PDF_CONTENT_TYPE)
                t2 = time.perf_counter()
                render.append(t1 - t0)
                stored.append(t2 - t0)
            medians.append(statistics.median(stored) * 1000)
            print(f"{label:<24}{len(data) / 1024:>7.0f}{statistics.median(render) * 1000:>10.1f}ms"
                  f"{_ms(render, 0.9):>6.1f}ms{statistics.median(stored) * 1000:>11.1f}ms{_ms(stored, 0.9):>6.1f}ms")
        worst = max(medians)
        verdict = "PASS" if worst <= TARGET_MEDIAN_MS else "MISS"
        print(f"\nslowest median, render + store: {worst:.1f} ms (target <= {TARGET_MEDIAN_MS:.0f} ms)  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
