"""API keys for services: created by the CLI, sent as bearer tokens, stored only as hashes, revocable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from steward.apikeys import KEYS_FILE, ApiKeyStore
from steward.identity import InvalidToken
from tests.support import free_port, serve_api, watch


def steward(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STEWARD_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "steward", *args], capture_output=True, text=True, timeout=60, env=env)


def create_key(data_dir: Path, name: str, role: str, tenant: str) -> str:
    result = steward(data_dir, "apikey", "create", "--name", name, "--role", role, "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    assert "only this once" in result.stderr
    key = result.stdout.strip()
    watch("an API key", key)
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keys_api(settings, client, worker, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose data dir (and so keys file) is this test's tmp_path."""
    own = settings.model_copy(update={"api_port": free_port(), "data_dir": tmp_path})
    async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


async def test_created_key_authenticates_until_it_is_revoked(keys_api, tmp_path, tenant, log_lines):
    key = create_key(tmp_path, "ci", "operator", tenant)
    assert key.startswith("stw_")

    response = await keys_api.post("/v1/workflows/document-fingerprint/runs",
                                   json={"input": {"documents": [{"name": "a.txt", "text": "hello"}]}},
                                   headers=bearer(key))
    assert response.status_code == 202, response.text
    listed = await keys_api.get("/v1/runs", headers=bearer(key))
    assert response.json()["id"] in [r["id"] for r in listed.json()["runs"]]  # the key's tenant
    access = [e for e in log_lines.events() if e.get("event") == "request" and e.get("route") == "/v1/runs"]
    assert (access[-1]["principal"], access[-1]["tenant"]) == ("apikey:ci", tenant)

    revoked = steward(tmp_path, "apikey", "revoke", "ci")
    assert revoked.returncode == 0, revoked.stderr
    response = await keys_api.get("/v1/runs", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "API key 'ci' has been revoked"


async def test_key_acts_with_its_own_roles_only(keys_api, tmp_path, tenant):
    key = create_key(tmp_path, "alertmanager", "auditor", tenant)
    assert (await keys_api.get("/v1/runs", headers=bearer(key))).status_code == 200
    response = await keys_api.post("/v1/runs/some-run/cancel", headers=bearer(key))
    assert response.status_code == 403 and response.json()["error"]["details"] == {"permission": "runs:cancel"}


async def test_wrong_or_malformed_key_is_401(keys_api, tmp_path, tenant):
    key = create_key(tmp_path, "ci", "operator", tenant)
    key_id = key.split("_")[1]
    for wrong in (f"stw_{key_id}_{'A' * 43}", "stw_nonsense", f"stw_{'0' * 16}_{key.split('_', 2)[2]}"):
        response = await keys_api.get("/v1/runs", headers=bearer(wrong))
        assert response.status_code == 401, wrong
        assert response.json()["error"]["code"] == "unauthenticated"


def test_keys_file_holds_no_key_material_and_is_private(tmp_path, tenant):
    key = create_key(tmp_path, "ci", "operator", tenant)
    secret = key.split("_", 2)[2]
    path = tmp_path / KEYS_FILE
    text = path.read_text()
    assert secret not in text and key not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (record,) = json.loads(text)["keys"]
    assert (record["name"], record["roles"], record["tenant"], record["revoked_at"]) == ("ci", ["operator"], tenant, None)


def test_list_shows_keys_without_the_keys_themselves(tmp_path, tenant):
    key = create_key(tmp_path, "ci", "operator", tenant)
    create_key(tmp_path, "alertmanager", "operator", tenant)
    assert steward(tmp_path, "apikey", "revoke", key.split("_")[1]).returncode == 0  # by id
    listing = steward(tmp_path, "apikey", "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["ci", "alertmanager"]
    assert "revoked" in lines[0] and "active" in lines[1] and tenant in lines[1]
    assert key.split("_", 2)[2] not in listing.stdout


def test_create_refuses_a_duplicate_active_name_and_an_unknown_role(tmp_path, tenant):
    create_key(tmp_path, "ci", "operator", tenant)
    duplicate = steward(tmp_path, "apikey", "create", "--name", "ci", "--role", "operator", "--tenant", tenant)
    assert duplicate.returncode == 2 and "exists" in duplicate.stderr and not duplicate.stdout
    unknown = steward(tmp_path, "apikey", "create", "--name", "x", "--role", "superuser", "--tenant", tenant)
    assert unknown.returncode == 2 and "superuser" in unknown.stderr and not unknown.stdout


def test_revoking_an_unknown_key_exits_2(tmp_path):
    result = steward(tmp_path, "apikey", "revoke", "nope")
    assert result.returncode == 2 and "no active key" in result.stderr


def test_store_sees_a_revocation_made_by_another_process(tmp_path, tenant):
    store = ApiKeyStore(tmp_path / KEYS_FILE)
    key = create_key(tmp_path, "ci", "operator", tenant)
    assert store.verify(key).sub == "apikey:ci"
    assert steward(tmp_path, "apikey", "revoke", "ci").returncode == 0
    with pytest.raises(InvalidToken, match="revoked"):
        store.verify(key)


async def test_apis_with_data_dirs_of_their_own_share_the_keys_file_named_in_settings(settings, client, worker,
                                                                                       tmp_path, tenant):
    # Two API hosts, each with its own data dir, and one keys file on a volume both mount.
    shared = tmp_path / "shared" / "api-keys.json"
    result = subprocess.run([sys.executable, "-m", "steward", "apikey", "create", "--name", "ci", "--role", "operator",
                             "--tenant", tenant], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "STEWARD_DATA_DIR": str(tmp_path / "cli"),
                                 "STEWARD_API_KEYS_FILE": str(shared)})
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    watch("an API key", key)
    assert shared.exists() and not (tmp_path / "cli" / "api-keys.json").exists()
    for host in ("a", "b"):
        own = settings.model_copy(update={"api_port": free_port(), "data_dir": tmp_path / host,
                                          "api_keys_file": shared})
        async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/v1/runs", headers=bearer(key))).status_code == 200, host
