"""The fonts reports are set in, prepared once: static faces of fonts from PyPI packages.

Arimo sets the text and Roboto Mono the digests and ids. Names in scripts Arimo cannot draw fall
back, character by character, to a face for their script: IBM Plex Sans Arabic, Noto Sans
Devanagari and Sarabun (Thai) from fontpkg packages, and Noto Sans CJK JP (`noto-cjk-sans-jp-regular`)
for Chinese, Japanese and Korean. `SANS_FONTS` and `MONO_FONTS` are those fallback lists in order;
templates receive them from pdf.py, and text.py prints what none of them can draw as its code point.

The faces were chosen for the text a reader copies, not only for their looks. Typst writes a glyph
that is moved up or down on its own (a mark placed above another) outside the span that says what
its cluster reads, and names it after the whole cluster, so the cluster is copied twice. Noto Sans
Arabic draws the dots of a letter that way (عبدالله copies as عببدالله) and Noto Sans Thai most
vowels above a consonant (ดี as ดีดี); IBM Plex Sans Arabic and Sarabun place them with their
letter; only a second mark stacked on a first still doubles its cluster (ดิ์, or a shadda under a
vowel sign in vocalised Arabic).

Most fontpkg fonts are variable. Instancing a weight out of a variable font costs seconds of CPU
(fontTools rewrites every glyph's outline), so it happens once per font version, not per report:
`prepared_fonts` writes the static faces into a cache directory named after everything they are
made from (the source files' SHA-256, fontTools' version, this recipe), and every later call, in
any process, finds them there. A face that is static already (Plex Arabic, Sarabun, Noto Sans
CJK) is copied as it is. Fonts never come from the machine: the same packages give the same
faces, and the same faces the same PDF bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.resources
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import chain
from pathlib import Path

import fontpkg
import fontTools
from fontTools import ttLib
from fontTools.varLib import instancer

# Bump when the faces are made differently, so caches made the old way are not used.
RECIPE_VERSION = 2
SANS_FAMILY = "Arimo"  # Latin, Greek, Cyrillic, Hebrew and Vietnamese
MONO_FAMILY = "Roboto Mono"  # digests and ids
# The scripts Arimo lacks. Typst gives each character to the first family in the list with a
# glyph for it, so the order matters where fonts overlap: Arimo first for Latin and Hebrew (the
# script faces carry Latin too), each script's own face next, and CJK last because it also covers
# Latin, Greek, Cyrillic and many symbols that the faces before it draw in their own style.
SCRIPT_FAMILIES = ("IBM Plex Sans Arabic", "Noto Sans Devanagari", "Sarabun", "Noto Sans CJK JP")
SANS_FONTS = (SANS_FAMILY, *SCRIPT_FAMILIES)
MONO_FONTS = (MONO_FAMILY, *SANS_FONTS)  # an id in another script still prints, in its script's face


@dataclass(frozen=True)
class Face:
    file_name: str
    family: str
    style: str  # the fontpkg style of the source file
    weight: int
    # The package that ships `file_name` as a static font, for a font that is not a fontpkg family.
    package: str | None = None


FACES = (
    Face("Arimo-Regular.ttf", SANS_FAMILY, "regular", 400),
    Face("Arimo-Bold.ttf", SANS_FAMILY, "regular", 700),
    Face("Arimo-Italic.ttf", SANS_FAMILY, "italic", 400),
    Face("RobotoMono-Regular.ttf", MONO_FAMILY, "regular", 400),
    Face("IBMPlexSansArabic-Regular.ttf", "IBM Plex Sans Arabic", "regular", 400),
    Face("IBMPlexSansArabic-Bold.ttf", "IBM Plex Sans Arabic", "regular", 700),
    Face("NotoSansDevanagari-Regular.ttf", "Noto Sans Devanagari", "regular", 400),
    Face("NotoSansDevanagari-Bold.ttf", "Noto Sans Devanagari", "regular", 700),
    Face("Sarabun-Regular.ttf", "Sarabun", "regular", 400),
    Face("Sarabun-Bold.ttf", "Sarabun", "regular", 700),
    # Regular only: the bold face is another 16 MB package, and Typst sets bold CJK in this one.
    Face("NotoSansCJKjp-Regular.otf", "Noto Sans CJK JP", "regular", 400, package="noto_cjk_sans_jp_regular"),
)


def _source(face: Face) -> Path:
    if face.package is not None:
        return Path(str(importlib.resources.files(face.package) / face.file_name))
    return Path(fontpkg.path(face.family, weight=face.weight, style=face.style))


@cache
def _file_digest(path: Path, size: int, modified_ns: int) -> bytes:
    # Keyed on size and time too: a package upgraded under a running process is hashed again.
    return hashlib.sha256(path.read_bytes()).digest()


def cache_key(faces: Sequence[Face] = FACES) -> str:
    """Names what the prepared faces are made of: change any of it and they are made again.

    Every report asks for its fonts, so a process hashes each source file once (the CJK font is
    16 MB, 10-40 ms of hashing) and afterwards only looks at its size and modification time."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}; fontTools {fontTools.version}".encode())
    for face in faces:
        source = _source(face)
        stat = source.stat()
        digest.update(f"{face.file_name}:{face.weight}:".encode())
        digest.update(_file_digest(source, stat.st_size, stat.st_mtime_ns))
    return digest.hexdigest()[:24]


def _make_static(face: Face, target: Path) -> None:
    source = _source(face)
    with ttLib.TTFont(source, lazy=True) as probe:
        variable = "fvar" in probe
    if not variable:
        # A copy keeps its bytes, where a fontTools round trip of the 16 MB CJK font would take
        # seconds and could change them.
        shutil.copyfile(source, target)
        return
    font = ttLib.TTFont(source, recalcTimestamp=False)
    axes = {axis.axisTag: axis.defaultValue for axis in font["fvar"].axes}
    axes["wght"] = face.weight
    # updateFontNames: the bold instance is named "Arimo Bold", so PDF readers and Typst
    # see a bold face rather than a second regular one.
    instancer.instantiateVariableFont(font, axes, inplace=True, static=True, updateFontNames=True)
    font.save(target)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One process prepares at a time; the others wait and then find the result."""
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepared_fonts(cache_root: Path, faces: Sequence[Face] = FACES) -> Path:
    """The directory holding every face of `faces` as a static font, made on first use."""
    prepared = cache_root / cache_key(faces)
    if prepared.is_dir():
        return prepared
    cache_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(cache_root):
        if prepared.is_dir():  # another process made them while we waited
            return prepared
        building = Path(tempfile.mkdtemp(dir=cache_root, prefix=".building-"))
        try:
            for face in faces:
                _make_static(face, building / face.file_name)
                _record_coverage(building / face.file_name)
            # A directory appears whole or not at all: a reader never sees half the faces.
            os.rename(building, prepared)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return prepared


def _coverage_file(font_file: Path) -> Path:
    return font_file.with_name(font_file.name + ".coverage.json")


def _record_coverage(font_file: Path) -> None:
    """Writes the code points `font_file` draws beside it, as [first, last] ranges: fontTools
    takes 0.4 s to read the CJK font's cmap, which every process would pay before its first report."""
    with ttLib.TTFont(font_file, lazy=True) as font:
        points = sorted(font.getBestCmap())
    ranges: list[list[int]] = []
    for point in points:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    _coverage_file(font_file).write_text(json.dumps(ranges, separators=(",", ":")))


@cache
def coverage(font_file: Path) -> frozenset[int]:
    """The code points `font_file` (a prepared face) has a glyph for."""
    ranges = json.loads(_coverage_file(font_file).read_text())
    return frozenset(chain.from_iterable(range(first, last + 1) for first, last in ranges))


@cache
def fallback_coverage(fonts_dir: Path, families: tuple[str, ...]) -> frozenset[int]:
    """The code points some family of `families` (a fallback list) draws. Each family's regular
    face stands for the family: its other faces are instances of the same glyph set."""
    regular = [face for face in FACES if face.family in families and face.style == "regular" and face.weight == 400]
    return frozenset().union(*(coverage(fonts_dir / face.file_name) for face in regular))
