"""Loading a policy file and checking it against its JSON Schema, with errors a person can fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

POLICY_DIR = Path(__file__).parent


class PolicyError(Exception):
    """A policy file is missing, unparsable or breaks its schema; the message names the file."""


def load_policy(path: Path, schema_path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    validator = Draft202012Validator(json.loads(schema_path.read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(f"at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)
        raise PolicyError(f"{path}: does not match {schema_path.name}: {problems}")
    return document
