"""/codec: the Temporal UI's remote codec, for operators with codec:decode and nobody else."""

from __future__ import annotations

import contextlib
import json

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from steward.codec import encrypting_for
from tests.conftest import TEST_DATA_CONVERTER

pytest_plugins = ["tests.browser"]

UI_ORIGIN_PORT_FIELD = "ui_port"


async def encrypted_payloads_json(value: dict, tenant: str | None) -> bytes:
    """`value` as Steward stores it for `tenant` (None: as before tenants had keys of their own)."""
    with encrypting_for(tenant) if tenant else contextlib.nullcontext():
        payloads = await TEST_DATA_CONVERTER.encode([value])
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


def decoded_values(body: bytes) -> list:
    payloads = json_format.Parse(body, Payloads()).payloads
    return [json.loads(p.data) for p in payloads]


async def test_operator_decrypts_what_steward_encrypted_for_their_tenant(http, auth, tenant):
    body = await encrypted_payloads_json({"full_name": "Zebulon Quillfeather"}, tenant)
    assert b"Zebulon" not in body
    response = await http.post("/codec/decode", content=body, headers={**auth(roles=("operator",)),
                                                                         "content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert decoded_values(response.content) == [{"full_name": "Zebulon Quillfeather"}]


async def test_encode_then_decode_round_trips(http, auth):
    plain = Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')])
    headers = {**auth(roles=("operator",)), "content-type": "application/json"}
    encoded = await http.post("/codec/encode", content=json_format.MessageToJson(plain), headers=headers)
    assert b'"a"' not in encoded.content
    decoded = await http.post("/codec/decode", content=encoded.content, headers=headers)
    assert decoded_values(decoded.content) == [{"a": 1}]


async def test_roles_without_codec_decode_are_refused_naming_the_permission(http, auth, tenant):
    body = await encrypted_payloads_json({"x": 1}, tenant)
    for role in ("requester", "approver", "auditor"):
        response = await http.post("/codec/decode", content=body, headers=auth(roles=(role,)))
        assert response.status_code == 403, role
        assert response.json()["error"]["details"] == {"permission": "codec:decode"}
    anonymous = await http.post("/codec/decode", content=body)
    assert anonymous.status_code == 401


async def test_a_signed_in_browser_decodes_with_its_session_cookie_only(http, auth, tenant):
    session = await http.post("/codec/session", headers=auth(sub="olga", roles=("operator",)))
    assert session.status_code == 200 and session.json()["sub"] == "olga"
    cookie = session.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/codec" in cookie
    body = await encrypted_payloads_json({"x": 2}, tenant)
    response = await http.post("/codec/decode", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200 and decoded_values(response.content) == [{"x": 2}]
    await http.delete("/codec/session")
    http.cookies.clear()
    assert (await http.post("/codec/decode", content=body)).status_code == 401


async def test_cors_admits_only_the_temporal_ui_origin(http, auth, settings, tenant):
    ui = f"http://127.0.0.1:{settings.ui_port}"
    preflight = await http.options("/codec/decode", headers={
        "Origin": ui, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.headers["access-control-allow-origin"] == ui
    assert preflight.headers["access-control-allow-credentials"] == "true"
    stranger = await http.options("/codec/decode", headers={"Origin": "https://evil.example",
                                                            "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in stranger.headers
    body = await encrypted_payloads_json({"x": 3}, tenant)
    answered = await http.post("/codec/decode", content=body, headers={**auth(roles=("operator",)), "Origin": ui})
    assert answered.headers["access-control-allow-origin"] == ui


async def test_malformed_payloads_are_422_not_500(http, auth):
    response = await http.post("/codec/decode", content=b"{not payloads", headers=auth(roles=("operator",)))
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_failed"


async def test_sign_in_page_is_served_with_a_strict_content_security_policy(http):
    response = await http.get("/codec")
    assert response.status_code == 200 and "Operator token" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_steward_up_points_the_ui_at_the_codec_endpoint(settings):
    from steward.devserver import dev_server_command
    from steward.cli.supervisor import Supervisor

    command = Supervisor(settings).server.argv
    # Relative: the UI is served under the API (/ui), so the codec is on its own origin.
    assert command[command.index("--ui-codec-endpoint") + 1] == "/codec"
    assert command[command.index("--ui-public-path") + 1] == "/ui"
    assert "--ui-codec-endpoint" not in dev_server_command(settings)


async def test_an_operator_signs_in_and_out_on_the_codec_page_in_a_real_browser(page, api_url, auth):
    token = auth(sub="olga", roles=("operator",))["Authorization"].removeprefix("Bearer ")
    await page.goto(f"{api_url}/codec")
    await page.get_by_label("Operator token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Signed in as olga").wait_for()
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "steward_codec")
    assert session["httpOnly"] and session["path"] == "/codec" and session["sameSite"] == "Strict"
    assert token not in await page.content()  # the field was cleared; the token lives only in the cookie
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_text("Signed out").wait_for()
    assert not [c for c in await page.context.cookies() if c["name"] == "steward_codec"]
