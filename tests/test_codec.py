"""The encryption codec: AES-256-GCM payloads, key ids for rotation, and keys only from safe places."""

from __future__ import annotations

import base64
import stat

import pytest
from temporalio.api.common.v1 import Payload

from steward.codec import ENCODING, EncryptionCodec, Keyring, KeyringError
from steward.settings import Settings


def key(fill: bytes) -> str:
    return base64.b64encode(fill * 32).decode()


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_payloads_are_encrypted_under_the_first_key_and_decrypt_back():
    codec = EncryptionCodec(Keyring.parse(f"new:{key(b'n')},old:{key(b'o')}", "test"))
    (encoded,) = await codec.encode([payload('{"name": "Zebulon"}')])
    assert encoded.metadata["encoding"] == ENCODING and encoded.metadata["encryption-key-id"] == b"new"
    assert b"Zebulon" not in encoded.SerializeToString()
    assert await codec.decode([encoded]) == [payload('{"name": "Zebulon"}')]


async def test_rotation_keeps_old_payloads_readable_and_new_ones_use_the_new_key():
    old = EncryptionCodec(Keyring.parse(f"old:{key(b'o')}", "test"))
    (written_before,) = await old.encode([payload("before")])
    rotated = EncryptionCodec(Keyring.parse(f"new:{key(b'n')},old:{key(b'o')}", "test"))
    assert await rotated.decode([written_before]) == [payload("before")]
    (written_after,) = await rotated.encode([payload("after")])
    assert written_after.metadata["encryption-key-id"] == b"new"


async def test_plain_payloads_written_before_encryption_stay_readable():
    codec = EncryptionCodec(Keyring.parse(f"k:{key(b'k')}", "test"))
    assert await codec.decode([payload("legacy")]) == [payload("legacy")]


async def test_a_ciphertext_relabelled_with_another_key_id_fails_authentication():
    codec = EncryptionCodec(Keyring.parse(f"a:{key(b'a')},b:{key(b'a')}", "test"))  # same key bytes
    (encoded,) = await codec.encode([payload("x")])
    encoded.metadata["encryption-key-id"] = b"b"
    with pytest.raises(KeyringError, match="failed authentication"):
        await codec.decode([encoded])


@pytest.mark.parametrize(("text", "problem"), [("", "no keys"), ("nokid", "kid:base64key"),
                                                ("k:not*base64", "not base64"), (f"k:{base64.b64encode(b'short').decode()}", "32"),
                                                (f"k:{key(b'a')},k:{key(b'b')}", "twice")])
def test_bad_key_configuration_is_refused_without_echoing_keys(text, problem):
    with pytest.raises(KeyringError, match=problem) as raised:
        Keyring.parse(text, "STEWARD_ENCRYPTION_KEYS")
    assert "STEWARD_ENCRYPTION_KEYS" in str(raised.value)
    assert key(b"a") not in str(raised.value)


def test_a_key_file_is_generated_once_with_mode_0600(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = Keyring.from_settings(settings)
    assert stat.S_IMODE((tmp_path / "encryption-keys").stat().st_mode) == 0o600
    assert Keyring.from_settings(settings) == first


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"k:{key(b'k')}\n")
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="0600"):
        Keyring.from_settings(Settings(data_dir=tmp_path, encryption_key_file=path))


def test_a_named_key_file_that_does_not_exist_is_an_error_not_a_new_keyring(tmp_path):
    missing = tmp_path / "mounted" / "keys"
    with pytest.raises(KeyringError, match="no such key file"):
        Keyring.from_settings(Settings(data_dir=tmp_path, encryption_key_file=missing))
    assert not missing.exists()


def test_processes_creating_the_key_file_at_once_agree_on_one_keyring(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: Keyring.from_settings(settings), range(16)))
    assert all(r == rings[0] for r in rings)
    assert [p.name for p in tmp_path.iterdir()] == ["encryption-keys"]  # no temporary files left
