"""The custom search attributes Steward sets on runs, so operators can filter in the Temporal UI.

Pure declarations, and the pure functions that spell the approver inbox's values the same way in
workflows and in the API: safe to import from workflow code. The embedded dev server registers
every key listed in ALL when it creates its database; a self-hosted cluster or Temporal Cloud
needs them registered once, and again for a key added later (docs/configuration.md shows the
`temporal operator search-attribute create` command, docs/deploy.md when to run it).
"""

import hashlib
import re
from collections.abc import Iterable

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
# Who may decide a run's pending approvals, so the approver's inbox is one visibility query
# (`decider_ticket`, `inbox_filter`): tickets of the pending approvals, and personal tickets of
# people who voted on some but not all of them.
APPROVAL_DECIDERS = SearchAttributeKey.for_keyword_list("ApprovalDeciders")
# Who may not use the generic tickets: the requester (separation of duties) and whoever voted.
APPROVAL_EXCLUDED = SearchAttributeKey.for_keyword_list("ApprovalExcluded")

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
    APPROVAL_DECIDERS,
    APPROVAL_EXCLUDED,
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


# --- the approver's inbox ---------------------------------------------------------------------
# Role and group names come from tokens and workflow code, unchecked: a name outside this charset
# (which needs no quoting in a visibility query) is replaced by a digest of it, so a query never
# carries a character it would have to escape, and "|" and "/" stay separators.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9._@:-]{1,128}$")
# Subjects are checked against steward.claims.SUBJECT_PATTERN, which allows "|" (Auth0) but no "/".
_PLAIN_SUBJECT = re.compile(r"^[A-Za-z0-9._@:|-]{1,128}$")


def _plain(name: str, pattern: re.Pattern[str]) -> str:
    return name if pattern.match(name) else "#" + hashlib.sha256(name.encode()).hexdigest()[:32]


def decider_ticket(role: str, group: str | None) -> str:
    """What holding `role` (and membership of `group`, when the approval names one) looks like in
    ApprovalDeciders: `approver`, or `approver|kyc-team`."""
    plain_role = _plain(role, _PLAIN_NAME)
    return plain_role if group is None else f"{plain_role}|{_plain(group, _PLAIN_NAME)}"


def personal_ticket(sub: str, ticket: str) -> str:
    """A ticket only `sub` may use: `bob/approver`. Tickets never hold "/", subjects never do."""
    return f"{_plain(sub, _PLAIN_SUBJECT)}/{ticket}"


def excluded_subject(sub: str) -> str:
    return _plain(sub, _PLAIN_SUBJECT)


def caller_tickets(roles: Iterable[str], groups: Iterable[str]) -> list[str]:
    """Every ticket a caller holds: each role alone, and each role with each of their groups."""
    memberships = (None, *dict.fromkeys(groups))
    return [decider_ticket(role, group) for role in dict.fromkeys(roles) for group in memberships]


def inbox_filter(sub: str, roles: Iterable[str], groups: Iterable[str]) -> str:
    """The visibility clause matching runs with a pending approval this caller may decide, exactly
    as the approval's own validator would judge roles, group, requester and earlier votes."""
    tickets = caller_tickets(roles, groups)
    generic = ", ".join(f"'{t}'" for t in tickets)
    personal = ", ".join(f"'{personal_ticket(sub, t)}'" for t in tickets)
    deciders, excluded = APPROVAL_DECIDERS.name, APPROVAL_EXCLUDED.name
    # A KeywordList `!=` is "does not contain"; SQL stores an unset list as NULL, which `!=` alone
    # would not match.
    return (f"(({deciders} IN ({generic}) AND ({excluded} IS NULL OR {excluded} != '{excluded_subject(sub)}'))"
            f" OR {deciders} IN ({personal}))")
