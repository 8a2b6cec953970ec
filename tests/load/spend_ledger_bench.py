"""What the LLM spend ledger costs per model call (one cap check and one add), for the SQLite file
of one host and for the Redis every host shares: `.venv/bin/python -m tests.load.spend_ledger_bench`.

Needs `redis-server` on PATH (make test installs it). Redis runs with its append-only file on, as
docker-compose.yml runs it, so the figure includes what keeps the day's spending across a restart.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from activities.llm.spend import RedisSpendLedger, SpendLedger, SqliteSpendLedger
from tests.support import free_port

CALLS = 2000
WARMUP = 100


async def per_call_ms(ledger: SpendLedger) -> float:
    day = date.today()
    for _ in range(WARMUP):
        await ledger.spent("acme", day)
        await ledger.add("acme", day, 0.0001)
    started = time.perf_counter()
    for _ in range(CALLS):
        await ledger.spent("acme", day)
        await ledger.add("acme", day, 0.0001)
    return (time.perf_counter() - started) / CALLS * 1000


async def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="steward-spend-bench-"))
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "yes", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.5)
        for name, ledger in (("redis, AOF on", RedisSpendLedger(f"redis://127.0.0.1:{port}/0")),
                             ("sqlite file", SqliteSpendLedger(directory / "llm-spend.sqlite"))):
            print(f"{name:<14} {await per_call_ms(ledger):7.3f} ms per LLM call (cap check + add), {CALLS} calls")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
