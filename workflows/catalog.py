"""Finds every WorkflowSpec in the configured packages: the one list worker and API share.

Discovery imports each module of each package once and collects module-level WorkflowSpec
values. Adding a workflow is adding a module; there is no central list to edit. Declarative
definitions (`*.yaml` in the definition folders) are added on top, and can be reread on their own
(`with_definitions`) while the code workflows stay as imported.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
    # Each declarative workflow's name → SHA-256 of the file it was read from: what tells a reload
    # which definitions changed (the specs themselves are rebuilt on every read).
    definitions: Mapping[str, str] = field(default_factory=dict)

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
    return with_definitions(discover_code(extra_packages), definition_dirs)


def discover_code(extra_packages: Iterable[str] = ()) -> Catalog:
    """The code workflows only: each package's modules imported once, whatever the definitions say."""
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


def with_definitions(code: Catalog, definition_dirs: Iterable[Path]) -> Catalog:
    """A new catalog: `code`'s workflows and every valid definition the folders hold now. Reads
    and checks files (blocking); a broken file is a problem of the result, never an exception."""
    specs = dict(code.specs)
    problems, digests = _add_definitions(specs, list(definition_dirs))
    return Catalog(specs, tuple(problems), digests)


def definition_files(dirs: Iterable[Path]) -> list[Path]:
    """The files that are definitions: each folder's `*.yaml`, a missing folder holding none."""
    return sorted(p for d in dirs if d.is_dir() for p in d.glob("*.yaml"))


def _add_definitions(specs: dict[str, WorkflowSpec], dirs: list[Path]) -> tuple[list[str], dict[str, str]]:
    """Each valid `*.yaml` definition in `dirs` as a spec beside the code workflows; the problems of
    the others, and each added definition's file SHA-256. A definition may call what the code
    workflows' activities and the platform offer, and start any cataloged workflow — code or
    declarative — as a child."""
    if not dirs:
        return [], {}
    from workflows.declarative import child_workflows, spec_for
    from workflows.definition import WorkflowDefinition
    from workflows.definition_check import activity_name, check

    code = Catalog(dict(specs))
    problems: list[str] = []
    texts: dict[Path, str] = {}
    for path in definition_files(dirs):
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # deleted while listed, unreadable, not text
            problems.append(f"{path}:1:1: cannot be read: {exc}")
    # Children may be other definitions: every name a file declares counts as cataloged while checking.
    blocks = definition_blocks(code, [*filter(None, map(_declared_id, texts.values()))])
    # Plain `def` activities are CPU work, served on the CPU task queue only (workers/cpu.py).
    cpu_activities = sorted({activity_name(fn) for fn in _callable_activities(code)
                             if not inspect.iscoroutinefunction(fn)})
    definitions: dict[str, tuple[WorkflowDefinition, Path]] = {}
    digests: dict[str, str] = {}
    for path, text in texts.items():
        try:
            checked = check(text, str(path), blocks)
        except Exception as exc:  # a checker bug on one file must not take the other definitions with it
            problems.append(f"{path}:1:1: cannot be checked: {type(exc).__name__}: {exc}")
            continue
        if not checked.ok or checked.definition is None:
            problems += [str(problem) for problem in checked.problems]
            continue
        name = checked.definition.id
        if name in specs or name in definitions:
            problems.append(f"{path}:1:1: workflow.id: {name!r} is already a workflow's name")
            continue
        definitions[name] = (checked.definition, path)
        digests[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    while broken := {name for name, (definition, _) in definitions.items()
                     if _child_names(definition) - set(specs) - set(definitions)}:
        for name in sorted(broken):  # a child declared by a file that did not load: so may its parents
            definition, path = definitions.pop(name)
            digests.pop(name)
            missing = sorted(_child_names(definition) - set(specs) - set(definitions))
            problems.append(f"{path}:1:1: workflow.steps: starts {', '.join(missing)}, which did not load")
    loaded = {name: definition for name, (definition, _) in definitions.items()}
    for name, (definition, _) in definitions.items():
        specs[name] = spec_for(definition, child_workflows(definition, code.specs, loaded), cpu_activities)
    return problems, digests


def definition_blocks(catalog: Catalog, more_workflows: Iterable[str] = ()) -> Any:  # -> Blocks
    """What a definition may call: the catalog's activities and the platform's, the shipped LLM
    tasks, and the catalog's workflows (plus `more_workflows`) as children."""
    from activities.llm.tasks import TASKS
    from workflows.definition_check import blocks_of

    return blocks_of(_callable_activities(catalog), list(TASKS), [*catalog.specs, *more_workflows])


def _callable_activities(catalog: Catalog) -> list[Any]:
    from workflows.declarative import DECLARATIVE_ACTIVITIES

    return list(dict.fromkeys([*catalog.activities_for(catalog.specs.values()), *DECLARATIVE_ACTIVITIES]))


def _declared_id(text: str) -> str | None:
    """The `workflow.id` a file says it declares, whether or not the rest of it is valid."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    declared = data.get("workflow") if isinstance(data, dict) else None
    value = declared.get("id") if isinstance(declared, dict) else None
    return value if isinstance(value, str) else None


def _child_names(definition: Any) -> set[str]:
    return {action.workflow.name for step in definition.steps for action in (step, step.compensate)
            if action is not None and action.workflow is not None}
