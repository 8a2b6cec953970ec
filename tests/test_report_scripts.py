"""Names in any script a report meets print as text, in a face for their script, and copy as written.

Reports are rendered through their real render functions and read back from the PDF's text layer
the way a PDF reader reads it (`text_layer`): each glyph's ToUnicode text, an /ActualText span
(Typst marks a cluster of several glyphs, a Devanagari conjunct or a Thai vowel on a consonant,
with the text it stands for) read as its text, and right-to-left runs, which a PDF stores left
to right as drawn, read backwards. pypdf's own extract_text ignores /ActualText, so it garbles
Devanagari and Thai that a reader copies correctly.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from pypdf.generic import ContentStream

from activities.incidents.postmortem import render_postmortem
from activities.reports import pdf as report_pdf
from activities.reports import text as report_text
from activities.reports.compliance_report import render_compliance_report
from activities.reports.fonts import prepared_fonts
from steward.cli.report_bench import compliance_cases, postmortem_cases

NAMES = {
    "Chinese": "李小龍",
    "Japanese": "山田 太郎",
    "Korean": "김민준",
    "Arabic": "محمد عبدالله",
    "Hindi": "प्रियंका चोपड़ा",
    "Thai": "สมชาย ใจดี",
    "Hebrew": "דוד לוי",
}
# PDF base fonts (Typst names them after the face's PostScript name) and the script each draws.
SCRIPT_FACES = {"Arimo": "Hebrew", "IBMPlexSansArabic": "Arabic", "NotoSansDevanagari": "Hindi",
                "Sarabun": "Thai", "NotoSansCJKjp": "Chinese"}


@pytest.fixture(scope="module")
def fonts(settings) -> Path:
    return prepared_fonts(settings.font_cache_dir)


def compliance_report(fonts: Path, full_name: str) -> bytes:
    request = compliance_cases()["decided by a person"]
    return render_compliance_report(
        request.model_copy(update={"applicant": request.applicant.model_copy(update={"full_name": full_name})}),
        fonts)


def postmortem(fonts: Path, title: str, acknowledged_by: str) -> bytes:
    request = postmortem_cases()["postmortem (typical)"]
    incident = request.incident
    return render_postmortem(request.model_copy(update={"incident": incident.model_copy(update={
        "title": title, "acknowledged": incident.acknowledged.model_copy(update={"by": acknowledged_by}),
    })}), fonts)


def _to_unicode(font: Any) -> dict[int, str]:
    cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
    mapping = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, text in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]*)>", block):
            mapping[int(code, 16)] = bytes.fromhex(text).decode("utf-16-be")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", cmap, re.S):
        for low, high, text in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            for offset in range(int(high, 16) - int(low, 16) + 1):
                mapping[int(low, 16) + offset] = chr(int(text, 16) + offset)
    return mapping


def _right_to_left(text: str) -> bool:
    return any(unicodedata.bidirectional(char) in ("R", "AL") for char in text)


def _reading_order(glyphs: list[str]) -> str:
    """A line's glyph texts, stored left to right as drawn, in reading order: every run of
    right-to-left glyphs, with the spaces inside it, reversed."""
    out: list[str] = []
    run: list[str] = []
    for glyph in [*glyphs, None]:
        if glyph is not None and (_right_to_left(glyph) or (run and not glyph.strip())):
            run.append(glyph)
            continue
        trailing = []
        while run and not run[-1].strip():
            trailing.append(run.pop())
        out += [*reversed(run), *trailing]
        run = []
        if glyph is not None:
            out.append(glyph)
    return "".join(out)


def text_layer(data: bytes) -> str:
    """The text a reader copies from the PDF, line by line, NFKC-normalised (presentation forms,
    should a font's ToUnicode give them, read as the letters they are)."""
    reader = PdfReader(io.BytesIO(data))
    lines: list[str] = []
    for page in reader.pages:
        fonts = {name: _to_unicode(font.get_object()) for name, font in page["/Resources"]["/Font"].items()}
        glyphs: list[str] = []
        font: dict[int, str] = {}
        baseline: float | None = None
        actual_text: list[bool] = []  # one entry per open marked-content span
        for operands, operator in ContentStream(page.get_contents(), reader).operations:
            if operator == b"cm":  # Typst places every run of glyphs with its own matrix
                y = float(operands[5])
                if baseline is not None and abs(y - baseline) > 3 and glyphs:
                    lines.append(_reading_order(glyphs))
                    glyphs = []
                baseline = y
            elif operator == b"Tf":
                font = fonts[operands[0]]
            elif operator in (b"BDC", b"BMC"):
                replacement = operands[1].get("/ActualText") if operator == b"BDC" and hasattr(operands[1], "get") \
                    else None
                actual_text.append(replacement is not None)
                if replacement is not None:
                    glyphs.append(str(replacement))
            elif operator == b"EMC":
                actual_text.pop()
            elif operator in (b"Tj", b"TJ") and not any(actual_text):
                for item in operands[0] if operator == b"TJ" else [operands[0]]:
                    if hasattr(item, "original_bytes"):
                        codes = item.original_bytes
                        glyphs += [font.get(int.from_bytes(codes[i:i + 2], "big"), "\ufffd")
                                   for i in range(0, len(codes), 2)]
        if glyphs:
            lines.append(_reading_order(glyphs))
    return unicodedata.normalize("NFKC", "\n".join(lines))


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def embedded_fonts(data: bytes) -> dict[str, str]:
    """Each font the PDF uses, without its subset tag, and how its program is embedded."""
    fonts = {}
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
            program = next((key for key in ("/FontFile2", "/FontFile3", "/FontFile") if key in descriptor), "none")
            fonts[str(font["/BaseFont"]).split("+", 1)[-1]] = program
    return fonts


@pytest.mark.parametrize("script", NAMES)
def test_a_name_in_any_script_prints_as_text_in_the_compliance_report(fonts: Path, script: str) -> None:
    name = NAMES[script]

    layer = text_layer(compliance_report(fonts, name))

    assert nfkc(name) in layer.splitlines(), f"{script}: not a line of its own (the summary's) in {layer[:300]!r}"
    assert f"Full name{nfkc(name)}" in layer  # a line's cells are read without a space between them
    assert "[U+" not in layer and "code points" not in layer


def test_names_in_every_script_at_once_print_in_the_postmortem(fonts: Path) -> None:
    title = " · ".join(NAMES[s] for s in ("Chinese", "Hindi", "Thai"))
    acknowledged_by = " ".join(NAMES[s] for s in ("Arabic", "Korean", "Hebrew"))

    layer = text_layer(postmortem(fonts, title, acknowledged_by))

    assert nfkc(title) in layer
    assert nfkc(acknowledged_by) in layer
    assert "[U+" not in layer


def test_the_pdf_embeds_each_scripts_face_only_where_it_is_used(fonts: Path) -> None:
    everyone = compliance_report(fonts, " ".join(NAMES.values()))
    latin = compliance_report(fonts, "Jane Doe")

    embedded = embedded_fonts(everyone)
    for face, script in SCRIPT_FACES.items():
        assert any(name.startswith(face) for name in embedded), f"no face for {script}: {sorted(embedded)}"
    assert all(program in ("/FontFile2", "/FontFile3") for program in embedded.values()), embedded
    assert not any(name.startswith(("IBMPlex", "Noto")) for name in embedded_fonts(latin))
    # Typst embeds only the glyphs a report uses: the 16 MB CJK font adds kilobytes, not megabytes.
    assert len(everyone) < len(latin) + 60_000, (len(everyone), len(latin))


def test_arabic_is_shaped_a_letter_takes_its_joining_form(fonts: Path) -> None:
    # محمد has meem twice: initial, then medial after hah. Unshaped text would draw both with the
    # one isolated glyph; shaped, they are two glyphs that both copy as meem.
    reader = PdfReader(io.BytesIO(compliance_report(fonts, "محمد")))
    arabic = next(font.get_object() for font in reader.pages[0]["/Resources"]["/Font"].values()
                  if "IBMPlexSansArabic" in str(font.get_object()["/BaseFont"]))

    meem_glyphs = [code for code, text in _to_unicode(arabic).items() if text == "م"]

    assert len(meem_glyphs) == 2


def test_right_to_left_names_read_in_their_order_beside_left_to_right_text(fonts: Path) -> None:
    layer = text_layer(compliance_report(fonts, f"Omar {NAMES['Arabic']} and {NAMES['Hebrew']} Levi"))

    assert nfkc(f"Omar {NAMES['Arabic']} and {NAMES['Hebrew']} Levi") in layer


def test_without_the_script_faces_names_print_as_code_points(monkeypatch, fonts: Path) -> None:
    """The reading above can fail: the fonts as they were before the script faces (Arimo and
    Roboto Mono alone) print these names as code points, and the text layer says so."""
    monkeypatch.setattr(report_pdf, "FONT_LISTS", json.dumps({"sans": ["Arimo"], "mono": ["Roboto Mono"]}))
    monkeypatch.setattr(report_text, "SANS_FONTS", ("Arimo",))
    monkeypatch.setattr(report_text, "MONO_FONTS", ("Roboto Mono",))

    for script in ("Chinese", "Arabic", "Hindi", "Thai"):
        layer = text_layer(compliance_report(fonts, NAMES[script]))
        assert nfkc(NAMES[script]) not in layer, script
        assert "[U+" in layer and "code points" in layer, script
    assert nfkc(NAMES["Hebrew"]) in text_layer(compliance_report(fonts, NAMES["Hebrew"]))  # Arimo has Hebrew


def test_a_character_no_face_has_still_prints_as_its_code_point(fonts: Path) -> None:
    layer = text_layer(compliance_report(fonts, "Bruce 😀 李"))

    assert "Bruce [U+1F600] 李" in layer
    assert "shown as their Unicode code points" in layer
