"""document-fingerprint: record SHA-256 digests and sizes of a set of documents.

The smallest useful Steward workflow: evidence for an audit trail ("this is exactly the text we
reviewed"), and a template to copy when adding a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, field_validator
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

with workflow.unsafe.imports_passed_through():
    from activities.fingerprint import (
        Document,
        DocumentFingerprint,
        FingerprintDocumentsInput,
        fingerprint_documents,
        manifest_sha256,
    )

# Hashing 50 documents of 256 KiB takes well under a second; 30 s leaves room for a busy worker.
FINGERPRINT_TIMEOUT = timedelta(seconds=30)
# Pure computation: a failure is a crashed worker, worth a few quick retries, not many.
FINGERPRINT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


class DocumentFingerprintInput(BaseModel):
    documents: list[Document] = Field(min_length=1, max_length=50)
    reference: str | None = Field(
        None, max_length=100, description="Caller's reference, shown in the run's summary."
    )

    @field_validator("documents")
    @classmethod
    def names_are_unique(cls, documents: list[Document]) -> list[Document]:
        names = [d.name for d in documents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"document names must be unique; repeated: {', '.join(duplicates)}")
        return documents


class DocumentFingerprintOutput(BaseModel):
    documents: list[DocumentFingerprint]
    manifest_sha256: str


@workflow.defn(name="document-fingerprint")
class DocumentFingerprintWorkflow:
    @workflow.run
    async def run(self, request: DocumentFingerprintInput) -> DocumentFingerprintOutput:
        enter_stage("fingerprinting", f"Fingerprinting {len(request.documents)} document(s)")
        result = await workflow.execute_activity(
            fingerprint_documents,
            FingerprintDocumentsInput(documents=request.documents),
            start_to_close_timeout=FINGERPRINT_TIMEOUT,
            retry_policy=FINGERPRINT_RETRY,
        )
        enter_stage("done")
        return DocumentFingerprintOutput(
            documents=result.fingerprints, manifest_sha256=manifest_sha256(result.fingerprints)
        )


def _summary(request: DocumentFingerprintInput) -> str:
    ref = f" ({request.reference})" if request.reference else ""
    return f"Fingerprint {len(request.documents)} document(s){ref}"


SPEC = WorkflowSpec(
    name="document-fingerprint",
    description="Record SHA-256 digests, sizes and word counts of documents for an audit trail.",
    workflow=DocumentFingerprintWorkflow,
    input_model=DocumentFingerprintInput,
    output_model=DocumentFingerprintOutput,
    activities=(fingerprint_documents,),
    summary=_summary,
    sample_input={
        "documents": [
            {"name": "policy.txt", "text": "Identity must be verified before onboarding.\n"},
            {"name": "procedure.md", "content_type": "text/markdown", "text": "# Steps\n1. Check ID\n2. Record"},
        ],
        "reference": "sample",
    },
)
