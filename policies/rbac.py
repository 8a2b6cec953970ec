"""The role-based access policy: which roles may take which actions (policies/rbac.yaml).

A caller holds the union of their roles' grants; a deny in any of them wins over every allow,
and whatever no role allows is denied. Actions are strings such as `runs:cancel`; a pattern is
an action, a family wildcard (`runs:start:*`, `runs:*`) or `*`. docs/security.md lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from policies.loader import POLICY_DIR, PolicyError, load_policy, policy_error
from steward.logs import get_logger

if TYPE_CHECKING:
    from steward.settings import Settings

DEFAULT_POLICY = POLICY_DIR / "rbac.yaml"
SCHEMA = POLICY_DIR / "rbac.schema.json"
WILDCARD = "*"

# Every action the platform checks. A policy naming anything else is refused at start-up: a typo
# such as `runs:cancle` would otherwise grant nothing, silently.
ACTIONS = frozenset({
    "workflows:read",
    "runs:read",
    "runs:cancel",
    "runs:signal",
    "approvals:decide",
    "approvals:escalated",
    "artifacts:read",
    "audit:read",
    "hooks:alertmanager",
    "incidents:respond",
    "codec:decode",
    "metrics:read",
    "subscriptions:manage",
    "schedules:manage",
})
# Actions with a parameter: runs:start:<workflow name>.
PARAMETERISED_ACTIONS = frozenset({"runs:start:"})

log = get_logger(__name__)


def is_known(pattern: str) -> bool:
    """True when `pattern` names, or its wildcard covers, at least one action the platform checks."""
    if pattern == WILDCARD or pattern in ACTIONS:
        return True
    if any(pattern.startswith(prefix) and len(pattern) > len(prefix) for prefix in PARAMETERISED_ACTIONS):
        return True
    if pattern.endswith(":" + WILDCARD):
        prefix = pattern[:-1]
        return any(action.startswith(prefix) for action in ACTIONS | PARAMETERISED_ACTIONS)
    return False


def matches(pattern: str, action: str) -> bool:
    if pattern == WILDCARD:
        return True
    if pattern.endswith(":" + WILDCARD):
        return action.startswith(pattern[:-1])
    return pattern == action


@dataclass(frozen=True)
class Role:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class RbacPolicy:
    roles: dict[str, Role]

    def allows(self, roles: Iterable[str], action: str) -> bool:
        held = [self.roles[name] for name in roles if name in self.roles]
        if any(matches(pattern, action) for role in held for pattern in role.deny):
            return False
        return any(matches(pattern, action) for role in held for pattern in role.allow)

    def missing(self, roles: Iterable[str], actions: Iterable[str]) -> list[str]:
        """The actions of `actions` that `roles` may not take, in order."""
        roles = tuple(roles)
        return [action for action in actions if not self.allows(roles, action)]


def parse(path: Path) -> RbacPolicy:
    document = load_policy(path, SCHEMA)
    problems = [
        (("roles", name, kind, index), f"{pattern!r} is not a known action", None)
        for name, raw in document["roles"].items()
        for kind in ("allow", "deny")
        for index, pattern in enumerate(raw.get(kind, ()))
        if not is_known(pattern)
    ]
    if problems:
        raise policy_error(path, problems, hint=f" (known actions: {', '.join(_known_listing())})")
    return RbacPolicy(roles={
        name: Role(allow=tuple(raw.get("allow", ())), deny=tuple(raw.get("deny", ())),
                   description=raw.get("description", ""))
        for name, raw in document["roles"].items()
    })


@cache
def load(path: Path | None = None) -> RbacPolicy:
    """The policy at `path` (the shipped one when None), parsed and validated once per process."""
    return parse(path or DEFAULT_POLICY)


def check_startup(settings: Settings) -> RbacPolicy:
    """Load the configured policy now, so a broken one stops start-up naming file, line and problem."""
    policy = load(settings.rbac_policy)
    # A role map naming a role the policy lacks is a typo that would refuse every such caller.
    unknown = sorted({role for roles in (settings.jwt_role_map or {}).values() for role in roles} - set(policy.roles))
    if unknown:
        raise PolicyError(f"STEWARD_JWT_ROLE_MAP maps to roles the RBAC policy does not have: {', '.join(unknown)} "
                          f"(it has {', '.join(sorted(policy.roles))})")
    log.info("rbac policy loaded", policy=str(settings.rbac_policy or DEFAULT_POLICY), roles=sorted(policy.roles))
    return policy


# --- Errors a person can fix ---------------------------------------------------------------


def _known_listing() -> list[str]:
    return sorted(ACTIONS) + [prefix + "<workflow>" for prefix in sorted(PARAMETERISED_ACTIONS)]
