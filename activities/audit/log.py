"""The audit log: per tenant, an append-only series of hash-chained entries, with signed heads.

Layout in the object store (activities/artifacts/objects.py), per tenant:

    <tenant>/entries/000000000001    one entry, canonical JSON; entry n records the SHA-256 of entry n-1
    <tenant>/heads/000000000042      the chain head at entry 42, signed (Ed25519), when a run ended there
    <tenant>/events/<digest>         the sequence number an event id was written at (retries write once)
    <tenant>/runs/<digest>/<seq>     an empty object per entry of a run: a run's entries without a scan
    <tenant>/tail                    a hint for a process starting: a recent sequence number (never trusted)

One object per entry, because object storage has no append: writing entry n+1 is "create if
absent", so concurrent writers (workers, processes) each get their own sequence number and
link to what is really before it. Read in sequence order and joined with newlines, the entries are
the JSON Lines a SIEM ingests.

What the chain proves: an entry edited, removed from the middle or moved breaks the link of the
entry after it; the newest entries removed are caught by a signed head beyond the end. Entries
hold ids and digests, never personal data in clear (the writer's business: `data`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from activities.artifacts.objects import ObjectNotFound, ObjectStore
from activities.audit.signing import Signer, signature_holds

GENESIS = "0" * 64  # what the first entry links to
# How often the tail hint is rewritten: a process that starts probes at most this many entries
# forward from it, and the others save a file write and its fsync on every entry.
TAIL_HINT_EVERY = 64
_SEQ_WIDTH = 12  # sequence numbers as fixed-width names, so listing order is sequence order


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=1, description="1, 2, 3, ... per tenant, without gaps.")
    prev: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the previous entry as stored.")
    at: datetime
    tenant: str
    event_id: str = Field(description="Unique per event: a retried write of the same event is not a second entry.")
    kind: str = Field(description="run.started, llm.call, approval.vote, run.ended, ...")
    run_id: str | None = None
    workflow: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="Ids and digests; nothing personal in clear.")

    def canonical(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


class SignedHead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    seq: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signed_at: datetime
    key_id: str
    signature: str

    def message(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))


class Verification(BaseModel):
    tenant: str
    entries: int
    signed_heads: int
    problem: str | None = Field(None, description="The first thing that does not hold, naming its entry.")

    @property
    def holds(self) -> bool:
        return self.problem is None


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """SHA-256 of a value's canonical JSON: what an entry holds instead of the value."""
    canonical = json.dumps(to_jsonable_python(value, fallback=str), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    def __init__(self, store: ObjectStore, signer: Signer | None = None) -> None:
        self.store = store
        self.signer = signer
        # Where this process last saw each chain end, and that entry's SHA-256: a hint too, which
        # spares re-reading the last entry before each append.
        self._tails: dict[str, tuple[int, str]] = {}

    # --- writing ----------------------------------------------------------------------------

    def append(self, tenant: str, event_id: str, kind: str, *, run_id: str | None = None,
               workflow: str | None = None, data: dict[str, Any] | None = None,
               at: datetime | None = None) -> AuditEntry:
        """Append one entry, once per `event_id`: a retry after a crash returns the entry written
        before, unless the crash fell between writing it and recording its event id (then the
        event appears twice, both with the same event_id, which readers drop)."""
        marker = f"{tenant}/events/{sha256(event_id.encode())[:40]}"
        try:
            return self.entry(tenant, int(self.store.read(marker)))
        except ObjectNotFound:
            pass
        seq, prev = self._tail(tenant)
        while True:
            entry = AuditEntry(seq=seq + 1, prev=prev, at=at or datetime.now(UTC), tenant=tenant, event_id=event_id,
                               kind=kind, run_id=run_id, workflow=workflow, data=data or {})
            stored = entry.canonical()
            if self.store.create(_entry_key(tenant, entry.seq), stored):
                break
            seq, prev = seq + 1, sha256(self.store.read(_entry_key(tenant, seq + 1)))  # another writer's
        if run_id:
            self.store.create(f"{_run_folder(tenant, run_id)}/{entry.seq:0{_SEQ_WIDTH}d}", b"")
        self._tails[tenant] = (entry.seq, sha256(stored))
        if entry.seq % TAIL_HINT_EVERY == 0:
            self.store.replace(f"{tenant}/tail", str(entry.seq).encode())
        self.store.create(marker, str(entry.seq).encode())
        return entry

    def sign_head(self, tenant: str) -> SignedHead | None:
        """Sign where the chain ends now; None for a tenant with no entries yet."""
        if self.signer is None:
            raise ValueError("this audit log has no signing key")
        seq, digest = self._tail(tenant)
        if seq == 0:
            return None
        head = SignedHead(tenant=tenant, seq=seq, sha256=digest, signed_at=datetime.now(UTC),
                          key_id=self.signer.key_id, signature="")
        head.signature = self.signer.sign(head.message())
        self.store.create(f"{tenant}/heads/{seq:0{_SEQ_WIDTH}d}", canonical_json(head.model_dump(mode="json")))
        return head

    def _tail(self, tenant: str) -> tuple[int, str]:
        """The last entry's sequence number and SHA-256 (0 and GENESIS for none), from a hint on."""
        seq, digest = self._tails.get(tenant) or self._hinted_tail(tenant)
        while True:  # the hint may lag: another writer appended since
            try:
                following = self.store.read(_entry_key(tenant, seq + 1))
            except ObjectNotFound:
                return seq, digest
            seq, digest = seq + 1, sha256(following)

    def _hinted_tail(self, tenant: str) -> tuple[int, str]:
        """Where to start looking in a process new to this tenant: the tail hint, else the listing."""
        try:
            seq = int(self.store.read(f"{tenant}/tail"))
            return seq, sha256(self.store.read(_entry_key(tenant, seq)))
        except (ObjectNotFound, ValueError):
            keys = self.store.list(f"{tenant}/entries")
            return (_seq_of(keys[-1]), sha256(self.store.read(keys[-1]))) if keys else (0, GENESIS)

    # --- reading ----------------------------------------------------------------------------

    def entry(self, tenant: str, seq: int) -> AuditEntry:
        return AuditEntry.model_validate_json(self.store.read(_entry_key(tenant, seq)))

    def entries(self, tenant: str, *, after: int = 0) -> Iterator[AuditEntry]:
        """The tenant's entries in order, from sequence number `after + 1`; a retried event once."""
        seen: set[str] = set()
        for key in self.store.list(f"{tenant}/entries"):
            if _seq_of(key) <= after:
                continue
            entry = AuditEntry.model_validate_json(self.store.read(key))
            if entry.event_id not in seen:
                seen.add(entry.event_id)
                yield entry

    def last_seq(self, tenant: str) -> int:
        """Where the tenant's chain ends now: 0 for a tenant with no entries."""
        return self._tail(tenant)[0]

    def following(self, tenant: str, after: int, *, limit: int = 1000) -> list[AuditEntry]:
        """The entries after `after`, at most `limit`, read one by one: what a tail polls for,
        without listing the whole log."""
        entries: list[AuditEntry] = []
        while len(entries) < limit:
            try:
                entries.append(self.entry(tenant, after + len(entries) + 1))
            except ObjectNotFound:
                break
        return entries

    def run_entries(self, tenant: str, run_id: str) -> list[AuditEntry]:
        """A run's entries in order (a retried event once); [] for a run this tenant never had."""
        entries, seen = [], set()
        for key in self.store.list(_run_folder(tenant, run_id)):
            entry = self.entry(tenant, _seq_of(key))
            if entry.run_id == run_id and entry.event_id not in seen:
                seen.add(entry.event_id)
                entries.append(entry)
        return entries

    def tenants(self) -> list[str]:
        return self.store.list("")

    def tenant_of_run(self, run_id: str) -> str | None:
        """The tenant whose log has entries of `run_id`, if one has."""
        return next((t for t in self.tenants() if self.store.list(_run_folder(t, run_id))), None)

    # --- verifying --------------------------------------------------------------------------

    def verify(self, tenant: str, public_key: Ed25519PublicKey) -> Verification:
        """Recompute the chain and check every signed head; the first problem, naming its entry."""
        keys = self.store.list(f"{tenant}/entries")
        heads = self.store.list(f"{tenant}/heads")

        def found(problem: str) -> Verification:
            return Verification(tenant=tenant, entries=len(keys), signed_heads=len(heads), problem=problem)

        raws: list[bytes] = []
        for position, key in enumerate(keys, start=1):
            if _seq_of(key) != position:
                return found(f"entry {position} is missing (the next one stored is {_seq_of(key)})")
            raw = self.store.read(key)
            try:
                entry = AuditEntry.model_validate_json(raw)
            except ValidationError:
                return found(f"entry {position} is not a valid entry: it was edited")
            if entry.seq != position:
                return found(f"entry {position} holds entry {entry.seq}: entries were moved")
            if raw != entry.canonical():
                return found(f"entry {position} is not as it was written: it was edited")
            raws.append(raw)
        digests = {position: sha256(raw) for position, raw in enumerate(raws, start=1)}
        links = {position: AuditEntry.model_validate_json(raw).prev for position, raw in enumerate(raws, start=1)}
        for position in range(1, len(raws) + 1):
            if links[position] == digests.get(position - 1, GENESIS):
                continue
            # Either the entry before changed, or this entry's own link did, which changes this
            # entry's digest too: the entry after tells which.
            if position + 1 in links and links[position + 1] != digests[position]:
                return found(f"entry {position} is not as it was written: it was edited")
            if position == 1:
                return found("entry 1 does not start the chain: it was edited")
            return found(f"entry {position - 1} is not as it was written: entry {position} links to another "
                         f"SHA-256")
        for key in heads:
            try:
                head = SignedHead.model_validate_json(self.store.read(key))
            except ValidationError:
                return found(f"the signed head at entry {_seq_of(key)} is not valid: it was edited")
            if head.tenant != tenant or head.seq != _seq_of(key) or not signature_holds(
                    public_key, head.signature, head.message()):
                return found(f"the signed head at entry {_seq_of(key)} does not verify with this public key")
            if head.seq > len(keys):
                return found(f"entries {len(keys) + 1} to {head.seq} are missing: a head was signed at entry "
                             f"{head.seq}")
            if digests[head.seq] != head.sha256:
                return found(f"entry {head.seq} does not match the head signed at it: it was edited")
        return Verification(tenant=tenant, entries=len(keys), signed_heads=len(heads))


def _run_folder(tenant: str, run_id: str) -> str:
    # A digest: run ids come from callers and need not be safe object keys.
    return f"{tenant}/runs/{sha256(run_id.encode())[:40]}"


def _entry_key(tenant: str, seq: int) -> str:
    return f"{tenant}/entries/{seq:0{_SEQ_WIDTH}d}"


def _seq_of(key: str) -> int:
    return int(key.rsplit("/", 1)[1])
