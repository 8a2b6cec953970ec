"""The alert rules and the dashboard: valid for Prometheus's own tools, and about metrics
Steward really has and documents."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import UNDER_CI, missing

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "steward-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "steward-alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "steward-dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"
METRIC = re.compile(r"\b((?:steward|temporal)_[a-z_]+?)(?:_bucket|_sum|_count)?\b")

promtool = shutil.which("promtool")
PROMTOOL_MISSING = "promtool not installed (tests/install-debian.sh, make test)"
needs_promtool = pytest.mark.skipif(promtool is None and not UNDER_CI, reason=PROMTOOL_MISSING)


def promtool_path() -> str:
    """promtool, or a skip here and a failure under CI (where make test installs it)."""
    return promtool or missing(PROMTOOL_MISSING)


@needs_promtool
def test_the_alert_rules_are_valid_prometheus_rules():
    result = subprocess.run([promtool_path(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout


@needs_promtool
def test_the_alerts_fire_when_their_unit_tests_say():
    result = subprocess.run([promtool_path(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def documented() -> set[str]:
    return set(re.findall(r"^\| `((?:steward|temporal)_[a-z_]+)`", OPERATIONS.read_text(), re.MULTILINE))


def named_in(text: str) -> set[str]:
    return {name.removesuffix("_total") + ("_total" if name.endswith("_total") else "") for name in METRIC.findall(text)}


def test_every_metric_the_rules_and_dashboard_use_is_documented():
    known = documented()
    expressions = RULES.read_text() + json.dumps([t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"]
                                                  for t in p["targets"]])
    used = {name for name in named_in(expressions) if name.startswith("steward_") or name.startswith("temporal_")}
    missing = {name for name in used if name not in known}
    assert not missing, f"used but not in docs/operations.md: {sorted(missing)}"


def test_every_metric_the_code_defines_is_documented():
    from steward import metric_names

    code = "\n".join(p.read_text() for folder in ("api", "activities", "workflows", "workers", "steward")
                     for p in (REPO / folder).rglob("*.py"))
    made = r'(?:Counter|Gauge|Histogram|create_counter|create_histogram_float|count)\(\s*"(steward_[a-z_]+)"'
    defined = set(re.findall(made, code)) | set(metric_names.HISTOGRAM_BUCKETS)
    known = {name.removesuffix("_total") for name in documented()}
    assert defined and not defined - known, sorted(defined - known)


def test_the_dashboard_is_grafana_json_with_a_prometheus_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "steward-overview" and dashboard["panels"]
    assert all(t["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] for t in p["targets"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
