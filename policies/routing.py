"""Incident routing: which ladder pages whom, on which channels, for which incident
(policies/incident-routing.yaml, or STEWARD_INCIDENT_ROUTING).

The file is checked against its JSON Schema and then for what a schema cannot say (steps in
order, an address for every e-mail, a catch-all last route), at start-up, naming file and line.
`route_for(labels)` picks the first route whose `match` labels all equal the incident's.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from policies.loader import POLICY_DIR, load_policy, policy_error
from steward.logs import get_logger

if TYPE_CHECKING:
    from steward.settings import Settings

DEFAULT_POLICY = POLICY_DIR / "incident-routing.yaml"
SCHEMA = POLICY_DIR / "incident-routing.schema.json"
ONCALL = "oncall"  # `to: oncall` is STEWARD_ONCALL_EMAIL
DEFAULT_APPROVER_ROLES = ["incident_commander"]
DEFAULT_APPROVAL_TIMEOUT = timedelta(minutes=30)

log = get_logger(__name__)


class RouteTarget(BaseModel):
    channel: Literal["email", "slack", "webhook"]
    to: str | None = None


class Recipient(BaseModel):
    name: str
    via: list[RouteTarget]


class RouteStep(BaseModel):
    after: timedelta
    page: list[Recipient]


class Remediation(BaseModel):
    webhook_url: str
    approver_roles: list[str] = Field(default_factory=lambda: list(DEFAULT_APPROVER_ROLES))
    approval_timeout: timedelta = DEFAULT_APPROVAL_TIMEOUT


class Route(BaseModel):
    name: str
    match: dict[str, str] = Field(default_factory=dict)
    steps: list[RouteStep]
    repeat: int = 0
    repeat_every: timedelta | None = None
    auto_resolve_after: timedelta | None = None
    remediation: Remediation | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match.items())


class RoutingPolicy(BaseModel):
    routes: list[Route]

    def route_for(self, labels: dict[str, str]) -> Route:
        # The last route matches everything (parse checks it), so there always is one.
        return next(route for route in self.routes if route.matches(labels))


def parse(path: Path) -> RoutingPolicy:
    document = load_policy(path, SCHEMA)
    policy = RoutingPolicy.model_validate(document)
    problems = []
    for r, route in enumerate(policy.routes):
        afters = [step.after for step in route.steps]
        if afters != sorted(afters):
            problems.append((("routes", r, "steps"), "steps must be in order of `after`", None))
        for s, step in enumerate(route.steps):
            for p, recipient in enumerate(step.page):
                for v, target in enumerate(recipient.via):
                    if target.channel == "email" and not target.to:
                        problems.append((("routes", r, "steps", s, "page", p, "via", v),
                                         "an email target needs `to` (an address, or oncall)", None))
                    if target.channel != "email" and target.to:
                        problems.append((("routes", r, "steps", s, "page", p, "via", v, "to"),
                                         f"`to` is for email; the {target.channel} channel has one destination", None))
        if route.repeat_every is not None and route.repeat_every <= timedelta(0):
            problems.append((("routes", r, "repeat_every"), "repeat_every must be longer than zero", None))
    if policy.routes[-1].match:
        problems.append((("routes", len(policy.routes) - 1, "match"),
                         "the last route must match every incident (match: {})", None))
    if problems:
        raise policy_error(path, problems)
    return policy


@cache
def load(path: Path | None = None) -> RoutingPolicy:
    """The policy at `path` (the shipped one when None), parsed and checked once per process."""
    return parse(path or DEFAULT_POLICY)


def check_startup(settings: Settings) -> RoutingPolicy:
    """Load the configured policy now, so a broken one stops start-up naming file, line and problem."""
    policy = load(settings.incident_routing)
    log.info("incident routing loaded", policy=str(settings.incident_routing or DEFAULT_POLICY),
             routes=[route.name for route in policy.routes])
    return policy
