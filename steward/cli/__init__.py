"""The entry points: the `steward` command, the supervisor behind `steward up`, the benchmark and
the demo.

This is the top floor. It may import api/ and workers/ (it starts them); nothing below it imports
it, and the kernel beside it (the rest of steward/) imports neither api/ nor workers/.
"""

from steward.cli.main import main

__all__ = ["main"]
