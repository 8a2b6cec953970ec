"""Load test: compliance reviews through the API of a running Steward, checked run by run at the end.

Against `make up` (run it in another terminal first):

    make load                                    # 4 reviews a second for 5 minutes
    make load LOAD_RATE=5.5 LOAD_DURATION=60s    # another rate or length

`LOAD_CLIENTS` simulated clients (10) share `LOAD_RATE` new reviews a second between them, every
request carries an Idempotency-Key, and one request in ten is sent again — the same key and body,
as a client does after a timeout — which must answer with the same run. The clients use a tenant of their own,
made up for this run, with tokens signed by the data dir's JWT secret (one principal per client),
so the tenant's runs are exactly the ones this test started.

When the clients stop, every run is followed until it ends (GET /v1/runs/{id}?wait=) and the
tenant's runs are listed. The test fails (exit code 1) if any key has no completed run (lost),
if any re-send answered another run, or if the tenant has more runs than keys (duplicated).
It prints start latency (p50/p95 of the POST), end-to-end runs a minute (first start to last
close), and the resident memory of Steward's worker (with its CPU pool) and API as it went.
`LOAD_REPORT=path.json` also writes these figures to a file.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import gevent
import httpx
from gevent.pool import Pool
from locust import FastHttpUser, constant_throughput, events, task

from steward.identity import Principal, issue_token
from steward.settings import Settings
from workflows.compliance_documentation import SPEC

WORKFLOW = SPEC.name
START_PATH = f"/v1/workflows/{WORKFLOW}/runs"
RESEND_SHARE = 0.10
FOLLOW_WAIT_S = 30
# After the clients stop: how long the runs still in flight may take to end before they count as lost.
SETTLE_DEADLINE_S = float(os.environ.get("LOAD_SETTLE_S", "600"))
MEMORY_EVERY_S = 15
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the report
TENANT = f"load-{datetime.now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
_SECRET = Settings().jwt_signing_secret()
# The checker reads back every run at the end: more than one principal's request budget a
# minute (STEWARD_RATE_LIMIT_PER_MINUTE), so it spreads them over a few principals of its own.
CHECKERS = 8


def token(sub: str) -> str:
    return issue_token(_SECRET, Principal(sub=sub, roles=("operator",), tenant=TENANT), timedelta(hours=2))


@dataclass
class Ledger:
    """What the clients sent and what they were answered, shared by every simulated client."""

    runs: dict[str, str] = field(default_factory=dict)  # idempotency key → run id
    bodies: dict[str, dict] = field(default_factory=dict)  # idempotency key → request body
    resends: int = 0
    resend_mismatches: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)


LEDGER = Ledger()


def review_input(number: int) -> dict:
    """The workflow's sample input with a document id of its own: each run a different case."""
    sample = json.loads(json.dumps(SPEC.sample_input))
    sample["applicant"]["document_id"] = f"LOAD-{number:07d}"
    return sample


RATE = float(os.environ.get("LOAD_RATE", "4"))  # new reviews a second, shared by all the clients


class ComplianceClient(FastHttpUser):
    def wait_time(self) -> float:
        # Each of the clients starts its share of LOAD_RATE reviews a second.
        share = RATE / max(1, self.environment.parsed_options.num_users)
        return constant_throughput(share)(self)

    def on_start(self) -> None:
        # Each simulated client is a principal of its own, as separate services would be: the
        # per-principal rate limit applies to each, not to the load as a whole.
        self.headers = {"Authorization": f"Bearer {token(f'load-client-{uuid.uuid4().hex[:8]}')}"}

    def _start(self, key: str, body: dict, name: str) -> str | None:
        with self.client.post(START_PATH, json=body, headers={**self.headers, "Idempotency-Key": key},
                              name=name, catch_response=True) as response:
            if response.status_code != 202:
                LEDGER.refused.append(f"{response.status_code} {response.text[:200]}")
                response.failure(f"{response.status_code}")
                return None
            return response.json()["id"]

    @task
    def start_review(self) -> None:
        key = f"{TENANT}-{uuid.uuid4().hex}"
        body = {"input": review_input(len(LEDGER.bodies) + 1)}
        LEDGER.bodies[key] = body
        run_id = self._start(key, body, f"POST {START_PATH}")
        if run_id is not None:
            LEDGER.runs[key] = run_id
        if random.random() < RESEND_SHARE and LEDGER.runs:
            earlier = random.choice(list(LEDGER.runs))
            LEDGER.resends += 1
            again = self._start(earlier, LEDGER.bodies[earlier], f"POST {START_PATH} (re-send)")
            if again is not None and again != LEDGER.runs[earlier]:
                LEDGER.resend_mismatches.append(f"{earlier}: {LEDGER.runs[earlier]} then {again}")


# --- memory of Steward's processes, from /proc ------------------------------------------------


def _pids(role: str) -> list[int]:
    """Steward's `role` process (`python -m steward worker` or `api`) and every process below it."""
    roots = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if argv[1:4] == [b"-m", b"steward", role.encode()]:
            roots.append(int(entry.name))
    tree = []
    while roots:
        pid = roots.pop()
        tree.append(pid)
        try:
            for thread in Path(f"/proc/{pid}/task").iterdir():
                roots += [int(child) for child in (thread / "children").read_text().split()]
        except OSError:
            pass
    return tree


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return round(total / (1024 * 1024), 1)


def _watch_memory(started: float) -> None:
    while True:
        LEDGER.memory.append({"after_s": round(time.monotonic() - started), "runs_started": len(LEDGER.runs),
                              "worker_mib": _rss_mib(_pids("worker")), "api_mib": _rss_mib(_pids("api"))})
        gevent.sleep(MEMORY_EVERY_S)


@events.test_start.add_listener
def _start_watching(environment, **_) -> None:
    environment.memory_watch = gevent.spawn(_watch_memory, time.monotonic())


# --- the check at the end ---------------------------------------------------------------------


def _request(http: httpx.Client, method: str, path: str, deadline: float, **kwargs) -> httpx.Response:
    """One request, waiting out 429s as their Retry-After says, as a polite client does."""
    while True:
        response = http.request(method, path, **kwargs)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        gevent.sleep(float(response.headers.get("Retry-After", "1")))


def _follow(checkers: list[httpx.Client], run_id: str, deadline: float) -> dict:
    http = random.choice(checkers)
    while True:
        response = _request(http, "GET", f"/v1/runs/{run_id}", deadline, params={"wait": FOLLOW_WAIT_S})
        run = response.json() if response.status_code == 200 else {"status": f"http {response.status_code}"}
        if run.get("status") not in ("running", "waiting_for_approval") or time.monotonic() > deadline:
            return run


def _tenant_run_ids(http: httpx.Client, deadline: float) -> list[str]:
    ids, page_token = [], None
    while True:
        params = {"workflow": WORKFLOW, "page_size": 100, **({"next_page_token": page_token} if page_token else {})}
        page = _request(http, "GET", "/v1/runs", deadline, params=params).json()
        ids += [run["id"] for run in page["runs"]]
        page_token = page.get("next_page_token")
        if not page_token:
            return ids


def _percentile_ms(environment, name: str, q: float) -> float | None:
    entry = environment.stats.get(name, "POST")
    return entry.get_response_time_percentile(q) if entry.num_requests else None


@events.quitting.add_listener
def _check_every_run(environment, **_) -> None:
    if getattr(environment, "memory_watch", None) is not None:
        environment.memory_watch.kill()
    LEDGER.memory.append({"after_s": "end", "runs_started": len(LEDGER.runs),
                          "worker_mib": _rss_mib(_pids("worker")), "api_mib": _rss_mib(_pids("api"))})
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    checkers = [httpx.Client(base_url=environment.host, headers={"Authorization": f"Bearer {token(f'load-check-{n}')}"},
                             timeout=FOLLOW_WAIT_S + 30, trust_env=False) for n in range(CHECKERS)]
    try:
        http = checkers[0]
        # A request cut off when the clients stopped got no answer: send it again, as a client
        # does after a timeout. Its key makes that safe: it answers the run it started, if any.
        for key in [k for k in LEDGER.bodies if k not in LEDGER.runs]:
            response = _request(http, "POST", START_PATH, deadline, json=LEDGER.bodies[key],
                                headers={"Idempotency-Key": key})
            if response.status_code == 202:
                LEDGER.runs[key] = response.json()["id"]
            else:
                LEDGER.refused.append(f"{response.status_code} {response.text[:200]}")
        pool = Pool(50)
        run_ids = list(LEDGER.runs.values())
        finals = dict(zip(run_ids, pool.imap(lambda r: _follow(checkers, r, deadline), run_ids)))
        listed = _tenant_run_ids(http, deadline)
    finally:
        for checker in checkers:
            checker.close()
    completed = [run for run in finals.values() if run.get("status") == "completed"]
    lost = sorted(run_id for run_id, run in finals.items() if run.get("status") != "completed")
    lost += [f"{key}: never started" for key in LEDGER.bodies if key not in LEDGER.runs]
    extra = sorted(set(listed) - set(LEDGER.runs.values()))
    listed_twice = [f"{len(listed) - len(set(listed))} runs listed twice"] if len(listed) != len(set(listed)) else []
    duplicated = extra + LEDGER.resend_mismatches + listed_twice
    started = [datetime.fromisoformat(r["started_at"]) for r in completed if r.get("started_at")]
    closed = [datetime.fromisoformat(r["closed_at"]) for r in completed if r.get("closed_at")]
    span_s = (max(closed) - min(started)).total_seconds() if started and closed else 0
    name = f"POST {START_PATH}"
    report = {
        "tenant": TENANT,
        "keys": len(LEDGER.bodies), "runs_started": len(LEDGER.runs), "resends": LEDGER.resends,
        "completed": len(completed), "lost": len(lost), "duplicated": len(duplicated),
        "final_statuses": dict(Counter(run.get("status") for run in finals.values())),
        "refused_requests": len(LEDGER.refused),
        "start_latency_ms": {"p50": _percentile_ms(environment, name, 0.5),
                             "p95": _percentile_ms(environment, name, 0.95)},
        "end_to_end_runs_per_min": round(len(completed) / span_s * 60, 1) if span_s else None,
        "first_start_to_last_close_s": round(span_s, 1),
        "memory": LEDGER.memory,
    }
    print("\nload test: every run checked against Steward")
    print(json.dumps({k: v for k, v in report.items() if k != "memory"}, indent=2))
    print(f"{'after s':>8}{'runs started':>14}{'worker MiB':>12}{'api MiB':>9}")
    for m in LEDGER.memory:
        print(f"{m['after_s']:>8}{m['runs_started']:>14}{m['worker_mib']:>12}{m['api_mib']:>9}")
    for problem in (lost[:5] + duplicated[:5] + LEDGER.refused[:5]):
        print(f"  problem: {problem}")
    if os.environ.get("LOAD_REPORT"):
        Path(os.environ["LOAD_REPORT"]).write_text(json.dumps(report, indent=2, default=str))
    if lost or duplicated or LEDGER.refused:
        environment.process_exit_code = 1
        print("load test: FAILED (runs lost, duplicated or refused)")
    else:
        print("load test: PASSED (no run lost, none duplicated)")
