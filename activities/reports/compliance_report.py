"""The compliance report: one PDF a person can read and an auditor can check, stored as a run artifact.

`render_compliance_report` is pure — the same input gives the same bytes — so a retried activity
stores the same file under the same digest: the creation date is the workflow's clock
(`generated_at`), fpdf2 derives the file id from the content, and nothing random goes in.

Fonts come from PyPI packages, never from the machine: Arimo (Latin, Greek, Cyrillic, Hebrew,
Vietnamese) for text and Roboto Mono for digests and ids. A character neither font can draw (CJK,
for one) is printed as its code point, e.g. ``[U+674E]``, and the report says so under its title:
nothing in a name disappears silently.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import fontpkg
from fpdf import FPDF, FPDF_VERSION
from fpdf.enums import Align, TableBordersLayout, TableCellFillMode, VAlign, XPos, YPos
from fpdf.fonts import FontFace
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts.store import ArtifactRef, default_store
from activities.llm.models import LlmCallRecord
from activities.reports.models import REPORT_CONTENT_TYPE, REPORT_NAME, ComplianceReportInput

# An input that cannot be rendered or stored (an unsafe run id, say) fails the same way on every
# attempt: retrying it only delays the failure.
REPORT_INVALID = "ComplianceReportInvalid"

SANS = "arimo"
MONO = "roboto-mono"
# The page-count placeholder fpdf2 replaces when the document closes. A private-use character: no
# text from the input can contain it, because normalize_text prints those as code points.
PAGE_COUNT = "\ue000"

# Layout, in millimetres (A4: 210 x 297).
MARGIN = 18.0
BOTTOM = 20.0
LINE = 4.6
CELL_LINE = 4.4
PADDING = (1.4, 2.0, 1.4, 2.0)  # top, right, bottom, left
LABEL_W = 32.0
BADGE_H = 7.0

INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (23, 50, 90)
RULE = (206, 212, 218)
SHADE = (241, 244, 248)
WHITE = (255, 255, 255)
OK = (25, 121, 72)
WARN = (176, 106, 0)
BAD = (176, 36, 48)

RISK_COLOURS = {"low": OK, "medium": WARN, "high": BAD}
DECISION_COLOURS = {"approved": OK, "rejected": BAD, "approve": OK, "reject": BAD}

LABEL = FontFace(family=SANS, emphasis="", size_pt=8.5, color=MUTED)
VALUE = FontFace(family=SANS, emphasis="", size_pt=9, color=INK)
STRONG = FontFace(family=SANS, emphasis="B", size_pt=9, color=INK)
ALERT = FontFace(family=SANS, emphasis="B", size_pt=9, color=BAD)
DIGEST = FontFace(family=MONO, emphasis="", size_pt=7.6, color=INK)
HEADING = FontFace(family=SANS, emphasis="B", size_pt=8, color=MUTED, fill_color=SHADE)
BLOCK_TITLE = FontFace(family=SANS, emphasis="B", size_pt=9, color=ACCENT, fill_color=SHADE)


@dataclass(frozen=True)
class Styled:
    """A table value drawn in a style of its own (digests in monospace, a decision in bold)."""

    text: str
    style: FontFace


Value = str | Styled
Field = tuple[str, Value]


def digest(text: str | None, *, lines: int = 1) -> Value:
    """A digest or id in monospace; `lines` > 1 splits it evenly, for narrow columns."""
    if not text:
        return "—"
    step = -(-len(text) // lines)
    return Styled("\n".join(text[i:i + step] for i in range(0, len(text), step)), DIGEST)


@cache
def _font_files() -> tuple[Path, Path, Path]:
    return fontpkg.path("Arimo"), fontpkg.path("Arimo", style="italic"), fontpkg.path("Roboto Mono")


def printable(char: str, cmap: Container[int]) -> bool:
    """The font has a glyph for it, and it is neither a control, format nor private-use character."""
    return ord(char) in cmap and unicodedata.category(char)[0] != "C"


def drawable(text: str, cmap: Container[int]) -> str:
    """`text` as the font can draw it: composed (NFC), whitespace as spaces (newlines kept), and any
    character that is not printable as its code point."""
    out = []
    for char in unicodedata.normalize("NFC", text):
        if char == "\n":
            out.append(char)
        elif char.isspace():
            out.append(" ")
        elif printable(char, cmap):
            out.append(char)
        else:
            out.append(f"[U+{ord(char):04X}]")
    return "".join(out)


def strings(value: Any) -> Iterator[str]:
    """Every string in a dumped model, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def utc(moment: datetime) -> datetime:
    """Naive times are the workflow's UTC: never the rendering machine's local zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when(moment: datetime | str | None) -> str:
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    if n < 1024 * 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / (1024 * 1024):,.1f} MiB"


def validation(record: LlmCallRecord) -> str:
    outcome = record.validation
    if not outcome.valid:
        return "invalid: " + "; ".join(outcome.errors) if outcome.errors else "invalid"
    return "valid (repaired)" if outcome.repaired else "valid"


class ReportPdf(FPDF):
    def __init__(self, run_id: str, generated_at: datetime) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.run_id = run_id
        self._verbatim = False
        regular, italic, mono = _font_files()
        # The packages ship variable fonts: their default instance is the regular weight.
        self.add_font(SANS, "", regular)
        self.add_font(SANS, "B", regular, variations={"wght": 700})
        self.add_font(SANS, "I", italic)
        self.add_font(MONO, "", mono)
        self.set_font(SANS, "", 9)
        self.alias_nb_pages(PAGE_COUNT)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=BOTTOM)
        self.set_creation_date(utc(generated_at))
        self.set_title(f"Compliance review — run {run_id}")
        self.set_subject("Compliance review: applicant, risk assessment, decision and audit trail")
        self.set_author("Steward")
        self.set_creator("Steward")
        self.set_producer(f"Steward (fpdf2 {FPDF_VERSION})")
        self.set_lang("en")
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)

    # fpdf2 passes every string it measures or draws through here.
    def normalize_text(self, text: str) -> str:
        text = super().normalize_text(text)
        return text if self._verbatim else drawable(text, self.current_font.cmap)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.y, self.w - self.r_margin, self.y)
        self.set_y(-12)
        self.set_font(SANS, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(self.epw / 2, 4, f"Steward compliance review · run {self.run_id}", align=Align.L)
        self._verbatim = True  # the page-count placeholder must reach fpdf2 as it is
        try:
            self.cell(self.epw / 2, 4, f"Page {self.page_no()} of {PAGE_COUNT}", align=Align.R)
        finally:
            self._verbatim = False

    # Building blocks -------------------------------------------------------------------------

    def keep_space(self, height: float) -> None:
        """Start a new page unless `height` still fits on this one: no heading alone at a page foot."""
        if self.will_page_break(height):
            self.add_page()

    def section(self, title: str, level: int = 0, *, keep: float = 36) -> None:
        """A numbered heading, kept on one page with the first `keep` millimetres of what follows."""
        self.keep_space(keep)
        self.ln(5 if self.y > self.t_margin + 1 else 0)
        self.start_section(title, level=level)
        self.set_font(SANS, "B", 13 if level == 0 else 11)
        self.set_text_color(*ACCENT)
        self.cell(0, 7, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if level == 0:
            self.set_draw_color(*ACCENT)
            self.set_line_width(0.4)
            self.line(self.l_margin, self.y, self.w - self.r_margin, self.y)
            self.set_line_width(0.2)
            self.set_draw_color(*RULE)
        self.ln(2.5)

    def subheading(self, text: str) -> None:
        self.keep_space(14)
        self.ln(1.5)
        self.set_font(SANS, "B", 9.5)
        self.set_text_color(*INK)
        self.cell(0, 5.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def paragraph(self, text: str, *, muted: bool = False) -> None:
        self.set_font(SANS, "I" if muted else "", 9.5)
        self.set_text_color(*(MUTED if muted else INK))
        self.multi_cell(0, LINE, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)

    def bullets(self, items: Sequence[str]) -> None:
        self.set_font(SANS, "", 9.5)
        self.set_text_color(*INK)
        for item in items:
            self.keep_space(LINE)
            self.set_x(self.l_margin + 2)
            self.cell(4, LINE, "•")
            self.multi_cell(0, LINE, item, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.ln(0.6)

    def badge(self, text: str, colour: tuple[int, int, int], x: float, y: float, *, size_pt: float = 10) -> float:
        """A filled label, e.g. HIGH RISK; returns its width."""
        self.set_font(SANS, "B", size_pt)
        width = self.get_string_width(text) + 7
        self.set_fill_color(*colour)
        self.rect(x, y, width, BADGE_H, style="F", round_corners=True, corner_radius=1.2)
        self.set_text_color(*WHITE)
        self.set_xy(x, y)
        self.cell(width, BADGE_H, text, align=Align.C)
        self.set_fill_color(*WHITE)  # tables fill their cells with the current colour
        return width

    def fields(self, rows: Sequence[Sequence[Field]], *, title: str | None = None,
               widths: tuple[float, ...] = (LABEL_W, 55.0, LABEL_W, 55.0)) -> None:
        """A grid of label/value pairs, two to a row; a row with one pair spans the width.

        With a title the grid is one block: the title heads it, and repeats if it has to
        continue on the next page.
        """
        scale = self.epw / sum(widths)
        self.keep_space(min(70, (len(rows) + 1) * (CELL_LINE + 3)))
        with self.table(
            col_widths=tuple(w * scale for w in widths), width=self.epw, align=Align.L,
            borders_layout=TableBordersLayout.HORIZONTAL_LINES, text_align=Align.L, v_align=VAlign.T,
            line_height=CELL_LINE, padding=PADDING, first_row_as_headings=title is not None,
            headings_style=BLOCK_TITLE, cell_fill_mode=TableCellFillMode.NONE,
        ) as table:
            if title is not None:
                table.row().cell(title, colspan=len(widths), align=Align.L)
            for pairs in rows:
                row = table.row()
                for index, (label, value) in enumerate(pairs):
                    row.cell(label, style=LABEL)
                    span = len(widths) - 1 - 2 * index if index == len(pairs) - 1 else 1
                    text, style = (value.text, value.style) if isinstance(value, Styled) else (value, VALUE)
                    row.cell(text, style=style, colspan=span)
        self.ln(3)

    def grid(self, headings: Sequence[str], rows: Sequence[Sequence[Value]], widths: Sequence[float],
             aligns: Sequence[Align] | None = None) -> None:
        """A table with a heading row that repeats on every page it spans."""
        scale = self.epw / sum(widths)
        aligns = aligns or [Align.L] * len(widths)
        self.keep_space(min(40, (len(rows) + 1) * (CELL_LINE + 3)))
        with self.table(
            col_widths=tuple(w * scale for w in widths), width=self.epw, align=Align.L,
            borders_layout=TableBordersLayout.HORIZONTAL_LINES, text_align=Align.L, v_align=VAlign.T,
            line_height=CELL_LINE, padding=PADDING, headings_style=HEADING,
        ) as table:
            heading = table.row()
            for text, align in zip(headings, aligns, strict=True):
                heading.cell(text, align=align)
            for values in rows:
                row = table.row()
                for value, align in zip(values, aligns, strict=True):
                    text, style = (value.text, value.style) if isinstance(value, Styled) else (value, VALUE)
                    row.cell(text, style=style, align=align)
        self.ln(3)


# The report, top to bottom ------------------------------------------------------------------


def _title(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    pdf.set_font(SANS, "B", 22)
    pdf.set_text_color(*ACCENT)
    pdf.cell(0, 10, "Compliance review", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(SANS, "", 9)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 5, f"Run {request.run_id}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.cell(0, 5, f"Generated {when(request.generated_at)}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)

    # The summary: who, how risky, what was decided.
    columns = (pdf.l_margin + 5, pdf.l_margin + pdf.epw * 0.56, pdf.l_margin + pdf.epw * 0.77)
    name_width = columns[1] - columns[0] - 6
    pdf.set_font(SANS, "B", 13)
    name_lines = pdf.multi_cell(name_width, 5.5, request.applicant.full_name, dry_run=True, output="LINES")
    top, height = pdf.y, max(20.0, 10.0 + 5.5 * len(name_lines))
    pdf.set_fill_color(*SHADE)
    pdf.rect(pdf.l_margin, top, pdf.epw, height, style="F", round_corners=True, corner_radius=1.5)
    pdf.set_fill_color(*WHITE)
    for x, label in zip(columns, ("APPLICANT", "RISK LEVEL", "DECISION"), strict=True):
        pdf.set_xy(x, top + 3)
        pdf.set_font(SANS, "B", 7)
        pdf.set_text_color(*MUTED)
        pdf.cell(30, 3.5, label)
    pdf.set_xy(columns[0], top + 8)
    pdf.set_font(SANS, "B", 13)
    pdf.set_text_color(*INK)
    pdf.multi_cell(name_width, 5.5, request.applicant.full_name, align=Align.L)
    pdf.badge(request.risk_level.upper(), RISK_COLOURS[request.risk_level], columns[1], top + 8.5)
    decision = request.decision.decision
    pdf.badge(decision.upper(), DECISION_COLOURS[decision], columns[2], top + 8.5)
    pdf.set_xy(pdf.l_margin, max(top + height, pdf.y) + 2)

    cmap = pdf.current_font.cmap
    if any(not char.isspace() and not printable(char, cmap)
           for text in strings(request.model_dump()) for char in unicodedata.normalize("NFC", text)):
        pdf.paragraph("Some characters have no glyph in this report's fonts; they are shown as their "
                      "Unicode code points, e.g. [U+674E].", muted=True)


def _applicant(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    a = request.applicant
    pdf.section("1  Applicant")
    income = f"{a.annual_income:,.2f}" if a.annual_income is not None else "—"
    pdf.fields([
        [("Full name", Styled(a.full_name, STRONG))],
        [("Date of birth", f"{a.date_of_birth.isoformat()} (age {a.age})"), ("Country", a.country)],
        [("Document id", digest(a.document_id)), ("PEP", "Yes — politically exposed" if a.pep else "No")],
        [("Occupation", a.occupation or "—"), ("Annual income", income)],
        [("Source of funds", a.source_of_funds or "—")],
    ])


def _documents(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    pdf.section("2  Documents")
    if not request.documents:
        pdf.paragraph("No documents were supplied.", muted=True)
        return
    pdf.grid(
        ["Document", "Type", "Size", "SHA-256"],
        [[d.name, d.content_type, size(d.bytes), digest(d.sha256, lines=2)] for d in request.documents],
        widths=(62, 36, 20, 56), aligns=(Align.L, Align.L, Align.R, Align.L),
    )


def _risk(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    pdf.section("3  Risk assessment")
    pdf.keep_space(12)
    top = pdf.y
    pdf.set_font(SANS, "", 9.5)
    pdf.set_text_color(*INK)
    pdf.cell(24, BADGE_H, "Risk level")
    pdf.badge(f"{request.risk_level.upper()} RISK", RISK_COLOURS[request.risk_level], pdf.l_margin + 24, top,
              size_pt=11)
    pdf.set_xy(pdf.l_margin, top + BADGE_H + 3)
    pdf.subheading("Reasons")
    if request.reasons:
        pdf.bullets(request.reasons)
    else:
        pdf.paragraph("No reasons were recorded.", muted=True)
    pdf.subheading("Explanation")
    pdf.paragraph(request.explanation or "No explanation was recorded.", muted=not request.explanation)
    if request.review_reasons:
        pdf.subheading("Why a person had to decide")
        pdf.bullets(request.review_reasons)


def _decision(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    d = request.decision
    pdf.section("4  Decision")
    pdf.keep_space(12)
    top = pdf.y
    pdf.set_font(SANS, "", 9.5)
    pdf.set_text_color(*INK)
    pdf.cell(24, BADGE_H, "Decision")
    pdf.badge(d.decision.upper(), DECISION_COLOURS[d.decision], pdf.l_margin + 24, top, size_pt=11)
    pdf.set_xy(pdf.l_margin, top + BADGE_H + 3)
    decided_by = "policy (automatic)" if d.decided_by == "policy" else d.decided_by
    pdf.fields([
        [("Decided by", decided_by), ("Decided at", when(d.decided_at))],
        [("Receipt digest", digest(d.receipt_sha256))],
    ])
    # Free text of any length: paragraphs flow across pages where a table cell could not.
    if d.reason:
        pdf.subheading("Reason")
        pdf.paragraph(d.reason)
    pdf.subheading("Comment")
    pdf.paragraph(d.comment or "No comment.", muted=not d.comment)


def _llm_calls(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    records = request.llm_records
    pdf.section("5  LLM calls", keep=85 if records else 36)
    if not records:
        pdf.paragraph("No model was called in this run.", muted=True)
        return
    tokens_in = sum(r.input_tokens for r in records)
    tokens_out = sum(r.output_tokens for r in records)
    pdf.paragraph(
        f"{len(records)} call{'s' if len(records) != 1 else ''} · {tokens_in:,} tokens in, {tokens_out:,} out · "
        f"USD {sum(r.cost_usd for r in records):.6f} · {sum(r.latency_ms for r in records):,.0f} ms in total"
    )
    for number, r in enumerate(records, start=1):
        flags = "\n".join(f"{f.source} — {f.rule}: “{f.excerpt}”" for f in r.injection_flags)
        rows: list[list[Field]] = [
            [("Provider", r.provider), ("Attempt", str(r.attempt))],
            [("Model requested", r.model_requested), ("Model version", r.model_version)],
            [("Prompt template", r.prompt_template), ("Validation", validation(r))],
            [("Prompt SHA-256", digest(r.prompt_sha256))],
            [("Tokens in / out", f"{r.input_tokens:,} / {r.output_tokens:,}"), ("Cost (USD)", f"{r.cost_usd:.6f}")],
            [("Latency (ms)", f"{r.latency_ms:,.0f}"), ("Model calls", str(r.calls))],
        ]
        if r.decision is not None:
            answer = r.decision if r.confidence is None else f"{r.decision} (confidence {r.confidence:.2f})"
            rows.append([("Answer", answer)])
        rows.append([("Injection flags", Styled(flags, ALERT) if r.injection_flags else "none")])
        pdf.fields(rows, title=f"#{number}  {r.step}  ·  task {r.task}")


def _appendix(pdf: ReportPdf, request: ComplianceReportInput) -> None:
    pdf.add_page()
    pdf.section("Appendix  Audit trail")
    pdf.section("A.1  Timeline", level=1)
    if request.timeline:
        pdf.grid(["Time", "Event"], [[when(e.at), e.event] for e in request.timeline], widths=(42, 132))
    else:
        pdf.paragraph("No timeline was recorded.", muted=True)
    pdf.section("A.2  Approval receipts", level=1, keep=80 if request.receipts else 36)
    if not request.receipts:
        pdf.paragraph("No approval receipts: no person decided this run.", muted=True)
    for number, receipt in enumerate(request.receipts, start=1):
        _receipt(pdf, number, receipt)


def _receipt(pdf: ReportPdf, number: int, receipt: dict[str, Any]) -> None:
    """Receipts arrive as recorded on the run (dicts): every field is optional here."""

    def text(key: str) -> str:
        value = receipt.get(key)
        return "—" if value in (None, "") else str(value)

    roles = receipt.get("roles")
    roles_text = ", ".join(map(str, roles)) if isinstance(roles, list) and roles else text("roles")
    decision = text("decision")
    colour = DECISION_COLOURS.get(decision)
    decision_value: Value = Styled(decision, STRONG.replace(color=colour)) if colour else decision
    pdf.fields([
        [("Approver", text("approver")), ("Decision", decision_value)],
        [("Roles", roles_text), ("Decided at", when(receipt.get("decided_at")))],
        [("Approval key", text("approval_key")), ("Outcome", text("outcome"))],
        [("Shown SHA-256", digest(receipt.get("shown_sha256")))],
        [("Update id", digest(receipt.get("update_id")))],
        [("Comment", text("comment") if receipt.get("comment") else "No comment.")],
    ], title=f"Receipt {number}  ·  {text('approver')}")


def render_compliance_report(request: ComplianceReportInput) -> bytes:
    """The report as PDF bytes: the same request always gives the same bytes."""
    pdf = ReportPdf(request.run_id, request.generated_at)
    pdf.add_page()
    _title(pdf, request)
    _applicant(pdf, request)
    _documents(pdf, request)
    _risk(pdf, request)
    _decision(pdf, request)
    _llm_calls(pdf, request)
    _appendix(pdf, request)
    return bytes(pdf.output())


def _render_and_store(request: ComplianceReportInput) -> ArtifactRef:
    data = render_compliance_report(request)
    return default_store().put(request.run_id, REPORT_NAME, data, REPORT_CONTENT_TYPE)


@activity.defn(name="generate-compliance-report")
async def generate_compliance_report(request: ComplianceReportInput) -> ArtifactRef:
    # Rendering is CPU work and storing is file I/O: neither may hold up the worker's event loop.
    try:
        ref = await asyncio.to_thread(_render_and_store, request)
    except ValueError as error:
        raise ApplicationError(str(error), type=REPORT_INVALID, non_retryable=True) from error
    activity.logger.info("compliance report stored", extra={"bytes": ref.size, "sha256": ref.sha256})
    return ref
