"""Fingerprinting documents: digests and sizes an auditor can recompute later."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field
from temporalio import activity


class Document(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    content_type: str = Field("text/plain", max_length=100)
    text: str = Field(max_length=262_144, description="The document's text (at most 256 KiB).")


class FingerprintDocumentsInput(BaseModel):
    documents: list[Document]


class DocumentFingerprint(BaseModel):
    name: str
    content_type: str
    sha256: str
    bytes: int
    words: int
    lines: int


class FingerprintDocumentsOutput(BaseModel):
    fingerprints: list[DocumentFingerprint]


@activity.defn(name="fingerprint-documents")
async def fingerprint_documents(request: FingerprintDocumentsInput) -> FingerprintDocumentsOutput:
    fingerprints = []
    for doc in request.documents:
        data = doc.text.encode("utf-8")
        fingerprints.append(
            DocumentFingerprint(
                name=doc.name,
                content_type=doc.content_type,
                sha256=hashlib.sha256(data).hexdigest(),
                bytes=len(data),
                words=len(doc.text.split()),
                lines=doc.text.count("\n") + (1 if doc.text and not doc.text.endswith("\n") else 0),
            )
        )
    activity.logger.info("documents fingerprinted", extra={"documents": len(fingerprints)})
    return FingerprintDocumentsOutput(fingerprints=fingerprints)


def manifest_sha256(fingerprints: list[DocumentFingerprint]) -> str:
    """One digest over every document's name and digest, independent of submission order."""
    lines = sorted(f"{f.name}\t{f.sha256}" for f in fingerprints)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
