"""Finds every WorkflowSpec in the configured packages: the one list worker and API share.

Discovery imports each module of each package once and collects module-level WorkflowSpec
values. Adding a workflow is adding a module; there is no central list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.spec import WorkflowSpec

BUILTIN_PACKAGE = "workflows"


class CatalogError(Exception):
    """The set of workflow modules is inconsistent (duplicate names, unimportable package)."""


@dataclass(frozen=True)
class Catalog:
    specs: dict[str, WorkflowSpec]
    # Declarative definitions that could not be loaded: each problem as file:line:column: message.
    problems: tuple[str, ...] = ()

    def get(self, name: str) -> WorkflowSpec | None:
        return self.specs.get(name)

    def listed(self) -> list[WorkflowSpec]:
        return sorted((s for s in self.specs.values() if s.listed), key=lambda s: s.name)

    def task_queues(self) -> dict[str, list[WorkflowSpec]]:
        queues: dict[str, list[WorkflowSpec]] = {}
        for spec in self.specs.values():
            queues.setdefault(spec.task_queue, []).append(spec)
        return queues

    def activities_for(self, specs: Iterable[WorkflowSpec]) -> list[Any]:
        """Each activity once, even when several workflows share it."""
        seen: dict[int, Any] = {}
        for spec in specs:
            for fn in spec.activities:
                seen.setdefault(id(fn), fn)
        return list(seen.values())


def _modules(package_name: str) -> Iterator[Any]:
    try:
        package = importlib.import_module(package_name)
    except ImportError as exc:
        raise CatalogError(f"workflow package {package_name!r} cannot be imported: {exc}") from exc
    yield package
    for info in pkgutil.iter_modules(package.__path__, prefix=f"{package_name}."):
        yield importlib.import_module(info.name)


def discover(extra_packages: Iterable[str] = (), definition_dirs: Iterable[Path] = ()) -> Catalog:
    specs: dict[str, WorkflowSpec] = {}
    origins: dict[str, str] = {}
    for package_name in (BUILTIN_PACKAGE, *extra_packages):
        for module in _modules(package_name):
            for value in vars(module).values():
                if not isinstance(value, WorkflowSpec):
                    continue
                if value.name in specs and specs[value.name] is not value:
                    raise CatalogError(
                        f"workflow {value.name!r} is declared in both {origins[value.name]} and {module.__name__}"
                    )
                specs[value.name] = value
                origins.setdefault(value.name, module.__name__)
    problems = _add_definitions(specs, list(definition_dirs))
    return Catalog(specs, tuple(problems))


def _add_definitions(specs: dict[str, WorkflowSpec], dirs: list[Path]) -> list[str]:
    """Each valid `*.yaml` definition in `dirs` as a spec beside the code workflows; the problems of
    the others. A definition may call what the code workflows' activities and the platform offer."""
    if not dirs:
        return []
    from activities.llm.tasks import TASKS
    from workflows.declarative import DECLARATIVE_ACTIVITIES, spec_for
    from workflows.definition_check import blocks_of, check

    code = Catalog(dict(specs))
    blocks = blocks_of([*code.activities_for(code.specs.values()), *DECLARATIVE_ACTIVITIES], list(TASKS),
                       list(specs))
    problems: list[str] = []
    for path in sorted(p for d in dirs if d.is_dir() for p in d.glob("*.yaml")):
        checked = check(path.read_text(encoding="utf-8"), str(path), blocks)
        if not checked.ok or checked.definition is None:
            problems += [str(problem) for problem in checked.problems]
            continue
        if checked.definition.id in specs:
            problems.append(f"{path}:1:1: workflow.id: {checked.definition.id!r} is already a workflow's name")
            continue
        specs[checked.definition.id] = spec_for(checked.definition)
    return problems
