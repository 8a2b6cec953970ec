"""The fonts reports are set in, prepared once: static instances of the variable fonts on PyPI.

The fontpkg packages ship Arimo and Roboto Mono as variable fonts. Instancing a weight out of a
variable font costs seconds of CPU (fontTools rewrites every glyph's outline), so it happens once
per font version, not per report: `prepared_fonts` writes the static faces into a cache directory
named after everything they are made from (the source files' SHA-256, fontTools' version, this
recipe), and every later call, in any process, finds them there. Fonts never come from the
machine: the same packages give the same faces, and the same faces the same PDF bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import fontpkg
import fontTools
from fontTools import ttLib
from fontTools.varLib import instancer

# Bump when the faces are made differently, so caches made the old way are not used.
RECIPE_VERSION = 1
SANS_FAMILY = "Arimo"  # Latin, Greek, Cyrillic, Hebrew and Vietnamese
MONO_FAMILY = "Roboto Mono"  # digests and ids


@dataclass(frozen=True)
class Face:
    file_name: str
    family: str
    style: str  # the fontpkg style of the source file
    weight: int


FACES = (
    Face("Arimo-Regular.ttf", SANS_FAMILY, "regular", 400),
    Face("Arimo-Bold.ttf", SANS_FAMILY, "regular", 700),
    Face("Arimo-Italic.ttf", SANS_FAMILY, "italic", 400),
    Face("RobotoMono-Regular.ttf", MONO_FAMILY, "regular", 400),
)


def _source(face: Face) -> Path:
    return Path(fontpkg.path(face.family, style=face.style))


def cache_key(faces: Sequence[Face] = FACES) -> str:
    """Names what the prepared faces are made of: change any of it and they are made again."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}; fontTools {fontTools.version}".encode())
    for face in faces:
        digest.update(f"{face.file_name}:{face.weight}:".encode())
        digest.update(hashlib.sha256(_source(face).read_bytes()).digest())
    return digest.hexdigest()[:24]


def _make_static(face: Face, target: Path) -> None:
    font = ttLib.TTFont(_source(face), recalcTimestamp=False)
    if "fvar" in font:
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
            # A directory appears whole or not at all: a reader never sees half the faces.
            os.rename(building, prepared)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return prepared


@cache
def coverage(font_file: Path) -> frozenset[int]:
    """The code points `font_file` has a glyph for."""
    return frozenset(ttLib.TTFont(font_file, lazy=True).getBestCmap())
