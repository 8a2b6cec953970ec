"""The layers import downwards only (docs/architecture.md): a run flows HTTP → api → Temporal →
worker → workflow → activities, and the kernel under all of them imports none of them.

Imports are read from the source with `ast`, lazy ones inside functions included, so a
forbidden import cannot hide behind a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each layer and the top-level packages (or subpackages) it must never import.
FORBIDDEN = {
    "kernel": ("api", "workers", "workflows", "activities", "policies", "steward.cli"),
    "policies": ("api", "workers", "workflows", "activities", "steward.cli"),
    "workflows": ("api", "workers", "steward.cli"),
    "activities": ("api", "workers", "workflows", "steward.cli"),
    "api": ("workers", "steward.cli"),
    "workers": ("api", "steward.cli"),
}


def layer_files(layer: str) -> list[Path]:
    if layer == "kernel":
        # steward/cli/ and `python -m steward` (__main__.py) are the entry points, above everything.
        return [p for p in (ROOT / "steward").rglob("*.py")
                if "cli" not in p.relative_to(ROOT / "steward").parts and p.name != "__main__.py"]
    return sorted((ROOT / layer).rglob("*.py"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from steward import cli` imports steward.cli too.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(layer: str) -> list[str]:
    forbidden = FORBIDDEN[layer]
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in layer_files(layer)
        for line, module in imported_modules(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_layers_below_it(layer: str) -> None:
    assert layer_files(layer), f"no source files found for layer {layer}"
    assert violations(layer) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from api.app import create_app\n    from steward import cli\n")

    assert imported_modules(module) == [(2, "api.app"), (2, "api.app.create_app"), (3, "steward"), (3, "steward.cli")]


def test_every_module_in_workflows_is_a_workflow_or_a_building_block_passed_through_the_sandbox() -> None:
    """A new building block must be listed (or it is re-imported for every run); a workflow
    module must not be (or the sandbox stops checking it), the platform's own (event delivery) included."""
    from workers.worker import PLATFORM_WORKFLOWS, WORKFLOW_BUILDING_BLOCKS
    from workflows.catalog import discover

    workflow_modules = {spec.workflow.__module__ for spec in discover().specs.values()}
    modules = {f"workflows.{p.stem}" for p in (ROOT / "workflows").glob("*.py") if p.stem != "__init__"}

    platform_modules = {w.__module__ for w in PLATFORM_WORKFLOWS}
    assert workflow_modules.isdisjoint(WORKFLOW_BUILDING_BLOCKS)
    assert platform_modules.isdisjoint(WORKFLOW_BUILDING_BLOCKS)
    assert modules == workflow_modules | platform_modules | set(WORKFLOW_BUILDING_BLOCKS)
