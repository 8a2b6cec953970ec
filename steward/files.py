"""Files several processes may create at once, of which exactly one must win, whole."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def create_once(path: Path, fill: Callable[[str], None]) -> None:
    """Create `path` unless it exists: `fill(temporary)` writes it completely under a private
    name beside it (mkstemp: mode 0600), and a hard link puts it in place. The link fails when
    `path` exists, so processes starting at once agree on one file, and nobody ever opens a file
    another process has created but not yet written."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        fill(temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: its file is the one
    finally:
        os.unlink(temporary)
