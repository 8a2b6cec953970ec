"""The wheel — what the Docker image installs — carries every file the code reads at run time.

A prompt or schema left out of package-data works in the editable install `make up` uses and
fails only in production, so every non-module file under a package must match a package-data
pattern.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("steward", "workflows", "activities", "workers", "api", "policies")


def shipped_data_files() -> list[Path]:
    return sorted(
        path for package in PACKAGES for path in (ROOT / package).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    )


def test_every_data_file_of_a_package_is_declared_as_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]

    def declared(path: Path) -> bool:
        package, *rest = path.relative_to(ROOT).parts
        inside = Path(*rest)
        return any(inside.match(pattern) and len(inside.parts) == len(Path(pattern).parts)
                   for pattern in patterns.get(package, []))

    files = shipped_data_files()
    assert any(p.match("activities/llm/prompts/*.txt") for p in files)  # the check sees real files
    assert [str(p.relative_to(ROOT)) for p in files if not declared(p)] == []
