"""Incident routing policy: the shipped file, first match wins, and mistakes named by file and line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from policies.loader import PolicyError
from policies.routing import DEFAULT_POLICY, parse

ROUTES = """\
version: 1
routes:
  - name: payments-critical
    match: {service: payments, severity: critical}
    steps:
      - after: PT0S
        page:
          - name: primary
            via: [{channel: slack}, {channel: email, to: pay-primary@example.com}]
      - after: PT5M
        page:
          - name: secondary
            via: [{channel: email, to: pay-secondary@example.com}]
    repeat: 1
    remediation:
      webhook_url: https://automation.example.com/hooks/payments
  - name: default
    match: {}
    steps:
      - after: PT0S
        page:
          - name: on-call
            via: [{channel: email, to: oncall}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_the_shipped_policy_pages_on_call_by_email_and_the_webhook() -> None:
    route = parse(DEFAULT_POLICY).route_for({"severity": "critical", "service": "anything"})
    first = route.steps[0]
    assert route.name == "default" and first.after == timedelta(0)
    assert [(r.name, [t.channel for t in r.via]) for r in first.page] == [("on-call", ["email"]),
                                                                          ("platform-webhook", ["webhook"])]
    assert first.page[0].via[0].to == "oncall"


def test_the_first_route_whose_labels_all_match_wins(tmp_path: Path) -> None:
    policy = parse(write(tmp_path, ROUTES))

    assert policy.route_for({"service": "payments", "severity": "critical", "team": "x"}).name == "payments-critical"
    assert policy.route_for({"service": "payments", "severity": "warning"}).name == "default"
    assert policy.route_for({}).name == "default"
    route = policy.routes[0]
    assert route.remediation.approver_roles == ["incident_commander"]
    assert route.remediation.approval_timeout == timedelta(minutes=30)
    assert route.steps[1].after == timedelta(minutes=5)


MISTAKES = {
    "a duration that is not ISO 8601": (("after: PT5M", "after: five minutes"), 10, "does not match"),
    "an email without an address": (("{channel: email, to: pay-secondary@example.com}", "{channel: email}"), 13,
                                     "needs `to`"),
    "steps out of order": (("after: PT0S\n        page:\n          - name: primary",
                            "after: PT10M\n        page:\n          - name: primary"), 5, "in order of `after`"),
    "an unknown key": (("    repeat: 1\n", "    repeat: 1\n    escalate_to: boss\n"), 15, "'escalate_to' was unexpected"),
    "an address on a channel that has one destination": (("{channel: slack}", "{channel: slack, to: '#payments'}"), 9,
                                                          "`to` is for email"),
    "a last route that is not a catch-all": (("    match: {}\n", "    match: {team: sre}\n"), 18,
                                             "must match every incident"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_named_with_its_file_and_line(tmp_path: Path, mistake: str) -> None:
    (old, new), line, says = MISTAKES[mistake]
    assert old in ROUTES

    with pytest.raises(PolicyError) as error:
        parse(write(tmp_path, ROUTES.replace(old, new)))

    assert f"routing.yaml: line {line}: " in str(error.value) and says in str(error.value)
