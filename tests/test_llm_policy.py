"""The output policy file: validated at load, and enforced on answers."""

from __future__ import annotations

import pytest

from policies.loader import PolicyError
from policies.output import load, parse


def test_shipped_policy_loads_and_limits_labels_and_size():
    policy = load()
    good = {"risk_level": "low", "decision": "clear", "confidence": 0.9, "reasons": [], "explanation": "ok"}
    assert policy.violations("risk-classification", good) == []
    assert policy.violations("risk-classification", {**good, "decision": "approve"}) == [
        "decision 'approve' is not one of clear, review"]
    long = {**good, "explanation": "x" * 5000}
    assert "the policy allows 4000" in policy.violations("risk-classification", long)[0]


def test_task_rules_add_to_the_default_deny_list():
    policy = load()
    leaked = {"summary": "key sk-" + "A" * 30}
    assert policy.violations("summary", leaked) == ["answer matches denied pattern 'secret-like-token'"]
    assert "guarantee-language" not in " ".join(policy.violations("summary", {"summary": "guaranteed"}))


@pytest.mark.parametrize(("text", "message"), [
    ("version: 1\ndefaults: {max_chars: 0}\n", "defaults/max_chars"),
    ("version: 2\ndefaults: {}\n", "at version"),
    ("version: 1\ndefaults: {unknown_rule: 1}\n", "unknown_rule"),
    ("version: 1\ndefaults:\n  deny_patterns: [{name: bad, pattern: '(unclosed'}]\n", "not a valid regex"),
    ("version: 1\ndefaults: [\n", "line 3"),
])
def test_broken_policy_is_refused_naming_the_file_and_problem(tmp_path, text, message):
    path = tmp_path / "llm-output.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        parse(path)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_worker_refuses_to_start_with_a_broken_policy_naming_the_file(tmp_path):
    import os
    import subprocess
    import sys

    broken = tmp_path / "llm-output.yaml"
    broken.write_text("version: 1\ndefaults: {max_chars: -5}\n")
    env = {**os.environ, "STEWARD_LLM_OUTPUT_POLICY": str(broken), "STEWARD_TEMPORAL_PORT": "9"}
    result = subprocess.run([sys.executable, "-m", "steward", "worker"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert str(broken) in result.stderr and "defaults/max_chars" in result.stderr
    assert "Traceback" not in result.stderr
