"""The embedded Temporal UI, served under the API at /ui/, on the origin of the /codec endpoint.

`steward up` starts the UI with `--ui-public-path /ui` (its pages, assets and own API all live
under /ui/) and `--ui-codec-endpoint /codec` (steward/devserver.py). Served from here, the UI and
the codec endpoint share one origin, so the UI's codec calls are same-origin and the browser sends
the operator's /codec session cookie with them by itself (the UI leaves fetch's credentials mode
at its default, same-origin, unless "include cross-origin credentials" is on). Decryption stays
the codec endpoint's to grant: without a session its calls are refused and the UI shows ciphertext.

The UI itself has no sign-in, and its API can start, signal, reset and terminate any run. So the
proxy serves it exactly as far as the dev server does, which listens on loopback: to browsers on
this machine, under a loopback host name (a rebinding DNS name pointing at 127.0.0.1 is refused).
It forwards nothing of Steward's credentials (Authorization, the codec cookie), only the UI's own
CSRF cookie, and only ever to the embedded UI's port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import re
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from api.deps import SettingsDep
from api.errors import ApiError
from steward.devserver import UI_PUBLIC_PATH
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

# The UI's double-submit CSRF cookie (its JavaScript copies it into X-CSRF-TOKEN): the one cookie
# the UI server reads. Everything else the browser holds for the API's origin stays here.
UI_COOKIES = ("_csrf",)
# Credentials of Steward's (and of the UI's own sign-in, which the dev server does not enable),
# the hop-by-hop headers of this connection, and what names this hop's client or host.
_DROPPED_REQUEST_HEADERS = frozenset({
    "authorization", "authorization-extras", "proxy-authorization", "cookie", "host", "content-length",
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
    # Answers come back decoded (httpx decodes them), so pages can be read for their script hashes.
    "accept-encoding",
})
_DROPPED_RESPONSE_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "content-encoding", "content-length", "set-cookie", "server", "date",
    # Set below, the same on every answer.
    "x-content-type-options", "referrer-policy", "content-security-policy",
})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# The UI's boot script is inline; its own CSP (a hash of it) is off under a public path
# ("CSP IS DISABLED WHEN USING PUBLIC PATH!"), so the proxy puts one back, as strict.
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
_COOKIE_PATH = re.compile(r";\s*path=[^;]*", re.IGNORECASE)
# SvelteKit names these files after their content: a browser may keep them (the UI sends no cache
# headers, so a page load otherwise fetches its ~150 scripts again).
_IMMUTABLE_ASSETS = f"{UI_PUBLIC_PATH}/_app/immutable/"
# Pages and API answers may stream or long-poll: no read deadline; the browser closing ends them.
UPSTREAM_TIMEOUT = httpx.Timeout(10.0, read=None)


@contextlib.asynccontextmanager
async def _upstream_client(app: FastAPI) -> AsyncIterator[None]:
    # trust_env=False: a loopback call must never go out through the machine's HTTP proxy.
    async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, trust_env=False, follow_redirects=False) as http:
        app.state.ui_upstream = http
        yield


router = APIRouter(prefix=UI_PUBLIC_PATH, tags=["ui"], include_in_schema=False, lifespan=_upstream_client)

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _from_this_machine(request: Request) -> bool:
    client = request.client.host if request.client else ""
    server = (request.scope.get("server") or ("",))[0]
    try:
        loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False
    return loopback or client == server


def _host_name(request: Request) -> str:
    try:
        return httpx.URL(f"http://{request.headers.get('host', '')}/").host
    except httpx.InvalidURL:
        return ""


def _check_reach(request: Request, settings: Settings) -> None:
    if not settings.uses_embedded_temporal:
        raise ApiError(404, "ui_not_embedded",
                       "Steward uses an external Temporal; open that cluster's own UI, configured to decrypt "
                       "through this API's /codec (docs/security.md#the-codec-endpoint)")
    if not _from_this_machine(request):
        raise ApiError(403, "ui_local_only",
                       "the embedded Temporal UI has no sign-in of its own and is served to this machine only; "
                       "run Temporal with its own UI behind your sign-in for a shared deployment")
    server = (request.scope.get("server") or ("",))[0]
    if _host_name(request) not in _LOOPBACK_NAMES | {settings.api_host, server}:
        raise ApiError(403, "ui_local_only", "open the Temporal UI under a loopback address, e.g. "
                                             f"{settings.operator_ui_url}")


def _upstream_request(request: Request, settings: Settings, body: bytes) -> httpx.Request:
    # The raw path keeps the UI's own escaping: a workflow id holding `/` travels as %2F.
    path = request.scope.get("raw_path") or request.url.path.encode()
    url = httpx.URL(f"http://127.0.0.1:{settings.ui_port}{path.decode('latin-1')}",
                    query=request.scope.get("query_string", b""))
    headers = [(name, value) for name, value in request.headers.items() if name not in _DROPPED_REQUEST_HEADERS]
    cookies = "; ".join(f"{name}={value}" for name, value in request.cookies.items() if name in UI_COOKIES)
    if cookies:
        headers.append(("cookie", cookies))
    return request.app.state.ui_upstream.build_request(request.method, url, headers=headers, content=body)


def _response_headers(upstream: httpx.Response) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in upstream.headers.multi_items()
               if name.lower() not in _DROPPED_RESPONSE_HEADERS]
    # The UI sets its CSRF cookie for path /: here it belongs to /ui only, not the whole API origin.
    headers += [("set-cookie", _COOKIE_PATH.sub("", value) + f"; Path={UI_PUBLIC_PATH}")
                for value in upstream.headers.get_list("set-cookie")]
    headers += [
        ("x-content-type-options", "nosniff"),
        # UI addresses name namespaces and workflow ids: they stay on this origin.
        ("referrer-policy", "same-origin"),
    ]
    location = upstream.headers.get("location", "")
    upstream_origin = f"http://127.0.0.1:{upstream.request.url.port}"
    if location.startswith(upstream_origin):
        headers = [(n, v) for n, v in headers if n.lower() != "location"]
        headers.append(("location", location[len(upstream_origin):] or "/"))
    return headers


async def _disconnected(request: Request) -> None:
    # The body has been read: the next message is the browser going away.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _answer_unless_gone(request: Request, outgoing: httpx.Request) -> httpx.Response | None:
    """The UI server's answer, or None once the browser has gone away first: the UI long-polls
    (a run's history waits for new events), and a poll nobody waits for would hold the API's
    shutdown until it ends. Streams are Starlette's to end: it stops them on a disconnect."""
    http: httpx.AsyncClient = request.app.state.ui_upstream
    answering = asyncio.ensure_future(http.send(outgoing, stream=True))
    leaving = asyncio.ensure_future(_disconnected(request))
    await asyncio.wait({answering, leaving}, return_when=asyncio.FIRST_COMPLETED)
    leaving.cancel()
    if not answering.done():
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
        return None
    return answering.result()


def _page_policy(page: bytes) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                      for script in _INLINE_SCRIPT.findall(page))
    # connect-src 'self': the UI's API and the codec endpoint are both this origin; decrypted
    # payloads cannot be sent anywhere else from the page.
    return (f"script-src 'strict-dynamic' {hashes}; object-src 'none'; base-uri 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'")


@router.api_route("", methods=_METHODS)
@router.api_route("/{path:path}", methods=_METHODS)
async def embedded_ui(request: Request, settings: SettingsDep) -> Response:
    """The embedded Temporal UI's pages, assets and API, streamed from its port."""
    _check_reach(request, settings)
    outgoing = _upstream_request(request, settings, await request.body())
    try:
        upstream = await _answer_unless_gone(request, outgoing)
    except httpx.HTTPError as exc:
        log.warning("temporal ui unreachable", error=type(exc).__name__, ui_port=settings.ui_port)
        raise ApiError(502, "ui_unavailable", "the embedded Temporal UI is not answering; is Temporal up?",
                       headers={"Retry-After": "5"}) from None
    if upstream is None:
        return Response(status_code=499)  # nobody is left to read it
    headers = _response_headers(upstream)
    if upstream.headers.get("content-type", "").startswith("text/html"):
        # Pages are small: read whole, to put the policy for their inline script on them.
        try:
            page = await upstream.aread()
        finally:
            await upstream.aclose()
        response = Response(page, status_code=upstream.status_code)
        response.headers.update({"content-security-policy": _page_policy(page)})
    else:
        response = StreamingResponse(upstream.aiter_bytes(), status_code=upstream.status_code,
                                     background=BackgroundTask(upstream.aclose))
        if upstream.status_code == 200 and request.url.path.startswith(_IMMUTABLE_ASSETS):
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
    for name, value in headers:
        response.headers.append(name, value)
    return response
