"""Encryption at rest: every payload Steward writes to Temporal is AES-256-GCM encrypted.

Workflow and activity inputs and results, update arguments, memos and failure details (the data
converter encodes failure attributes) pass through `EncryptionCodec` before they leave the
process, so applicants' personal data never lands in Temporal's database in clear. The artifact
store encrypts files with the same keys.

Keys form a keyring: the first key encrypts, every key decrypts, and each payload names the key
that encrypted it (`encryption-key-id`), so keys rotate by adding a new one in front and keeping
the old ones until nothing needs them. Keys come from STEWARD_ENCRYPTION_KEYS or a key file of
mode 0600 (generated under the data dir on first use).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from steward.settings import Settings, read_or_create_secret_file, read_secret_file

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_FILE = "encryption-keys"
NONCE_BYTES = 12  # the size AES-GCM is specified and fastest for
KEY_BYTES = 32  # AES-256


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

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        # The key id is bound as associated data: a ciphertext cannot be passed off under another id.
        return self.active, nonce + AESGCM(self.keys[self.active]).encrypt(nonce, plaintext, self.active.encode())

    def decrypt(self, kid: str, blob: bytes) -> bytes:
        key = self.keys.get(kid)
        if key is None:
            raise KeyringError(f"no key {kid!r} in the keyring: was it removed while data still needs it?")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise KeyringError(f"data encrypted under {kid!r} failed authentication") from None


def new_key_entry() -> str:
    """A fresh keyring file: one key, named after the day it was made."""
    kid = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}\n"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            kid, blob = self.keyring.encrypt(payload.SerializeToString())
            out.append(Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: kid.encode()}, data=blob))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            # Payloads written before encryption was on stay readable.
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            kid = payload.metadata[KEY_ID_METADATA].decode()
            out.append(Payload.FromString(self.keyring.decrypt(kid, payload.data)))
        return out


def data_converter(keyring: Keyring) -> DataConverter:
    """Pydantic payloads, encrypted, with failure messages and stack traces encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
