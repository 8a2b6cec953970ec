"""The `steward` CLI: tokens, versions, and runs driven through the HTTP API with credentials from the environment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import jwt

from steward.cli import main
from steward.identity import verify_token
from tests.conftest import TEST_SECRET
from tests.support import wait_for_run


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steward", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_token_command_prints_a_token_for_the_configured_secret(monkeypatch, tmp_path):
    import os

    env = {**os.environ, "STEWARD_JWT_SECRET": TEST_SECRET, "STEWARD_DATA_DIR": str(tmp_path)}
    result = run_cli("token", "--sub", "alice", "--role", "approver", "--role", "auditor", "--tenant", "acme",
                     "--ttl", "2h", env=env)
    assert result.returncode == 0, result.stderr
    principal = verify_token(result.stdout.strip(), TEST_SECRET)
    assert principal.sub == "alice" and principal.roles == ("approver", "auditor") and principal.tenant == "acme"
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 7200


def test_token_command_with_bad_ttl_or_tenant_exits_2_with_one_line(tmp_path):
    import os

    env = {**os.environ, "STEWARD_JWT_SECRET": TEST_SECRET, "STEWARD_DATA_DIR": str(tmp_path)}
    bad_ttl = run_cli("token", "--sub", "a", "--role", "x", "--ttl", "forever", env=env)
    assert bad_ttl.returncode == 2 and "--ttl" in bad_ttl.stderr and "Traceback" not in bad_ttl.stderr
    bad_tenant = run_cli("token", "--sub", "a", "--role", "x", "--tenant", "a b", env=env)
    assert bad_tenant.returncode == 2 and "--tenant" in bad_tenant.stderr


def test_version_names_steward_and_temporal_versions():
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("steward 0.1.0") and "temporalio 1.35.0" in result.stdout


async def cli(capsys, *args: str) -> tuple[int, str, str]:
    # The API serves from this test's event loop: run the (blocking) CLI on a thread.
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def use_token(monkeypatch, headers: dict[str, str]) -> None:
    """The CLI's credential, from the environment as a user sets it (there is no flag for it)."""
    monkeypatch.setenv("STEWARD_TOKEN", headers["Authorization"].removeprefix("Bearer "))
    monkeypatch.delenv("STEWARD_API_KEY", raising=False)


def input_file(tmp_path, value: dict) -> str:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(value))
    return str(path)


async def test_runs_commands_start_show_list_and_cancel_through_the_api(capsys, monkeypatch, tmp_path, api_url,
                                                                       auth, http, gate):
    use_token(monkeypatch, auth())
    common = ["--api-url", api_url]

    code, out, err = await cli(capsys, "runs", "start", "test-gated", "--input", input_file(tmp_path, gate), *common)
    assert code == 0, err
    run_id = out.strip()  # the run id, alone on its line, for `RUN=$(steward runs start ...)`

    code, out, _ = await cli(capsys, "runs", "show", run_id, *common)
    assert code == 0 and json.loads(out)["workflow"] == "test-gated"

    code, out, _ = await cli(capsys, "runs", "cancel", run_id, *common)
    assert code == 0 and json.loads(out)["cancel_requested"] is True
    assert (await wait_for_run(http, run_id, auth()))["status"] == "cancelled"

    code, _, err = await cli(capsys, "runs", "cancel", run_id, *common)
    assert code == 2 and "409 run_closed" in err

    code, out, _ = await cli(capsys, "runs", "list", "--json", *common)
    assert code == 0 and "runs" in json.loads(out)


async def test_runs_start_with_invalid_input_prints_each_bad_field(capsys, monkeypatch, tmp_path, api_url, auth):
    use_token(monkeypatch, auth())
    code, _, err = await cli(capsys, "runs", "start", "document-fingerprint", "--input",
                             input_file(tmp_path, {"documents": []}), "--api-url", api_url)
    assert code == 2
    assert "422 validation_failed" in err and "input.documents" in err


async def test_runs_start_input_that_is_missing_or_not_json_is_refused_naming_the_file(capsys, monkeypatch,
                                                                                      tmp_path):
    use_token(monkeypatch, {"Authorization": "Bearer unused"})
    missing = str(tmp_path / "missing.json")
    code, _, err = await cli(capsys, "runs", "start", "document-fingerprint", "--input", missing,
                             "--api-url", "http://127.0.0.1:9")
    assert code == 2 and f"--input {missing}: no such file" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{documents: []")
    code, _, err = await cli(capsys, "runs", "start", "document-fingerprint", "--input", str(broken),
                             "--api-url", "http://127.0.0.1:9")
    assert code == 2 and f"--input {broken}: not JSON" in err
    code, _, err = await cli(capsys, "runs", "start", "document-fingerprint", "--input", '{"documents": []}',
                             "--api-url", "http://127.0.0.1:9")
    assert code == 2 and "--input takes a file, or - to read stdin" in err  # what inline JSON users need to know


async def test_runs_without_credentials_explains_how_to_get_a_token_or_an_api_key(capsys, monkeypatch):
    monkeypatch.delenv("STEWARD_TOKEN", raising=False)
    monkeypatch.delenv("STEWARD_API_KEY", raising=False)
    code, _, err = await cli(capsys, "runs", "list", "--api-url", "http://127.0.0.1:9")
    assert code == 2 and "steward token" in err and "steward apikey create" in err


def test_a_token_flag_is_refused_without_echoing_the_secret():
    result = run_cli("runs", "list", "--token", "eyJ-secret-value")
    assert result.returncode == 2 and "STEWARD_TOKEN" in result.stderr
    assert "eyJ-secret-value" not in result.stderr + result.stdout


def test_misconfiguration_is_one_line_naming_the_problem_not_a_traceback(tmp_path):
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "TEMPORAL_"))}
    secret = tmp_path / "data" / "jwt-secret"
    secret.parent.mkdir()
    secret.write_text("shared-with-everyone")
    secret.chmod(0o644)
    cases = [
        ({"STEWARD_WORKFLOW_PACKAGES": "not-json"}, "workflow_packages"),
        ({"TEMPORAL_PROFILE": "no-such-profile", "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")},
         "no-such-profile"),
        ({"STEWARD_DATA_DIR": str(secret.parent)}, "must be 0600"),
        ({"STEWARD_API_PORT": "99999"}, "STEWARD_API_PORT"),
    ]
    for env, expected in cases:
        result = run_cli("token", "--sub", "a", "--role", "operator", env={**base, **env})
        assert result.returncode == 2, (env, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, (env, result.stderr)


async def test_demo_starts_a_cleared_and_a_flagged_review_and_says_how_to_decide(capsys, api_url, settings, http):
    from steward.cli.demo import run_demo

    code = await asyncio.to_thread(run_demo, settings, api_url)
    out = capsys.readouterr().out
    assert code == 0
    assert "status completed, decision approved by policy, risk low" in out
    assert "status waiting_for_approval, stage review" in out
    assert f"{api_url}/inbox" in out and "approvals decide" in out and "separation of duties" in out


async def test_approvals_commands_list_and_decide_through_the_api(capsys, monkeypatch, api_url, auth, http):
    from tests.test_approvals import start_approval

    run_id = await start_approval(http, auth)
    use_token(monkeypatch, auth(sub="bob", roles=("approver",)))
    common = ["--api-url", api_url]

    async def listed() -> bool:
        code, out, _ = await cli(capsys, "approvals", "list", *common)
        return code == 0 and run_id in out

    from tests.support import eventually
    await eventually(listed, "the run in bob's inbox")
    code, out, err = await cli(capsys, "approvals", "decide", run_id, "approve", "--comment", "checked", *common)
    assert code == 0, err
    assert json.loads(out)["outcome"] == "approved" and json.loads(out)["comment"] == "checked"
    code, _, err = await cli(capsys, "approvals", "decide", run_id, "approve", *common)
    assert code == 2 and "409" in err


async def test_mail_command_prints_the_maildir_messages_as_a_person_reads_them(tmp_path):
    import os
    from datetime import UTC, datetime

    from activities.notify.email import EmailDeliveryRequest, compose, send
    from activities.notify.message import Link, Notice
    from steward.settings import Settings

    settings = Settings(data_dir=tmp_path)
    link = "http://127.0.0.1:8000/activate/" + "x" * 120  # long enough to be folded in the file
    notice = Notice(title="Welcome", lines=["Activate with the link."], links=[Link(label="Activate", url=link)])
    message = compose(EmailDeliveryRequest(message_id="m-1", to="hanna@example.com", notice=notice,
                                           occurred_at=datetime.now(UTC)), settings.smtp_from)
    assert await send(message, settings) == "maildir"

    env = {**os.environ, "STEWARD_DATA_DIR": str(tmp_path)}
    result = run_cli("mail", env=env)
    assert result.returncode == 0, result.stderr
    assert "To: hanna@example.com" in result.stdout and "Subject: Welcome" in result.stdout
    assert f"Activate: {link}" in result.stdout  # unfolded: copied from here, the link works
    assert run_cli("mail", "--last", "0", env=env).returncode == 2


async def test_runs_watch_follows_a_run_live_and_exits_by_how_it_ended(capsys, monkeypatch, api_url, auth, http,
                                                                       gate):
    use_token(monkeypatch, auth())
    common = ["--api-url", api_url]
    started = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth())
    run_id = started.json()["id"]
    watching = asyncio.create_task(cli(capsys, "runs", "watch", run_id, *common))
    await wait_for_run_to_start(gate)
    assert not watching.done()  # the run is waiting: so is the watch
    await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())
    code, out, _ = await asyncio.wait_for(watching, 60)
    lines = out.splitlines()
    assert code == 3, out  # cancelled
    assert "#1  run.started" in lines[0] and "run.cancelled" in lines[-1]
    assert any("run.cancel_requested" in line for line in lines)

    done = await http.post("/v1/workflows/document-fingerprint/runs", headers=auth(),
                           json={"input": {"documents": [{"name": "a.txt", "text": "hello"}]}})
    code, out, _ = await cli(capsys, "runs", "watch", done.json()["id"], "--json", *common)
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and events[-1]["type"] == "run.completed"
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))

    code, _, err = await cli(capsys, "runs", "watch", "no-such-run", *common)
    assert code == 2 and "404 not_found" in err


async def wait_for_run_to_start(gate: dict[str, str]) -> None:
    from pathlib import Path

    from tests.support import eventually

    async def started() -> bool | None:
        return True if Path(gate["started_file"]).exists() else None

    await eventually(started, "the gated activity to start")


async def test_schedules_commands_create_idempotently_list_pause_trigger_and_delete(capsys, monkeypatch, tmp_path,
                                                                                   api_url, auth, http):
    use_token(monkeypatch, auth())
    common = ["--api-url", api_url]
    source = input_file(tmp_path, {"documents": [{"name": "a.txt", "text": "hello"}]})
    create = ["schedules", "create", "nightly", "--workflow", "document-fingerprint", "--input", source,
              "--cron", "0 2 * * *", "--timezone", "Europe/Berlin", "--note", "nightly fingerprints", *common]

    code, out, err = await cli(capsys, *create)
    assert code == 0 and out.startswith("created nightly (next run "), err
    code, out, _ = await cli(capsys, *create)  # a pipeline's second run: one schedule, nothing changed
    assert code == 0 and out.startswith("unchanged nightly")
    code, _, err = await cli(capsys, *create[:-4], "--cron", "0 3 * * *", *common)
    assert code == 2 and "409 schedule_exists" in err

    code, out, _ = await cli(capsys, "schedules", "list", *common)
    assert code == 0 and out.split()[:5] == ["nightly", "document-fingerprint", "0", "2", "*"]
    code, out, _ = await cli(capsys, "schedules", "pause", "nightly", "--note", "freeze", *common)
    assert code == 0 and "paused" in out
    code, out, _ = await cli(capsys, "schedules", "trigger", "nightly", *common)
    assert code == 0
    code, out, _ = await cli(capsys, "schedules", "show", "nightly", *common)
    shown = json.loads(out)
    assert shown["note"] == "freeze" and shown["input"]["documents"][0]["name"] == "a.txt"

    async def triggered() -> str | None:
        view = (await http.get("/v1/schedules/nightly", headers=auth())).json()
        return view["recent_actions"][0]["run_id"] if view["recent_actions"] else None

    from tests.support import eventually

    run_id = await eventually(triggered, "the triggered run")
    assert (await wait_for_run(http, run_id, auth()))["status"] == "completed"
    code, out, _ = await cli(capsys, "schedules", "delete", "nightly", *common)
    assert code == 0 and "deleted nightly" in out
    code, _, err = await cli(capsys, "schedules", "show", "nightly", *common)
    assert code == 2 and "404 not_found" in err
    bad = input_file(tmp_path, {"documents": []})
    code, _, err = await cli(capsys, "schedules", "create", "broken", "--workflow", "document-fingerprint",
                             "--input", bad, "--interval", "1h", *common)
    assert code == 2 and "input.documents" in err
