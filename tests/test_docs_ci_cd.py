"""docs/ci-cd.md's pipeline jobs are meant to be pasted: each is valid YAML, and every `steward`
command in them is one the CLI accepts as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from steward.cli.main import build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci-cd.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)


def steward_commands(value) -> list[str]:
    """Every `steward ...` command in a job's scripts, whatever the CI calls its steps."""
    if isinstance(value, str):
        return [line.strip() for line in value.replace("\\\n", " ").splitlines() if line.strip().startswith("steward ")]
    if isinstance(value, dict):
        return [c for item in value.values() for c in steward_commands(item)]
    if isinstance(value, list):
        return [c for item in value for c in steward_commands(item)]
    return []


def test_every_pipeline_job_in_the_ci_cd_guide_is_yaml_and_its_steward_commands_parse():
    blocks = yaml_blocks()
    assert len(blocks) >= 4  # GitHub Actions and GitLab CI, for the gated deploy and the schedule
    commands = [command for block in blocks for command in steward_commands(yaml.safe_load(block))]
    assert any(c.startswith("steward runs start") and "--wait" in c for c in commands)
    assert any(c.startswith("steward schedules create") for c in commands)
    parser = build_parser()
    for command in commands:
        words = [w for w in shlex.split(command) if not w.startswith("$")][1:]  # shell variables aside
        parser.parse_args(words)  # exits 2, failing the test, on anything the CLI would refuse
