"""Finds every WorkflowSpec in the configured packages: the one list worker and API share.

Discovery imports each module of each package once and collects module-level WorkflowSpec
values. Adding a workflow is adding a module; there is no central list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workflows.spec import WorkflowSpec

BUILTIN_PACKAGE = "workflows"


class CatalogError(Exception):
    """The set of workflow modules is inconsistent (duplicate names, unimportable package)."""


@dataclass(frozen=True)
class Catalog:
    specs: dict[str, WorkflowSpec]

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


def discover(extra_packages: Iterable[str] = ()) -> Catalog:
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
    return Catalog(specs)
