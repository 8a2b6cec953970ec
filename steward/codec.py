"""Encryption at rest: every payload Steward writes to Temporal is AES-256-GCM encrypted.

Workflow and activity inputs and results, update arguments, memos and failure details (the data
converter encodes failure attributes) pass through `EncryptionCodec` before they leave the
process, so applicants' personal data never lands in Temporal's database in clear. The artifact
store encrypts files with the same keys.

Keys form a keyring: the first key encrypts, every key decrypts, and each payload names the key
that encrypted it (`encryption-key-id`), so keys rotate by adding a new one in front and keeping
the old ones until nothing needs them (`steward keys rotate`, then `steward keys reencrypt` for
what Steward stores itself). Keys come from STEWARD_ENCRYPTION_KEYS or a key file of mode 0600
(generated under the data dir on first use).

Each tenant's data is encrypted under a key of its own, derived from the keyring key with HKDF and
the tenant id, and the payload names its tenant (`encryption-tenant`, bound as associated data).
So the codec endpoint can decrypt a caller's own tenant's payloads and leave every other tenant's
as ciphertext. Which tenant a payload belongs to comes from the run it belongs to: Temporal gives
the codec the workflow id (its serialization context), and `TenantScopes` knows the tenant of every
run this process has read a payload of, and of their children (`<parent id>-...`). A request to
the API names its tenant directly (`encrypting_for`). Payloads written before tenants had keys of
their own (no `encryption-tenant`) stay readable by every Steward process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import dataclasses
import os
import secrets
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from steward.settings import Settings, read_or_create_secret_file, read_secret_file

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
TENANT_METADATA = "encryption-tenant"
KEY_FILE = "encryption-keys"
NONCE_BYTES = 12  # the size AES-GCM is specified and fastest for
KEY_BYTES = 32  # AES-256
# HKDF's `info` for tenant keys: versioned, so a future derivation cannot collide with this one.
_TENANT_KEY_INFO = b"steward tenant key v1\x00"
# How many runs' tenants a process remembers: a run is re-learnt from its next payload when evicted.
SCOPES_REMEMBERED = 50_000


class KeyringError(ValueError):
    """The configured keys cannot be used; the message says which and why, never the key."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    active: str

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """`kid:base64key` entries separated by commas or newlines; the first one encrypts."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in (e.strip() for e in text.replace("\n", ",").split(",")):
            if not entry or entry.startswith("#"):
                continue
            kid, sep, encoded = entry.partition(":")
            if not sep or not kid:
                raise KeyringError(f"{source}: an entry is not kid:base64key")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise KeyringError(f"{source}: key {kid!r} is not base64") from None
            if len(key) != KEY_BYTES:
                raise KeyringError(f"{source}: key {kid!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
            if kid in keys:
                raise KeyringError(f"{source}: key id {kid!r} appears twice")
            keys[kid] = key
            order.append(kid)
        if not order:
            raise KeyringError(f"{source}: no keys")
        return cls(keys=keys, active=order[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        if settings.encryption_keys is not None:
            return cls.parse(settings.encryption_keys.get_secret_value(), "STEWARD_ENCRYPTION_KEYS")
        if settings.encryption_key_file is not None:
            # A key file named explicitly must exist: a typo or a missing mount must not quietly
            # start a new keyring that cannot read anything written before.
            try:
                return cls.parse(read_secret_file(settings.encryption_key_file), str(settings.encryption_key_file))
            except FileNotFoundError:
                raise KeyringError(f"{settings.encryption_key_file}: no such key file") from None
        path = settings.data_dir / KEY_FILE
        return cls.parse(read_or_create_secret_file(path, new_key_entry), str(path))

    def encrypt(self, plaintext: bytes, tenant: str | None = None) -> tuple[str, bytes]:
        """Encrypted under the active key: the tenant's own key derived from it when `tenant` is given."""
        nonce = os.urandom(NONCE_BYTES)
        return self.active, nonce + self._aead(self.active, tenant).encrypt(
            nonce, plaintext, _associated(self.active, tenant))

    def decrypt(self, kid: str, blob: bytes, tenant: str | None = None) -> bytes:
        if kid not in self.keys:
            raise KeyringError(f"no key {kid!r} in the keyring: was it removed while data still needs it?")
        try:
            return self._aead(kid, tenant).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(kid, tenant))
        except InvalidTag:
            scope = f" for tenant {tenant!r}" if tenant is not None else ""
            raise KeyringError(f"data encrypted under {kid!r}{scope} failed authentication") from None

    def _aead(self, kid: str, tenant: str | None) -> AESGCM:
        key = self.keys[kid]
        return AESGCM(key if tenant is None else _tenant_key(key, tenant))


def _associated(kid: str, tenant: str | None) -> bytes:
    # The key id and tenant are bound as associated data: a ciphertext cannot be passed off under
    # another key id or as another tenant's.
    return kid.encode() if tenant is None else f"{kid}\x00{tenant}".encode()


@lru_cache(maxsize=4096)
def _tenant_key(key: bytes, tenant: str) -> bytes:
    # HKDF per (key, tenant) once per process: payloads are encrypted thousands of times a minute.
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=_TENANT_KEY_INFO + tenant.encode()).derive(key)


def new_key_entry() -> str:
    """A fresh keyring file: one key, named after the day it was made."""
    kid = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}\n"


# --- which tenant a payload belongs to ---------------------------------------------------------

_encrypting_for: contextvars.ContextVar[str | None] = contextvars.ContextVar("steward_encrypting_for", default=None)


@contextlib.contextmanager
def encrypting_for(tenant: str) -> Iterator[None]:
    """Payloads encoded in this context (an API request, an activity's own client calls) are
    `tenant`'s, whatever run they go to."""
    token = _encrypting_for.set(tenant)
    try:
        yield
    finally:
        _encrypting_for.reset(token)


def set_encrypting_for(tenant: str) -> None:
    """For the rest of the current task (an API request's): payloads encoded are `tenant`'s."""
    _encrypting_for.set(tenant)


@dataclass
class TenantScopes:
    """The tenant of each run this process has read a tenant's payload of, most recent kept.

    A run's first payload (its input) is written by whoever started it, who knew the tenant; every
    process that handles the run reads that payload before it writes one of its own (a worker
    decodes a workflow's input before its first command, an activity's input before its result),
    so it learns the tenant before it needs it. A child's id starts with its parent's and a dash
    (workflows/declarative.py, workflows/customer_onboarding.py): its input is written by the
    parent's worker, which finds the parent's tenant that way.
    """

    limit: int = SCOPES_REMEMBERED
    _known: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def remember(self, workflow_id: str, tenant: str) -> None:
        self._known[workflow_id] = tenant
        self._known.move_to_end(workflow_id)
        while len(self._known) > self.limit:
            self._known.popitem(last=False)

    def tenant_of(self, workflow_id: str) -> str | None:
        candidate = workflow_id
        while True:
            if (tenant := self._known.get(candidate)) is not None:
                return tenant
            candidate, dash, _ = candidate.rpartition("-")
            if not dash or not candidate:
                return None


SCOPES = TenantScopes()


def _workflow_id_of(context: SerializationContext) -> str | None:
    if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
        return context.workflow_id
    return None


def payload_tenant(payload: Payload) -> str | None:
    """The tenant whose key encrypted `payload`; None for one without (platform or older data)."""
    value = payload.metadata.get(TENANT_METADATA)
    return value.decode() if value else None


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """The codec every Steward client and worker uses: encrypts for the run's tenant, reads all."""

    def __init__(self, keyring: Keyring, scopes: TenantScopes = SCOPES, workflow_id: str | None = None) -> None:
        self.keyring = keyring
        self.scopes = scopes
        self.workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        return type(self)(self.keyring, self.scopes, _workflow_id_of(context))

    def tenant(self) -> str | None:
        """Whose payloads this codec writes now: the request's tenant, else the run's, else nobody's."""
        if (tenant := _encrypting_for.get()) is not None:
            return tenant
        return self.scopes.tenant_of(self.workflow_id) if self.workflow_id else None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encode_for(self.tenant(), payloads)

    def encode_for(self, tenant: str | None, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            kid, blob = self.keyring.encrypt(payload.SerializeToString(), tenant)
            metadata = {"encoding": ENCODING, KEY_ID_METADATA: kid.encode()}
            if tenant is not None:
                metadata[TENANT_METADATA] = tenant.encode()
            out.append(Payload(metadata=metadata, data=blob))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            # Payloads written before encryption was on stay readable.
            if not is_encrypted(payload):
                out.append(payload)
                continue
            tenant = payload_tenant(payload)
            out.append(self.decrypt(payload, tenant))
            if tenant is not None and self.workflow_id is not None:
                self.scopes.remember(self.workflow_id, tenant)
        return out

    def decrypt(self, payload: Payload, tenant: str | None) -> Payload:
        kid = payload.metadata[KEY_ID_METADATA].decode()
        return Payload.FromString(self.keyring.decrypt(kid, payload.data, tenant))


def data_converter(keyring: Keyring) -> DataConverter:
    """Pydantic payloads, encrypted, with failure messages and stack traces encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
