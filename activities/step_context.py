"""What an activity step of a declarative definition receives when it names no `input`: the step
context (docs/declarative-workflows.md). The seed's shape — a list of `{name, activity}` — hands
each activity the run's input and what the steps before it produced, and leaves the reading to it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError
from temporalio.exceptions import ApplicationError

STEP_INPUT_INVALID = "StepInputInvalid"  # the run's input or the steps before give the step nothing to work on

ModelT = TypeVar("ModelT", bound=BaseModel)


class RunContext(BaseModel):
    id: str
    requested_by: str = ""
    tenant: str = ""


class StepContext(BaseModel):
    step: str = Field(description="The step's name (with the item's index, in a for_each).")
    input: dict[str, Any] = Field(default_factory=dict, description="The run's input.")
    steps: dict[str, Any] = Field(default_factory=dict, description="Each finished step's output, by name, "
                                                                    "in the order they finished.")
    run: RunContext

    def latest(self, model: type[ModelT], what: str) -> ModelT:
        """The output of the most recent step that is a `model`: how a step finds, say, the facts
        an extraction produced without caring what the author named that step."""
        for output in reversed(list(self.steps.values())):
            try:
                return model.model_validate(output)
            except ValidationError:
                continue
        raise ApplicationError(f"step {self.step}: no step before it produced {what}", type=STEP_INPUT_INVALID,
                               non_retryable=True)

    def run_input(self, model: type[ModelT], what: str) -> ModelT:
        try:
            return model.model_validate(self.input)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(input)"
            raise ApplicationError(f"step {self.step}: the run's input is not {what}: {where}: {first['msg']}",
                                   type=STEP_INPUT_INVALID, non_retryable=True) from None
