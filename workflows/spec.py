"""What a workflow module declares so the worker can host it and the API can offer it.

Pure data, imported by workflow modules inside the sandbox: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

DEFAULT_TASK_QUEUE = "steward"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# CPU-bound activities (plain `def`) of a task queue's workflows are served on this queue by the
# worker's process pool (workers/cpu.py); workflows run them with workflows/cpu_steps.py.
CPU_TASK_QUEUE_SUFFIX = "-cpu"


def cpu_task_queue(task_queue: str) -> str:
    return task_queue + CPU_TASK_QUEUE_SUFFIX


@dataclass(frozen=True)
class WorkflowSpec:
    """One workflow as the platform sees it.

    `name` is the Temporal workflow type and the URL segment (kebab-case). `summary` turns a
    validated input into the run's one-line static summary in the Temporal UI; it must not put
    personal data there. `execution_timeout` bounds a run's whole life, retries and waits
    included; a run past it ends as timed_out. `listed=False` hides a workflow from the catalog
    (it can still be started by name, as the benchmark is). `sample_input` is a valid input with
    no personal data that completes without a person: `steward bench --workflow` runs it, and the
    replay-test history is recorded from it.
    """

    name: str
    description: str
    workflow: type
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    activities: Sequence[Callable[..., Any]] = ()
    task_queue: str = DEFAULT_TASK_QUEUE
    summary: Callable[[Any], str] | None = None
    execution_timeout: timedelta | None = None
    listed: bool = True
    tags: Sequence[str] = field(default_factory=tuple)
    sample_input: Mapping[str, Any] | None = None
    # Declarative workflows (workflows/declarative.py): one dynamic workflow class runs them all, and
    # the run's argument is made from the validated input (the definition travels with it).
    start_argument: Callable[[BaseModel], Any] | None = None
    # What every run of this workflow carries in its memo besides what every run does (a
    # declarative definition's SHA-256: run details and the audit trail show it).
    memo: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"workflow name {self.name!r} must be kebab-case, e.g. compliance-documentation")
        if not self.description or "\n" in self.description:
            raise ValueError(f"workflow {self.name!r} needs a one-line description")
        definition = workflow._Definition.must_from_class(self.workflow)
        if definition.name is None and self.start_argument is None:
            raise ValueError(f"workflow {self.name!r}: a dynamic workflow needs a start_argument")
        if definition.name is not None and definition.name != self.name:
            raise ValueError(
                f"workflow {self.name!r}: @workflow.defn(name=...) is {definition.name!r}; they must match"
            )
        for model in (self.input_model, self.output_model):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"workflow {self.name!r}: {model!r} is not a pydantic model")
        if self.sample_input is not None:
            self.input_model.model_validate(self.sample_input)  # a broken sample fails at import

    def argument(self, validated_input: BaseModel) -> Any:
        """What the run is started with."""
        return self.start_argument(validated_input) if self.start_argument else validated_input

    def static_summary(self, validated_input: BaseModel) -> str:
        return self.summary(validated_input) if self.summary else self.description
