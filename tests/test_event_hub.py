"""The API's tail of the audit log: a stream opening is also offered the entries just before it,
so an entry whose run index is not written yet cannot fall between a run's history and its live
events (tests/test_cli.py once saw sequence 3 missing that way)."""

from __future__ import annotations

import asyncio

from activities.artifacts.objects import FileObjectStore
from activities.audit.log import AuditLog
from api.event_hub import EventHub


async def test_a_stream_is_offered_the_entries_just_before_it_opened_and_its_position(tmp_path):
    audit = AuditLog(FileObjectStore(tmp_path))
    for n in range(3):
        audit.append("t", f"e{n}", "run.stage_changed", run_id="r", workflow="w", data={"stage": str(n)})
    hub = EventHub(audit, 10, poll_interval_s=0.01)
    try:
        first = await hub.listen("t")
        assert first.position == 3
        assert [(await asyncio.wait_for(first.queue.get(), 5)).seq for _ in range(3)] == [1, 2, 3]
        second = await hub.listen("t")  # on the tail already running
        assert second.position == 3 and [second.queue.get_nowait().seq for _ in range(3)] == [1, 2, 3]
        audit.append("t", "e3", "run.stage_changed", run_id="r", workflow="w", data={"stage": "3"})
        assert (await asyncio.wait_for(second.queue.get(), 5)).seq == 4
    finally:
        await hub.close()
