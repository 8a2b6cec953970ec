"""Keeps the API's catalog in step with the declarative definition folders while the API runs.

The code workflows are imported once at start; the definitions (`*.yaml`) are read at start and
reread whenever a folder's files change (added, edited, deleted). The new catalog replaces the old
in one assignment to `app.state.catalog`, which routes read once per request (api/deps.py), so a
request sees the old catalog or the new one, never a mix. Running instances are unaffected: each
carries its definition in its input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.datastructures import State

from steward.logs import get_logger
from workflows.catalog import Catalog, definition_files, with_definitions

# An author sees an edit within a second; a stat of each definition file per second costs nothing,
# and polling works on every filesystem (bind mounts and network shares included) with no new dependency.
DEFINITIONS_POLL_S = 1.0

log = get_logger(__name__)

# Each definition file as (path, mtime_ns, size, inode): an edit changes the first two, an editor's
# save-by-rename the inode, and adding or deleting a file the set of paths.
Signature = tuple[tuple[str, int, int, int], ...]


def folder_signature(dirs: Iterable[Path]) -> Signature:
    found = []
    for path in definition_files(dirs):
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted since it was listed: the next listing agrees
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return tuple(found)


def changes(old: Catalog, new: Catalog) -> dict[str, list[str]]:
    """The declarative workflows a reload added, changed (their file's content) and removed."""
    before, after = old.definitions, new.definitions
    return {
        "added": sorted(after.keys() - before.keys()),
        "changed": sorted(name for name in after.keys() & before.keys() if after[name] != before[name]),
        "removed": sorted(before.keys() - after.keys()),
    }


def log_problems(catalog: Catalog) -> None:
    for problem in catalog.problems:  # a broken definition is left out, not fatal
        log.warning("declarative definition not loaded", problem=problem)


class DefinitionsWatch:
    """Owns `state.catalog`: `code`'s workflows plus the definitions `dirs` hold."""

    def __init__(self, state: State, code: Catalog, dirs: Sequence[Path],
                 poll_s: float = DEFINITIONS_POLL_S) -> None:
        self.state = state
        self.code = code
        self.dirs = list(dirs)
        self.poll_s = poll_s
        self._signature: Signature | None = None

    def load(self) -> Catalog:
        """Read the folders now onto `state.catalog`, logging each problem. Blocking: for start-up."""
        self._signature = folder_signature(self.dirs)
        self.state.catalog = with_definitions(self.code, self.dirs)
        log_problems(self.state.catalog)
        return self.state.catalog

    async def reload_if_changed(self) -> bool:
        """Reread the definitions if a folder's files changed since the last read; True if it did."""
        signature = await asyncio.to_thread(folder_signature, self.dirs)
        if signature == self._signature:
            return False
        # Remembered before reading: the signature is taken first, so a file written during the read
        # shows up as the next change; and a read that fails is retried on the next edit, not logged
        # again every poll.
        self._signature = signature
        catalog = await asyncio.to_thread(with_definitions, self.code, self.dirs)
        previous, self.state.catalog = self.state.catalog, catalog
        log.info("declarative definitions reloaded", **changes(previous, catalog))
        log_problems(catalog)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.reload_if_changed()
            except Exception:  # the catalog stays as it was; the watch goes on
                log.exception("declarative definitions not reloaded")

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Reread the definitions on every change until the block ends."""
        task = asyncio.create_task(self._poll(), name="definitions-watch")
        try:
            yield
        finally:
            task.cancel()
            # wait() rather than awaiting the task: its CancelledError is expected, ours must propagate.
            await asyncio.wait([task])
