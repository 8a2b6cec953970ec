"""The benchmark's step: a little real work per call, so the figures measure the platform's
overhead (history, task dispatch, API) rather than activity code."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel
from temporalio import activity


class BenchmarkStepInput(BaseModel):
    step: int
    payload: str


class BenchmarkStepOutput(BaseModel):
    digest: str


@activity.defn(name="benchmark-step")
async def benchmark_step(request: BenchmarkStepInput) -> BenchmarkStepOutput:
    digest = hashlib.sha256(f"{request.step}:{request.payload}".encode()).hexdigest()
    return BenchmarkStepOutput(digest=digest)
