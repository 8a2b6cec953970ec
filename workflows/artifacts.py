"""Recording a run's artifacts, so GET /v1/runs/{id} lists them and serves them.

The bytes live in the artifact store (activities/artifacts/store.py); the run keeps only each
artifact's name, content type, size and SHA-256, in its memo.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.artifacts.store import ArtifactRef

MEMO_KEY = "artifacts"


def record_artifacts(refs: list[ArtifactRef]) -> None:
    """Make `refs` the run's artifacts (replacing any recorded before under the same names)."""
    recorded = {r["name"]: r for r in workflow.memo_value(MEMO_KEY, default=[]) or []}
    recorded.update({ref.name: ref.model_dump(mode="json") for ref in refs})
    workflow.upsert_memo({MEMO_KEY: list(recorded.values())})
