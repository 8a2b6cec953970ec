"""The role-based access policy: which roles may take which actions (policies/rbac.yaml).

A caller holds the union of their roles' grants; a deny in any of them wins over every allow,
and whatever no role allows is denied. Actions are strings such as `runs:cancel`; a pattern is
an action, a family wildcard (`runs:start:*`, `runs:*`) or `*`. docs/security.md lists them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

from policies.loader import POLICY_DIR, PolicyError, load_policy
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
    "approvals:decide",
    "approvals:escalated",
    "artifacts:read",
    "audit:read",
    "hooks:alertmanager",
    "codec:decode",
})
# Actions with a parameter: runs:start:<workflow name>.
PARAMETERISED_ACTIONS = frozenset({"runs:start:"})

# A problem found in a policy file: (path in the document, message, the schema error if it is one).
Problem = tuple[tuple[Any, ...], str, ValidationError | None]

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
    try:
        document = load_policy(path, SCHEMA)
    except PolicyError as exc:
        # The loader names the file (and the line, for YAML syntax); add lines to schema errors.
        raise (_located_schema_error(path) or exc) from None
    problems = [
        (("roles", name, kind, index), f"{pattern!r} is not a known action", None)
        for name, raw in document["roles"].items()
        for kind in ("allow", "deny")
        for index, pattern in enumerate(raw.get(kind, ()))
        if not is_known(pattern)
    ]
    if problems:
        raise _policy_error(path, problems, hint=f" (known actions: {', '.join(_known_listing())})")
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
    log.info("rbac policy loaded", policy=str(settings.rbac_policy or DEFAULT_POLICY), roles=sorted(policy.roles))
    return policy


# --- Errors a person can fix: file, line, problem ----------------------------------------------


def _known_listing() -> list[str]:
    return sorted(ACTIONS) + [prefix + "<workflow>" for prefix in sorted(PARAMETERISED_ACTIONS)]


def _located_schema_error(path: Path) -> PolicyError | None:
    """The schema violations of `path`, each with its line; None when the file is not even YAML."""
    try:
        text = path.read_text()
        document = yaml.safe_load(text)
    except (OSError, yaml.YAMLError):
        return None
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return None
    return _policy_error(path, [(tuple(e.absolute_path), e.message, e) for e in errors], text=text)


def _policy_error(path: Path, problems: list[Problem], *, text: str | None = None, hint: str = "") -> PolicyError:
    root = yaml.compose(text if text is not None else path.read_text(), Loader=yaml.SafeLoader)
    lines = []
    for json_path, message, error in problems:
        line = _line_of(root, json_path, error)
        where = "/".join(map(str, json_path)) or "(top)"
        lines.append(f"{path}: line {line}: at {where}: {message}")
    return PolicyError("; ".join(lines) + hint)


def _line_of(root: yaml.Node | None, json_path: Iterable[Any], error: ValidationError | None) -> int:
    """The 1-based line of the node at `json_path`; for an unexpected key, that key's line."""
    node = root
    if node is None:
        return 1
    line = node.start_mark.line
    for step in json_path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == step), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line
        else:
            break
    if error is not None and isinstance(node, yaml.MappingNode):
        if error.validator == "additionalProperties":
            expected = set(error.schema.get("properties", {}))
            unexpected = [key for key, _ in node.value if key.value not in expected]
        else:  # a key breaking propertyNames is reported as the error's instance
            unexpected = [key for key, _ in node.value if key.value == error.instance]
        if unexpected:
            return unexpected[0].start_mark.line + 1
    return line + 1
