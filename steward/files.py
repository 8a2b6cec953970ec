"""Files several processes may create or replace at once: each seen whole, or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def create_once(path: Path, fill: Callable[[str], None]) -> bool:
    """Create `path` unless it exists: `fill(temporary)` writes it completely under a private
    name beside it (mkstemp: mode 0600), and a hard link puts it in place. The link fails when
    `path` exists, so processes starting at once agree on one file, and nobody ever opens a file
    another process has created but not yet written. True when this call's file is the one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        fill(temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False  # another process made it first: its file is the one
        return True
    finally:
        os.unlink(temporary)


def replace_whole(path: Path, data: bytes) -> None:
    """Write `path` (mode 0600) so that a reader finds the old file or the new one, never part:
    written and synced under a private name beside it (mkstemp, so writers in threads and processes
    never share one), then renamed over it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
