"""Files several processes may create at once, of which exactly one must win, whole."""

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
