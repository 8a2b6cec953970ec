"""Tokens carry exactly the claims an identity provider would: sub, roles, tenant, iat, exp."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from pydantic import ValidationError

from steward.identity import InvalidToken, Principal, issue_token, parse_ttl, verify_token

SECRET = "identity-test-secret-0123456789abcdef0123456789"


def test_issued_token_round_trips_to_the_same_principal():
    principal = Principal(sub="alice", roles=("approver", "auditor"), tenant="acme")
    token = issue_token(SECRET, principal, timedelta(hours=8), now=1_700_000_000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims == {"sub": "alice", "roles": ["approver", "auditor"], "tenant": "acme",
                      "iat": 1_700_000_000, "exp": 1_700_028_800}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_verify_rejects_a_token_for_another_secret():
    token = issue_token(SECRET, Principal(sub="a", roles=("admin",), tenant="acme"), timedelta(minutes=1))
    with pytest.raises(InvalidToken):
        verify_token(token, SECRET + "x")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("8h", 28800), ("7d", 604800)])
def test_ttl_accepts_seconds_minutes_hours_days(text, seconds):
    assert parse_ttl(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["8", "8 hours", "-1h", "0m", "31d", ""])
def test_ttl_refuses_malformed_zero_and_too_long(text):
    with pytest.raises(ValueError):
        parse_ttl(text)


@pytest.mark.parametrize("field", [{"sub": "has space"}, {"tenant": "a'b"}, {"roles": ()}])
def test_principal_refuses_identifiers_unsafe_for_queries(field):
    with pytest.raises(ValidationError):
        Principal(**{"sub": "alice", "roles": ("operator",), "tenant": "acme", **field})
