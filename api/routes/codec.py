"""The codec endpoint for the Temporal Web UI and CLI (Temporal's remote codec protocol).

Payloads are encrypted at rest (steward/codec.py), each tenant's under a key of its own; this
endpoint decrypts them for operators holding the `codec:decode` permission, and only their own
tenant's: any other payload comes back as it was sent, ciphertext. The Temporal UI calls it from
the operator's browser, which holds no Steward token. So the operator signs in once on `/codec`:
an HttpOnly, SameSite=Strict cookie scoped to `/codec` then carries their token with the UI's
calls. The embedded UI is served under the API (`/ui`, api/routes/ui.py), on the same origin, so
the browser sends the cookie with no setting in the UI; a UI elsewhere needs "Include
cross-origin credentials", and CORS is open only to the configured UI origin. CLI tools send the
bearer token in the Authorization header instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from google.protobuf import json_format
from jsonschema import Draft202012Validator
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import RbacDep, SettingsDep, authorize, principal_from_token
from api.errors import ApiError, ErrorResponse
from steward.codec import EncryptionCodec, KeyringError, is_encrypted, payload_tenant
from steward.identity import Principal
from steward.settings import Settings

router = APIRouter(prefix="/codec", tags=["codec"])

PERMISSION = "codec:decode"
COOKIE = "steward_codec"
# The session lasts a working day at most, and never longer than the token it carries.
COOKIE_MAX_AGE_S = 8 * 3600
_CORS_HEADERS = "authorization,content-type,x-namespace"


def allowed_origins(settings: Settings) -> set[str]:
    if settings.codec_cors_origin:
        return {settings.codec_cors_origin.rstrip("/")}
    # The embedded UI, under either name a browser may use for it.
    return {f"http://127.0.0.1:{settings.ui_port}", f"http://localhost:{settings.ui_port}"}


def _cors(request: Request, settings: Settings, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin and origin in allowed_origins(settings):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


async def codec_caller(request: Request, policy: RbacDep) -> Principal:
    """The operator, from the Authorization header or the /codec session cookie."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    if not token:
        raise ApiError(401, "unauthenticated", "sign in on /codec, or send a bearer token",
                       headers={"WWW-Authenticate": "Bearer"})
    principal = await principal_from_token(request, token)
    await request.app.state.rate_limit.check(principal)
    authorize(policy, principal, PERMISSION)
    return principal


CodecCaller = Annotated[Principal, Depends(codec_caller)]


def _codec(request: Request) -> EncryptionCodec:
    return request.app.state.codec  # built with the app's keyring at start-up


async def _payloads(request: Request) -> Sequence[Payload]:
    body = await request.body()
    try:
        # protobuf's parser is lenient (`{}` and nulls read as empty): the body must be what the
        # document says first, then protobuf reads it.
        if next(_BODY_CHECK.iter_errors(json.loads(body)), None) is not None:
            raise json_format.ParseError("not the documented shape")
        return json_format.Parse(body, Payloads()).payloads
    except (json_format.ParseError, DecodeError, UnicodeDecodeError, ValueError):
        raise ApiError(422, "validation_failed", "the body is not Temporal Payloads JSON",
                       [{"field": "payloads", "message": "expected {\"payloads\": [{\"metadata\": ..., \"data\": ...}]}"}]) from None


def _answer(request: Request, settings: Settings, payloads: Sequence[Payload]) -> Response:
    body = json_format.MessageToJson(Payloads(payloads=payloads), indent=None)
    return _cors(request, settings, Response(body, media_type="application/json"))


_RESPONSES = {code: {"model": ErrorResponse} for code in (401, 403, 422)}
# The routes read the body themselves (protobuf JSON, not a pydantic model): describe it here.
_BYTES = {"type": "string", "format": "byte"}
_PAYLOADS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "title": "Payloads", "type": "object", "required": ["payloads"], "additionalProperties": False,
    "description": "Temporal's Payloads message as protobuf JSON: bytes are base64.",
    "properties": {"payloads": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "properties": {"metadata": {"type": "object", "additionalProperties": _BYTES}, "data": _BYTES},
    }}},
}}}}}
_BODY_CHECK = Draft202012Validator(_PAYLOADS_BODY["requestBody"]["content"]["application/json"]["schema"])


@router.post("/decode", responses=_RESPONSES, openapi_extra=_PAYLOADS_BODY,
             summary="Decrypt payloads (Temporal remote codec protocol)")
async def decode(request: Request, caller: CodecCaller, settings: SettingsDep) -> Response:
    codec = _codec(request)
    decoded = []
    for payload in await _payloads(request):
        if not readable_by(caller, payload, settings):
            decoded.append(payload)  # another tenant's, or nobody's: it stays ciphertext for this caller
            continue
        try:
            decoded.append(codec.decrypt(payload, payload_tenant(payload)))
        except KeyringError as exc:
            raise ApiError(422, "undecodable", str(exc)) from None
    return _answer(request, settings, decoded)


def readable_by(caller: Principal, payload: Payload, settings: Settings) -> bool:
    """Only the caller's own tenant's payloads are decrypted. One written before tenants had keys
    of their own names no tenant, so nobody's is decrypted here unless the deployment says its
    operators may read them (STEWARD_CODEC_DECODE_UNSCOPED: a single-tenant deployment upgrading)."""
    if not is_encrypted(payload):
        return False
    tenant = payload_tenant(payload)
    return tenant == caller.tenant if tenant is not None else settings.codec_decode_unscoped


@router.post("/encode", responses=_RESPONSES, openapi_extra=_PAYLOADS_BODY,
             summary="Encrypt payloads (Temporal remote codec protocol)")
async def encode(request: Request, caller: CodecCaller, settings: SettingsDep) -> Response:
    # Under the caller's tenant's key: what the UI or CLI encodes (a signal's input) is theirs.
    return _answer(request, settings, _codec(request).encode_for(caller.tenant, await _payloads(request)))


@router.options("/decode", include_in_schema=False)
@router.options("/encode", include_in_schema=False)
async def preflight(request: Request, settings: SettingsDep) -> Response:
    # Preflights carry no credentials: answer with the CORS policy alone.
    return _cors(request, settings, Response(status_code=204))


@router.post("/session", responses=_RESPONSES, summary="Start a codec session cookie for the Temporal UI")
async def start_session(request: Request, caller: CodecCaller) -> JSONResponse:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise ApiError(401, "unauthenticated", "start a session with a bearer token")
    response = JSONResponse({"sub": caller.sub, "tenant": caller.tenant, "path": "/codec",
                             "max_age_s": COOKIE_MAX_AGE_S})
    response.set_cookie(COOKIE, header[7:].strip(), max_age=COOKIE_MAX_AGE_S, path="/codec", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.delete("/session", status_code=204, summary="End the codec session")
async def end_session() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/codec")
    return response


_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Steward codec sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/inbox/inbox.css"></head>
<body><main class="page"><h1>Decrypt payloads in the Temporal UI</h1>
<p>Steward encrypts every payload it stores in Temporal. Sign in with an operator token to let the
Temporal UI show them decrypted in this browser, for up to 8 hours.</p>
<form id="codec-sign-in"><label for="token">Operator token</label>
<textarea id="token" rows="3" required autocomplete="off"></textarea>
<button type="submit">Sign in</button>
<button type="button" id="sign-out">Sign out</button></form>
<p id="status" role="status" aria-live="polite"></p>
<p>Then open the Temporal UI at <a href="/ui/">/ui/</a> on this server: it shows your tenant's
payloads decrypted, with nothing to set.</p></main>
<script src="/static/inbox/codec-sign-in.js"></script></body></html>"""


@router.get("", include_in_schema=False, response_class=HTMLResponse)
async def sign_in_page() -> HTMLResponse:
    return HTMLResponse(_SIGN_IN_PAGE, headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                                   "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    })
