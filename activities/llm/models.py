"""What crosses the Temporal boundary for an LLM step: the request, the answer, the record."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class UntrustedText(BaseModel):
    """Text from outside (documents, alert text, free-form fields): data, never instructions."""

    name: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=262_144)


class LlmTaskRequest(BaseModel):
    task: str = Field(description="A task from activities/llm/tasks.py, e.g. risk-classification; with "
                                  "`instructions`, the name a definition's own task is recorded under.")
    step: str = Field(description="The workflow step asking, recorded in the ledger.")
    facts: dict[str, Any] = Field(
        default_factory=dict, description="Structured, already-validated inputs for the prompt."
    )
    untrusted: list[UntrustedText] = Field(default_factory=list)
    tenant: str | None = Field(None, description="For the tenant's daily spend cap, when set.")
    # A declarative definition's own task (docs/declarative-workflows.md): its instructions and the
    # schema its answer must fit travel in the request instead of living in prompts/ and schemas/.
    instructions: str | None = Field(None, max_length=8000, description="A definition's own task: what to do.")
    output_schema: dict[str, Any] | None = Field(None, description="With `instructions`: the JSON Schema the "
                                                                    "answer must fit.")


class InjectionFlag(BaseModel):
    source: str = Field(description="Which untrusted text matched.")
    rule: str
    excerpt: str = Field(description="The matched text, cut to at most 120 characters.")


class ValidationOutcome(BaseModel):
    valid: bool
    repaired: bool = False
    errors: list[str] = Field(default_factory=list)


class LlmCallRecord(BaseModel):
    """One ledger entry: everything an auditor needs to know about one LLM step."""

    step: str
    task: str
    provider: Literal["openai", "offline"]
    model_requested: str
    model_version: str
    prompt_template: str
    prompt_sha256: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempt: int = 1
    calls: int = Field(0, description="Model calls made: 0 when screening or the spend cap stopped the "
                                       "step, 2 after a repair.")
    decision: str | None = None
    confidence: float | None = None
    explanation: str | None = None
    injection_flags: list[InjectionFlag] = Field(default_factory=list)
    validation: ValidationOutcome


class LlmTaskResult(BaseModel):
    answer: dict[str, Any] | None = Field(None, description="The validated answer; None when review is forced.")
    record: LlmCallRecord
    needs_review: bool = False
    review_reasons: list[str] = Field(default_factory=list)


class LlmUsage(BaseModel):
    """A run's LLM ledger: every record, and the totals operators filter on."""

    records: list[LlmCallRecord] = Field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
