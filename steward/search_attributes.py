"""The custom search attributes Steward sets on runs, so operators can filter in the Temporal UI.

Pure declarations: safe to import from workflow code. The embedded dev server registers every
key listed in ALL at start; a self-hosted cluster or Temporal Cloud needs them registered once
(docs/configuration.md shows the `temporal operator search-attribute create` command).
"""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

WORKFLOW_NAME = SearchAttributeKey.for_keyword("WorkflowName")
STAGE = SearchAttributeKey.for_keyword("Stage")
REQUESTED_BY = SearchAttributeKey.for_keyword("RequestedBy")
TENANT = SearchAttributeKey.for_keyword("Tenant")
APPROVAL_STATE = SearchAttributeKey.for_keyword("ApprovalState")
RISK_LEVEL = SearchAttributeKey.for_keyword("RiskLevel")
LLM_TOKENS = SearchAttributeKey.for_int("LlmTokens")
LLM_COST_USD = SearchAttributeKey.for_float("LlmCostUsd")
SEVERITY = SearchAttributeKey.for_keyword("Severity")
SERVICE = SearchAttributeKey.for_keyword("Service")
INCIDENT_STATE = SearchAttributeKey.for_keyword("IncidentState")

ALL: tuple[SearchAttributeKey, ...] = (
    WORKFLOW_NAME,
    STAGE,
    REQUESTED_BY,
    TENANT,
    APPROVAL_STATE,
    RISK_LEVEL,
    LLM_TOKENS,
    LLM_COST_USD,
    SEVERITY,
    SERVICE,
    INCIDENT_STATE,
)

# The names the `temporal` CLI uses for each indexed value type.
_CLI_TYPE_NAMES = {
    "KEYWORD": "Keyword",
    "TEXT": "Text",
    "INT": "Int",
    "DOUBLE": "Double",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


def cli_declarations() -> list[str]:
    """`Name=Type` pairs for `temporal server start-dev --search-attribute`."""
    return [f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type.name]}" for key in ALL]


def for_new_run(workflow: str, tenant: str, requested_by: str) -> TypedSearchAttributes:
    """What every run carries from its start: what it is, whose it is, and its first stage."""
    return TypedSearchAttributes([
        SearchAttributePair(WORKFLOW_NAME, workflow),
        SearchAttributePair(TENANT, tenant),
        SearchAttributePair(REQUESTED_BY, requested_by),
        SearchAttributePair(STAGE, "started"),
    ])
