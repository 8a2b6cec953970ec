"""PDF reports from Typst templates (templates/), set in the prepared fonts (fonts.py).

Typst lays out and writes a report of a few pages in about 10 ms, where fpdf2 took 150-250 ms
even with static fonts (measured on a 2-core machine, docs/workflows/compliance-documentation.md).
A template receives its data as one JSON document in `sys.inputs`, so text from a run is always
data to Typst, never markup or code. Rendering is pure: the same template, data, fonts and time
give the same bytes.

Rendering is CPU work: it runs in the worker's process pool (workers/cpu.py), never on the
worker's event loop.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import typst

TEMPLATES = Path(__file__).parent / "templates"


class RenderError(Exception):
    """A template could not be rendered with the data given (a bug: retrying cannot help)."""


@cache
def _compiler(fonts_dir: Path) -> typst.Compiler:
    # One compiler per process: it reads the fonts once and reuses what it can between reports.
    # No system fonts: a report looks the same on every machine.
    return typst.Compiler(root=str(TEMPLATES), font_paths=[str(fonts_dir)], ignore_system_fonts=True)


def render_pdf(template: str, data: dict[str, Any], *, created_at: datetime, fonts_dir: Path) -> bytes:
    """`template` (a file in templates/) rendered with `data`; `created_at` is the PDF's date."""
    try:
        return _compiler(fonts_dir).compile(
            input=str(TEMPLATES / template),
            format="pdf",
            sys_inputs={"data": json.dumps(data, ensure_ascii=False)},
            timestamp=int(created_at.timestamp()),
        )
    except typst.TypstError as error:
        raise RenderError(f"{template}: {error}") from None
