"""`steward schedules ...`: the tenant's schedules through the HTTP API (docs/schedules.md).

`create` is idempotent: the same schedule again prints `unchanged` and exits 0, so a pipeline can
create its nightly schedule on every run and keep exactly one (docs/ci-cd.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from typing import Any

OVERLAPS = ("skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all")


def _cli():  # the shared client helpers; imported late, as main imports this module
    # By module path: the package's `main` is the entry point function, not the module.
    return importlib.import_module("steward.cli.main")


def _request(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """The API's status and JSON answer: `create` tells 201 (made) from 200 (already there)."""
    response = _cli()._api_response(args, method, path, **kwargs)
    return response.status_code, response.json() if response.content else None


def _seconds(flag: str, text: str | None) -> float | None:
    return None if text is None else _cli()._duration(flag, text)


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.calendar is not None:
        try:
            calendar = json.loads(args.calendar)
        except json.JSONDecodeError as exc:
            raise _cli().CliError(f"--calendar: not JSON: {exc}") from None
        return {"calendar": calendar if isinstance(calendar, list) else [calendar]}
    if args.interval is not None:
        spec: dict[str, Any] = {"interval": _seconds("--interval", args.interval)}
        if args.offset is not None:
            spec["offset"] = _seconds("--offset", args.offset)
        return spec
    return {"cron": args.cron}


def _line(view: dict[str, Any]) -> str:
    spec = view["spec"]
    when = spec.get("cron") or (f"every {spec['interval']}" if spec.get("interval") else "calendar")
    following = (view.get("next_action_times") or ["-"])[0]
    state = "paused" if view["paused"] else "active"
    return f"{view['name']:<32} {view['workflow']:<28} {when:<20} {view['timezone']:<16} {state:<7} next {following}"


def cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name, "workflow": args.workflow, "input": _cli()._read_input(args.input), "spec": _spec(args),
        "timezone": args.timezone, "overlap": args.overlap, "paused": args.paused,
    }
    for field, flag in (("catchup_window", "--catchup-window"), ("jitter", "--jitter")):
        value = _seconds(flag, getattr(args, field))
        if value is not None:
            body[field] = value
    if args.note:
        body["note"] = args.note
    status, view = _request(args, "POST", "/v1/schedules", json=body)
    if args.json:
        _cli()._print_json(view)
        return 0
    following = view.get("next_action_times") or []
    print(f"{'created' if status == 201 else 'unchanged'} {view['name']}"
          + (f" (next run {following[0]})" if following else ""))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    params = {"page_size": args.page_size, "next_page_token": args.next_page_token}
    _, page = _request(args, "GET", "/v1/schedules", params={k: v for k, v in params.items() if v is not None})
    if args.json:
        _cli()._print_json(page)
        return 0
    for view in page["schedules"]:
        print(_line(view))
    if not page["schedules"]:
        print("No schedules.")
    if page.get("next_page_token"):
        print(f"(more: --next-page-token {page['next_page_token']})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _cli()._print_json(_request(args, "GET", f"/v1/schedules/{args.name}")[1])
    return 0


def _acting(verb: str) -> Callable[[argparse.Namespace], int]:
    def act(args: argparse.Namespace) -> int:
        body: dict[str, Any] = {}
        if getattr(args, "note", None):
            body["note"] = args.note
        if getattr(args, "overlap", None):
            body["overlap"] = args.overlap
        _, view = _request(args, "POST", f"/v1/schedules/{args.name}/{verb}", json=body)
        print(f"{verb}: {_line(view)}")
        return 0

    return act


def cmd_backfill(args: argparse.Namespace) -> int:
    body = {"start_at": args.start, "end_at": args.end, **({"overlap": args.overlap} if args.overlap else {})}
    _, view = _request(args, "POST", f"/v1/schedules/{args.name}/backfill", json=body)
    print(f"backfill: {_line(view)}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _request(args, "DELETE", f"/v1/schedules/{args.name}")
    print(f"deleted {args.name} (the runs it started go on)")
    return 0


def add_commands(sub: Any, api_client_parser: Callable[..., argparse.ArgumentParser]) -> None:
    schedules = sub.add_parser("schedules", help="recurring runs: create, list, show, pause, unpause, trigger, "
                                                 "backfill and delete schedules through the HTTP API")
    schedules_sub = schedules.add_subparsers(dest="schedules_command", required=True)

    p = api_client_parser(schedules_sub, "create", "create a schedule; the same one again prints `unchanged` and "
                          "exits 0", cmd_create)
    p.add_argument("name", help="lower-case letters, digits and -, unique in your tenant")
    p.add_argument("--workflow", required=True)
    p.add_argument("--input", required=True, metavar="FILE", help="a file with the runs' input as JSON, or - for stdin")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='five fields, e.g. "0 2 * * *" (02:00 every day, in --timezone)')
    when.add_argument("--interval", metavar="DURATION", help="every so long: 90s, 30m, 6h, 7d")
    when.add_argument("--calendar", metavar="JSON", help='calendar times, e.g. \'{"hour": [9], "minute": [30], '
                                                         '"day_of_week": [{"start": 1, "end": 5}]}\'')
    p.add_argument("--offset", metavar="DURATION", help="with --interval: shifted this much")
    p.add_argument("--timezone", default="UTC", help="IANA name, e.g. Europe/Berlin (default UTC)")
    p.add_argument("--overlap", choices=OVERLAPS, default="skip", help="when a run is due while the last goes on")
    p.add_argument("--catchup-window", metavar="DURATION", help="how late a missed run may still start (default 1h)")
    p.add_argument("--jitter", metavar="DURATION", help="start each run up to this much later, at random")
    p.add_argument("--paused", action="store_true", help="create it paused")
    p.add_argument("--note", help="why the schedule exists")
    p.add_argument("--json", action="store_true", help="print the schedule as JSON")

    p = api_client_parser(schedules_sub, "list", "your tenant's schedules", cmd_list)
    p.add_argument("--page-size", type=int)
    p.add_argument("--next-page-token")
    p.add_argument("--json", action="store_true", help="print the raw page")
    api_client_parser(schedules_sub, "show", "a schedule, its next run times and its recent runs",
                      cmd_show).add_argument("name")
    for verb, help_text in (("pause", "stop a schedule from starting runs"), ("unpause", "let it start runs again")):
        p = api_client_parser(schedules_sub, verb, help_text, _acting(verb))
        p.add_argument("name")
        p.add_argument("--note", help="why")
    p = api_client_parser(schedules_sub, "trigger", "start a run now (even while paused)", _acting("trigger"))
    p.add_argument("name")
    p.add_argument("--overlap", choices=OVERLAPS, help="for this run only")
    p = api_client_parser(schedules_sub, "backfill", "start the runs a past time range would have had", cmd_backfill)
    p.add_argument("name")
    p.add_argument("--start", required=True, help="ISO 8601 with a timezone, e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--end", required=True, help="ISO 8601 with a timezone")
    p.add_argument("--overlap", choices=OVERLAPS)
    api_client_parser(schedules_sub, "delete", "delete a schedule (the runs it started go on)",
                      cmd_delete).add_argument("name")
