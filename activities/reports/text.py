"""Text in reports: what every report's data goes through before a Typst template sets it.

Values are formatted here (times in UTC, sizes, validation outcomes) and made drawable: composed,
whitespace tamed, any character that no font of the fallback list has printed as its code point
(an emoji, say: `[U+1F600]`), long digests split into lines (templates/steward.typ gives long
tokens their break opportunities). Names in Arabic, Devanagari, Thai or CJK print as text, in the
fallback faces of fonts.py. Templates receive plain strings, or {"text", "style"} for a value in a
style of its own (templates/steward.typ).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Container, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.llm.models import LlmCallRecord
from activities.reports.fonts import MONO_FONTS, SANS_FONTS, fallback_coverage

Value = str | dict[str, str]  # a string, or {"text", "style"} for a value in a style of its own
Row = list[tuple[str, Value]]
# Roboto Mono characters (7.6 pt) that fit a full-width value cell, and a narrow one. Longer
# digests and ids are split into lines of this many: copied from the PDF, they stay plain text.
MONO_CHARS_WIDE = 84
MONO_CHARS_NARROW = 32


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


class ReportText:
    """Makes every string of the report drawable in the fonts it is set in (fonts.py's fallback lists)."""

    def __init__(self, fonts_dir: Path) -> None:
        self.sans = fallback_coverage(fonts_dir, SANS_FONTS)
        self.mono = fallback_coverage(fonts_dir, MONO_FONTS)

    def __call__(self, text: str) -> str:
        return drawable(text, self.sans)

    def styled(self, text: str, style: str) -> dict[str, str]:
        return {"text": drawable(text, self.mono) if style == "mono" else self(text), "style": style}

    def digest(self, text: str | None, *, width: int = MONO_CHARS_WIDE) -> Value:
        """A digest or id in monospace, in lines of at most `width` characters."""
        if not text:
            return "—"
        return self.styled("\n".join(text[i:i + width] for i in range(0, len(text), width)), "mono")

    def rows(self, rows: list[Row]) -> list[list[tuple[str, Value]]]:
        return [[(self(label), self(value) if isinstance(value, str) else value) for label, value in row]
                for row in rows]

    def shows_code_points(self, value: Any) -> bool:
        """Whether any string in `value` (a dumped model) has a character the fonts cannot draw."""
        return any(not char.isspace() and not printable(char, self.sans)
                   for text in strings(value) for char in unicodedata.normalize("NFC", text))


def llm_record(t: ReportText, number: int, r: LlmCallRecord) -> dict[str, Any]:
    flags = "\n".join(f"{f.source} — {f.rule}: “{f.excerpt}”" for f in r.injection_flags)
    rows: list[Row] = [
        [("Provider", r.provider), ("Attempt", str(r.attempt))],
        [("Model requested", r.model_requested), ("Model version", r.model_version)],
        [("Prompt template", r.prompt_template), ("Validation", validation(r))],
        [("Prompt SHA-256", t.digest(r.prompt_sha256))],
        [("Tokens in / out", f"{r.input_tokens:,} / {r.output_tokens:,}"), ("Cost (USD)", f"{r.cost_usd:.6f}")],
        [("Latency (ms)", f"{r.latency_ms:,.0f}"), ("Model calls", str(r.calls))],
    ]
    if r.decision is not None:
        answer = r.decision if r.confidence is None else f"{r.decision} (confidence {r.confidence:.2f})"
        rows.append([("Answer", answer)])
    rows.append([("Injection flags", t.styled(flags, "alert") if r.injection_flags else "none")])
    return {"title": t(f"#{number}  {r.step}  ·  task {r.task}"), "rows": t.rows(rows)}


def llm_calls(t: ReportText, records: list[LlmCallRecord]) -> dict[str, Any]:
    """A report's LLM section: a one-line summary, and each call's record as a titled field grid."""
    n = len(records)
    summary = (
        f"{n} call{'s' if n != 1 else ''} · {sum(r.input_tokens for r in records):,} tokens in, "
        f"{sum(r.output_tokens for r in records):,} out · USD {sum(r.cost_usd for r in records):.6f} · "
        f"{sum(r.latency_ms for r in records):,.0f} ms in total"
    )
    return {"summary": summary, "records": [llm_record(t, i, r) for i, r in enumerate(records, start=1)]}
