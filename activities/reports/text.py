"""Text in reports: what every report's data goes through before a Typst template sets it.

Values are formatted here (times in UTC, sizes, validation outcomes) and made drawable: composed,
whitespace tamed, any character the fonts lack printed as its code point (`[U+674E]`), long
tokens given break opportunities, digests split into lines. Templates receive plain strings, or
{"text", "style"} for a value in a style of its own (templates/steward.typ).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.llm.models import LlmCallRecord
from activities.reports.fonts import FACES, coverage

SANS_FILE, MONO_FILE = FACES[0].file_name, FACES[3].file_name

Value = str | dict[str, str]  # a string, or {"text", "style"} for a value in a style of its own
Row = list[tuple[str, Value]]
# Typst breaks lines at spaces only. A longer run of text without one (a token, a URL) gets a
# zero-width space every BREAK_EVERY characters, so it wraps instead of running off the page; in
# Arimo that prints nothing and is not extracted with the text.
BREAK_EVERY = 24
_UNBROKEN = re.compile(r"\S{%d}(?=\S)" % BREAK_EVERY)
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


def breakable(text: str) -> str:
    """`text` with a zero-width space after every BREAK_EVERY characters without a space."""
    return _UNBROKEN.sub("\\g<0>\u200b", text)


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
    """Makes every string of the report drawable in the font it is set in."""

    def __init__(self, fonts_dir: Path) -> None:
        self.sans = coverage(fonts_dir / SANS_FILE)
        self.mono = coverage(fonts_dir / MONO_FILE)

    def __call__(self, text: str) -> str:
        return breakable(drawable(text, self.sans))

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
