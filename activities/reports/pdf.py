"""PDF reports from Typst templates (templates/), set in the prepared fonts (fonts.py).

Typst lays out and writes a report of a few pages in about 10 ms, where fpdf2 took 150-250 ms
even with static fonts (measured on a 2-core machine, docs/workflows/compliance-documentation.md).
A template receives its data as one JSON document in `sys.inputs`, so text from a run is always
data to Typst, never markup or code. Rendering is pure: the same template, data, fonts and time
give the same bytes. `render_and_store` is what a report activity calls: render, store the bytes
as the run's artifact, and fail without retries on input that can never render.

Rendering is CPU work: it runs in the worker's process pool (workers/cpu.py), never on the
worker's event loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import typst
from temporalio.exceptions import ApplicationError

from activities.artifacts.store import ArtifactRef, default_store
from activities.reports.fonts import MONO_FONTS, SANS_FONTS, prepared_fonts
from steward import runtime

TEMPLATES = Path(__file__).parent / "templates"
FONT_LISTS = json.dumps({"sans": SANS_FONTS, "mono": MONO_FONTS})
PDF_CONTENT_TYPE = "application/pdf"


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
            # The fallback lists come from fonts.py, the one place that also decides (text.py) what
            # prints as a code point: the template and that check cannot disagree.
            sys_inputs={"data": json.dumps(data, ensure_ascii=False), "fonts": FONT_LISTS},
            timestamp=int(created_at.timestamp()),
        )
    except typst.TypstError as error:
        raise RenderError(f"{template}: {error}") from None


def report_fonts() -> Path:
    """The prepared fonts of this process's settings (made on first use, then read from disk)."""
    return prepared_fonts(runtime.settings().font_cache_dir)


def render_and_store(run_id: str, tenant: str | None, name: str, render: Callable[[Path], bytes], *,
                     invalid: str) -> ArtifactRef:
    """`render(fonts_dir)`, stored as the run's artifact `name`, encrypted under `tenant`'s key. An
    input that cannot be rendered or stored (an unsafe run id, say) fails the same way on every
    attempt: a non-retryable ApplicationError of type `invalid`, rather than retries that only
    delay the failure."""
    try:
        return default_store().put(run_id, name, render(report_fonts()), PDF_CONTENT_TYPE, tenant=tenant)
    except (ValueError, RenderError) as error:
        raise ApplicationError(str(error), type=invalid, non_retryable=True) from error
