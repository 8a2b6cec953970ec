"""Loading a policy file and checking it against its JSON Schema, with errors a person can fix:
the file, the line and the problem, for YAML syntax, schema violations and a policy's own checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

POLICY_DIR = Path(__file__).parent


# A problem found in a policy file: (path in the document, message, the schema error if it is one).
Problem = tuple[tuple[Any, ...], str, ValidationError | None]


class PolicyError(Exception):
    """A policy file is missing, unparsable or breaks its schema; the message names the file."""


def load_policy(path: Path, schema_path: Path) -> dict[str, Any]:
    """The document at `path`, valid against the schema; PolicyError naming file and line if not."""
    try:
        text = path.read_text()
        document = yaml.safe_load(text)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    validator = Draft202012Validator(json.loads(schema_path.read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise policy_error(path, [(tuple(e.absolute_path), e.message, e) for e in errors], text=text)
    return document


def policy_error(path: Path, problems: list[Problem], *, text: str | None = None, hint: str = "") -> PolicyError:
    """One PolicyError listing each problem as `<file>: line <n>: at <path>: <message>`."""
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
