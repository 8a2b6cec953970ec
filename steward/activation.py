"""One-time activation tokens: the link a new customer's welcome e-mail carries.

A token is `<run id, base64url>.<32 random bytes, base64url>`. It is made inside the activity that
sends the e-mail and exists only there and in the message: what the run keeps (workflow history,
run details) is its SHA-256, and nothing else stores it. The run id in front lets the API find
the run the token belongs to without a lookup table; the random part is the credential. The
run accepts the token's digest once, before it expires (workflows/customer_onboarding.py).

Unlike action links (steward/action_links.py) these are not signed: a signature would make the
token verifiable without the run, but also usable more than once. The run is the one record of
whether it was used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

PATH = "/activate"
# A token longer than this is no token of ours: refused before any work.
MAX_TOKEN_LENGTH = 512
_SECRET_BYTES = 32


class InvalidActivationToken(ValueError):
    """Not a token Steward makes; the API answers it exactly as it answers a used one."""


def new_activation_token(run_id: str) -> str:
    prefix = base64.urlsafe_b64encode(run_id.encode()).decode().rstrip("=")
    return f"{prefix}.{secrets.token_urlsafe(_SECRET_BYTES)}"


def run_id_of(token: str) -> str:
    """The run a well-formed token names (which says nothing about whether the run accepts it)."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise InvalidActivationToken("not an activation token")
    prefix, secret = token.split(".")
    if not prefix or len(secret) < 40:
        raise InvalidActivationToken("not an activation token")
    try:
        return base64.urlsafe_b64decode(prefix + "=" * (-len(prefix) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidActivationToken("not an activation token") from None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def activation_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{PATH}/{token}"
