"""Reading events from the audit log: a run's so far, and each new entry numbered within its run.

The stream routes (api/routes/events.py) and the subscription dispatcher (delivery.py) both
read through here, so an event has the same id and the same sequence number whichever way a
client receives it.
"""

from __future__ import annotations

from collections import OrderedDict

from activities.audit.log import AuditEntry, AuditLog
from activities.events.model import Event, event_of, run_events

# Runs whose count of events a RunSequences remembers: far more than run at once in a tenant;
# a run forgotten is counted again from its entries when it next has an event.
MAX_REMEMBERED_RUNS = 10_000


def events_of_run(audit: AuditLog, tenant: str, run_id: str) -> list[Event]:
    return run_events(audit.run_entries(tenant, run_id))


class RunSequences:
    """Numbers each new entry of a tenant's log within its run, as `run_events` would: entries
    arrive in order, so a run's next event is its count so far plus one."""

    def __init__(self, audit: AuditLog, tenant: str) -> None:
        self.audit = audit
        self.tenant = tenant
        # run id → (the last entry counted, the run's events so far, their ids)
        self._runs: OrderedDict[str, tuple[int, int, set[str]]] = OrderedDict()

    def event(self, entry: AuditEntry) -> Event | None:
        """The event `entry` is, numbered in its run; None when it is no event or one already seen
        (a write retried after a crash leaves the same event id twice). Entries come in order;
        one from before what was counted (a reader starting further back) is counted afresh."""
        if entry.run_id is None:
            return event_of(entry, 0)
        known = self._runs.pop(entry.run_id, None)
        last, count, ids = known if known is not None and entry.seq > known[0] else self._counted(entry)
        event = None
        if entry.event_id not in ids:
            ids.add(entry.event_id)
            event = event_of(entry, count + 1)
            count += event is not None
        self._runs[entry.run_id] = (entry.seq, count, ids)
        while len(self._runs) > MAX_REMEMBERED_RUNS:
            self._runs.popitem(last=False)
        return event

    def _counted(self, entry: AuditEntry) -> tuple[int, int, set[str]]:
        """The run's state just before `entry`, from its entries in the log."""
        assert entry.run_id is not None
        before = [e for e in self.audit.run_entries(self.tenant, entry.run_id) if e.seq < entry.seq]
        return (before[-1].seq if before else 0), len(run_events(before)), {e.event_id for e in before}

