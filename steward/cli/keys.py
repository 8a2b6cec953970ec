"""`steward keys`: list, rotate and activate encryption keys, and re-encrypt what Steward stores.

The keyring (steward/codec.py) is a file of `kid:base64key` lines, the first of which encrypts.
`rotate` adds a new key: first, so it encrypts from each process's next start, or last with
`--staged`, so every replica can read it before any writes with it (`activate` then moves it
first). Either way the old keys stay, for reading. The file is rewritten whole (mode 0600, a
temporary file renamed over it) under a lock, so two rotations at once cannot lose a key.

`reencrypt` moves what Steward keeps itself to the active key: artifacts (under their run's
tenant's key; one from before tenants had keys of their own goes to the tenant the audit log
names for its run) and the subscriptions' URLs and secrets. It is idempotent and resumable: what
is already under the active key is left alone, and each artifact and row is moved whole, so an
interrupted run is finished by running it again. Temporal's histories cannot be rewritten: they
stay readable while the keyring keeps the keys that wrote them, until retention removes them. The
audit log holds ids and digests, signed, and no encrypted data: nothing of it moves.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from steward.codec import Keyring, new_key_entry
from steward.files import replace_whole
from steward.settings import Settings, read_secret_file

# Progress every this many artifacts: a store of millions is not silent for hours.
PROGRESS_EVERY = 500


class KeysCliError(Exception):
    """What `steward keys` cannot do, and what to do instead."""


def key_file(settings: Settings) -> Path:
    """The keyring file this deployment reads; refused when the keys come from the environment."""
    if settings.encryption_keys is not None:
        raise KeysCliError("the keyring comes from STEWARD_ENCRYPTION_KEYS, which this command cannot change: "
                           "rotate it where it is kept (docs/security.md#rotating-a-key)")
    return settings.encryption_key_file or settings.data_dir / "encryption-keys"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        os.chmod(lock.name, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _entries(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _write(path: Path, entries: list[str]) -> Keyring:
    text = "\n".join(entries) + "\n"
    keyring = Keyring.parse(text, str(path))  # never write a keyring no process could load
    replace_whole(path, text.encode())
    return keyring


def _key_id(entry: str) -> str:
    return entry.partition(":")[0]


def rotate(settings: Settings, *, staged: bool) -> tuple[str, Keyring]:
    path = key_file(settings)
    if not path.exists():
        raise KeysCliError(f"{path}: no such key file (start Steward once to create it)")
    with _locked(path):
        entries = _entries(read_secret_file(path))
        Keyring.parse("\n".join(entries), str(path))  # a broken file is reported, not rewritten
        new = new_key_entry().strip()
        while _key_id(new) in {_key_id(e) for e in entries}:  # two rotations in a day: ids stay unique
            new = new_key_entry().strip()
        keyring = _write(path, [*entries, new] if staged else [new, *entries])
    return _key_id(new), keyring


def activate(settings: Settings, kid: str) -> Keyring:
    path = key_file(settings)
    with _locked(path):
        entries = _entries(read_secret_file(path))
        chosen = [e for e in entries if not e.startswith("#") and _key_id(e) == kid]
        if not chosen:
            raise KeysCliError(f"{path}: no key {kid!r} (steward keys list shows the ids)")
        return _write(path, [*chosen, *(e for e in entries if e not in chosen)])


def reencrypt(settings: Settings, *, out: TextIO | None = None) -> dict[str, int]:
    """Artifacts and subscription secrets under the active key; counts of what happened."""
    from activities.artifacts.store import artifact_store
    from activities.audit.activity import audit_log
    from activities.events.subscriptions import SubscriptionStore

    keyring = Keyring.from_settings(settings)
    store = artifact_store(settings, keyring)
    audit = audit_log(settings)
    counts = {"artifacts_examined": 0, "artifacts_reencrypted": 0, "artifacts_current": 0, "artifacts_failed": 0}
    for run_id in store.run_ids():
        tenant: str | None = None
        looked_up = False
        for name in (ref.name for ref in store.list(run_id)):
            if not looked_up:  # only for runs with artifacts, once
                tenant, looked_up = audit.tenant_of_run(run_id), True
            result = store.reencrypt(run_id, name, tenant)
            counts["artifacts_examined"] += 1
            counts[f"artifacts_{result.outcome}"] += 1
            if result.problem and out is not None:
                print(f"failed: {result.problem}", file=out, flush=True)
            if out is not None and counts["artifacts_examined"] % PROGRESS_EVERY == 0:
                print(f"... {counts['artifacts_examined']} artifacts examined", file=out, flush=True)
    counts["subscription_rows_resealed"] = SubscriptionStore(settings, keyring).reseal()
    return counts


# --- the commands ------------------------------------------------------------------------------


def cmd_keys_list(args: argparse.Namespace) -> int:
    keyring = Keyring.from_settings(args.settings_of(args))
    for kid in keyring.keys:
        print(f"{kid}\t{'encrypts and decrypts' if kid == keyring.active else 'decrypts'}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    kid, keyring = rotate(args.settings_of(args), staged=args.staged)
    if args.staged:
        print(f"added key {kid} last: it decrypts once each process restarts; nothing encrypts with it yet.\n"
              f"Restart every Steward process, then: steward keys activate {kid}")
    else:
        print(f"added key {kid} first: each process encrypts with it from its next start; "
              f"{len(keyring.keys) - 1} older key(s) kept for reading.\n"
              "Restart every Steward process, then: steward keys reencrypt")
    return 0


def cmd_keys_activate(args: argparse.Namespace) -> int:
    activate(args.settings_of(args), args.kid)
    print(f"key {args.kid} is first: each process encrypts with it from its next start.\n"
          "Restart every Steward process, then: steward keys reencrypt")
    return 0


def cmd_keys_reencrypt(args: argparse.Namespace) -> int:
    counts = reencrypt(args.settings_of(args), out=sys.stderr)
    print(" ".join(f"{name}={value}" for name, value in counts.items()))
    return 1 if counts["artifacts_failed"] else 0


def add_commands(subparsers: Any, settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """`steward keys ...`; `settings_of` reads the settings as every command does (errors named)."""
    keys = subparsers.add_parser("keys", help="list and rotate encryption keys; re-encrypt artifacts under the new one")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    p = keys_sub.add_parser("list", help="key ids, and which one encrypts (never the keys)")
    p.set_defaults(func=cmd_keys_list, settings_of=settings_of)
    p = keys_sub.add_parser("rotate", help="add a new key to the key file, first (it encrypts) or --staged last")
    p.add_argument("--staged", action="store_true",
                   help="add it last: every replica can decrypt with it before any encrypts with it")
    p.set_defaults(func=cmd_keys_rotate, settings_of=settings_of)
    p = keys_sub.add_parser("activate", help="move a key to the front of the key file: it encrypts from then on")
    p.add_argument("kid", help="the key id (steward keys list)")
    p.set_defaults(func=cmd_keys_activate, settings_of=settings_of)
    p = keys_sub.add_parser("reencrypt", help="move artifacts and subscription secrets to the active key; "
                                              "idempotent, resumable")
    p.set_defaults(func=cmd_keys_reencrypt, settings_of=settings_of)

