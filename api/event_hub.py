"""The API's view of new audit entries, for the event streams (api/routes/events.py).

One tail per tenant with an open stream, however many streams: it polls the tenant's log for
the entry after the last one it saw (one small read while nothing happens), reads each new entry
once, and hands it to every stream of that tenant. A stream whose client falls too far behind is
ended rather than buffered without bound; the client resumes with Last-Event-ID.

The number of open streams is bounded per tenant: a stream holds a connection and a queue for
as long as the client wants, so a tenant cannot open them without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from activities.audit.log import AuditEntry, AuditLog
from steward.logs import get_logger

log = get_logger(__name__)

# How often a tail looks for the next entry: events reach clients within this, and a quiet
# tenant costs one failed small read per interval.
POLL_INTERVAL_S = 0.2
# Entries one stream may have waiting; beyond it the stream ends and its client resumes.
QUEUE_LIMIT = 5000
READ_BATCH = 500
# Entries a new stream is also offered from just before it opened. A run's history is read from
# its index, which is written just after each entry: an entry already at the tail whose index was
# not yet written would otherwise fall between history and live. Streams drop what they have.
RECENT = 256


class TooManyStreams(Exception):
    pass


class Listener:
    """One open stream's place at the tail: `queue` receives each new entry of its tenant, and
    None when the stream has fallen behind and must end."""

    def __init__(self, hub: EventHub, tenant: str, position: int) -> None:
        self.hub = hub
        self.tenant = tenant
        self.position = position  # where the tenant's log ended when the stream opened
        self.queue: asyncio.Queue[AuditEntry | None] = asyncio.Queue()
        self.closed = False

    def offer(self, entry: AuditEntry) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.queue.put_nowait(None)
            self.close()
        else:
            self.queue.put_nowait(entry)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._leave(self)


class _Tail:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.task: asyncio.Task[None] | None = None
        self.position = 0
        self.recent: deque[AuditEntry] = deque(maxlen=RECENT)


class EventHub:
    def __init__(self, audit: AuditLog, max_streams_per_tenant: int, *, poll_interval_s: float = POLL_INTERVAL_S):
        self.audit = audit
        self.max_streams_per_tenant = max_streams_per_tenant
        self.poll_interval_s = poll_interval_s
        self._tails: dict[str, _Tail] = {}

    def open_streams(self, tenant: str) -> int:
        tail = self._tails.get(tenant)
        return len(tail.listeners) if tail else 0

    async def listen(self, tenant: str) -> Listener:
        """A place at the tenant's tail: the entries shortly before now, then every entry written
        after; `position` says where the log ended when it opened. Close it when the stream ends.
        Raises TooManyStreams beyond the tenant's limit."""
        tail = self._tails.setdefault(tenant, _Tail())
        if len(tail.listeners) >= self.max_streams_per_tenant:
            raise TooManyStreams(tenant)
        if tail.task is None:
            position = await asyncio.to_thread(self.audit.last_seq, tenant)
            if tail.task is None:
                tail.position = position
                tail.task = asyncio.create_task(self._follow(tenant, tail, max(0, position - RECENT)),
                                                name=f"event-tail-{tenant}")
        listener = Listener(self, tenant, tail.position)
        for entry in tail.recent:
            listener.offer(entry)
        tail.listeners.add(listener)
        return listener

    def _leave(self, listener: Listener) -> None:
        tail = self._tails.get(listener.tenant)
        if tail is None:
            return
        tail.listeners.discard(listener)
        if not tail.listeners:
            del self._tails[listener.tenant]
            if tail.task is not None:
                tail.task.cancel()

    async def _follow(self, tenant: str, tail: _Tail, after: int) -> None:
        while tail.listeners:
            try:
                entries = await asyncio.to_thread(self.audit.following, tenant, after, limit=READ_BATCH)
            except Exception:  # a torn read or a full disk must not end every stream of the tenant
                log.exception("event tail could not read the audit log", tenant=tenant, after=after)
                entries = []
            for entry in entries:
                tail.recent.append(entry)
                tail.position = max(tail.position, entry.seq)
                for listener in list(tail.listeners):
                    listener.offer(entry)
                after = entry.seq
            if len(entries) < READ_BATCH:
                await asyncio.sleep(self.poll_interval_s)

    async def close(self) -> None:
        tasks = [t.task for t in self._tails.values() if t.task is not None]
        for listener in [listener for t in self._tails.values() for listener in t.listeners]:
            listener.queue.put_nowait(None)
        self._tails.clear()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
