"""Paging through Temporal visibility, with page tokens only this API can mint.

Temporal's page tokens are opaque bytes; handed back garbage, the server answers with an error the
SDK keeps retrying, so a forged token could hold a request (and a worker thread of the server) for
many seconds. Tokens are therefore signed: an HMAC over the query and the raw token, with a key
derived from the platform secret. A token that was altered, forged, or reused with another query
(another filter, another tenant) is a 400 before Temporal sees it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client, WorkflowExecution

from api.errors import ApiError

MAC_BYTES = 16
# A list call that takes longer than this is a sick server: answer 503 rather than hang.
LIST_RPC_TIMEOUT = timedelta(seconds=10)


class PageTokens:
    def __init__(self, platform_secret: str) -> None:
        self._key = hmac.new(platform_secret.encode(), b"steward page token v1", hashlib.sha256).digest()

    def _mac(self, query: str, raw: bytes) -> bytes:
        return hmac.new(self._key, query.encode() + b"\x00" + raw, hashlib.sha256).digest()[:MAC_BYTES]

    def encode(self, raw: bytes | None, query: str) -> str | None:
        if not raw:
            return None
        return base64.urlsafe_b64encode(self._mac(query, raw) + raw).decode("ascii")

    def decode(self, token: str | None, query: str) -> bytes | None:
        if not token:
            return None
        try:
            blob = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        except (binascii.Error, UnicodeEncodeError):
            blob = b""
        mac, raw = blob[:MAC_BYTES], blob[MAC_BYTES:]
        if not raw or not hmac.compare_digest(mac, self._mac(query, raw)):
            raise ApiError(400, "bad_request", "next_page_token is not a token this API issued for this query",
                           [{"field": "next_page_token", "message": "not a valid page token for these filters"}])
        return raw


async def fetch_page(client: Client, tokens: PageTokens, query: str, page_size: int,
                     next_page_token: str | None) -> tuple[Sequence[WorkflowExecution], str | None]:
    """One page of executions matching `query`, and the token for the next page."""
    executions = client.list_workflows(query, page_size=page_size, next_page_token=tokens.decode(next_page_token, query),
                                       rpc_timeout=LIST_RPC_TIMEOUT)
    await executions.fetch_next_page()
    return executions.current_page or (), tokens.encode(executions.next_page_token, query)
