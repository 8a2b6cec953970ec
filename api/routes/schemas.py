"""JSON Schemas of what people write for Steward, for editors to validate as they type.

Open like /openapi.json: a format is no secret, and yaml-language-server fetches the schema named
in a file's `# yaml-language-server: $schema=` line without credentials.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request

from workflows.definition import DefinitionFile

router = APIRouter(prefix="/v1/schemas", tags=["schemas"])
DEFINITION_SCHEMA = "workflow-definition.json"


@cache
def definition_schema() -> dict[str, Any]:
    schema = DefinitionFile.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": "Steward declarative workflow definition",
            "description": "A workflow: its input, its steps and how they depend on each other "
                           "(docs/declarative-workflows.md)."}


@router.get(f"/{DEFINITION_SCHEMA}", response_model=dict[str, Any])
async def workflow_definition_schema(request: Request) -> dict[str, Any]:
    """The JSON Schema of a declarative workflow definition file."""
    return {**definition_schema(), "$id": str(request.url)}
