"""Child processes that never outlive their parent.

The supervisor's children (server, worker, API) and the worker's CPU processes all ask Linux to
send them SIGTERM when their parent dies, so a killed parent leaves nothing running behind it.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def exit_with_parent() -> None:
    """Called in a child already running (a pool process): SIGTERM it when its parent dies."""
    ask = die_with_parent()
    if ask is not None:
        ask()
