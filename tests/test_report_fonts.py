"""The report fonts are made once from the packaged variable fonts, then found by every process."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from fontTools import ttLib

from activities.reports.fonts import (
    FACES,
    MONO_FONTS,
    SANS_FAMILY,
    SANS_FONTS,
    Face,
    _source,
    cache_key,
    coverage,
    prepared_fonts,
)

# One small face keeps these tests quick; the suite's report tests prepare all of FACES.
MONO_ONLY = (FACES[3],)
THAI_REGULAR = next(face for face in FACES if face.file_name == "Sarabun-Regular.ttf")  # static in its package


def prepare_in_another_process(cache_root: Path) -> str:
    return str(prepared_fonts(cache_root, MONO_ONLY))


def test_faces_are_static_and_the_bold_one_is_bold(settings) -> None:
    directory = prepared_fonts(settings.font_cache_dir)

    for face in FACES:
        font = ttLib.TTFont(directory / face.file_name)
        assert "fvar" not in font and "gvar" not in font, f"{face.file_name} is still a variable font"
        assert font["OS/2"].usWeightClass == face.weight
    bold = ttLib.TTFont(directory / "Arimo-Bold.ttf")
    assert bold["name"].getBestFamilyName() == SANS_FAMILY and bold["name"].getBestSubFamilyName() == "Bold"


def test_faces_are_made_once_and_then_reused(tmp_path: Path) -> None:
    first = prepared_fonts(tmp_path, MONO_ONLY)
    made = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}

    again = prepared_fonts(tmp_path, MONO_ONLY)

    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == made
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [first.name]


def test_processes_preparing_at_once_make_one_set_of_faces(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        directories = pool.map(prepare_in_another_process, [tmp_path] * 3)

    assert len(set(directories)) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [Path(directories[0]).name]


def test_a_different_recipe_or_source_gets_a_directory_of_its_own() -> None:
    lighter = Face(MONO_ONLY[0].file_name, MONO_ONLY[0].family, MONO_ONLY[0].style, 300)

    assert cache_key(MONO_ONLY) != cache_key((lighter,))
    assert cache_key(MONO_ONLY) == cache_key(MONO_ONLY)


def test_a_face_static_in_its_package_is_copied_byte_for_byte(tmp_path: Path) -> None:
    directory = prepared_fonts(tmp_path, (THAI_REGULAR,))

    assert (directory / THAI_REGULAR.file_name).read_bytes() == _source(THAI_REGULAR).read_bytes()


def test_the_recorded_coverage_is_the_fonts_own_cmap(tmp_path: Path) -> None:
    directory = prepared_fonts(tmp_path, (THAI_REGULAR, *MONO_ONLY))

    for face in (THAI_REGULAR, *MONO_ONLY):
        with ttLib.TTFont(directory / face.file_name, lazy=True) as font:
            assert coverage(directory / face.file_name) == set(font.getBestCmap()), face.file_name


def test_every_family_the_templates_name_has_a_regular_face() -> None:
    regular = {face.family for face in FACES if face.style == "regular" and face.weight == 400}

    assert set(MONO_FONTS) | set(SANS_FONTS) <= regular
