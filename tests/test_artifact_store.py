"""The file artifact store: atomic writes, path safety, and a digest checked on every read."""

from __future__ import annotations

import hashlib
import stat

import pytest

from activities.artifacts.store import ArtifactCorrupted, ArtifactNotFound, FileArtifactStore


def test_put_then_read_returns_the_bytes_and_their_digest(tmp_path):
    store = FileArtifactStore(tmp_path)
    ref = store.put("run-1", "report.pdf", b"%PDF-1.7 body", "application/pdf")
    assert ref.sha256 == hashlib.sha256(b"%PDF-1.7 body").hexdigest() and ref.size == 13
    assert store.read("run-1", "report.pdf") == (ref, b"%PDF-1.7 body")
    assert store.list("run-1") == [ref] and store.list("run-2") == []
    assert stat.S_IMODE((tmp_path / "run-1" / "report.pdf").stat().st_mode) == 0o600


def test_a_second_write_replaces_the_first_whole(tmp_path):
    store = FileArtifactStore(tmp_path)
    store.put("run-1", "r.pdf", b"first attempt", "application/pdf")
    ref = store.put("run-1", "r.pdf", b"second", "application/pdf")
    assert store.read("run-1", "r.pdf") == (ref, b"second")
    assert [p.name for p in (tmp_path / "run-1").iterdir() if p.name.startswith(".")] == []  # no temp files left


@pytest.mark.parametrize(("run_id", "name"), [("../escape", "a.pdf"), ("run", "../../etc/passwd"),
                                              ("run", "a/b.pdf"), ("run", ".hidden"), ("run", "x.meta.json"),
                                              ("", "a.pdf")])
def test_paths_that_could_escape_or_collide_are_refused(tmp_path, run_id, name):
    with pytest.raises(ValueError):
        FileArtifactStore(tmp_path).put(run_id, name, b"x", "text/plain")


def test_reading_a_missing_artifact_says_so(tmp_path):
    with pytest.raises(ArtifactNotFound):
        FileArtifactStore(tmp_path).read("run-1", "nothing.pdf")


def test_bytes_changed_on_disk_are_detected_on_read(tmp_path):
    store = FileArtifactStore(tmp_path)
    store.put("run-1", "r.pdf", b"original", "application/pdf")
    (tmp_path / "run-1" / "r.pdf").write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupted):
        store.read("run-1", "r.pdf")


def test_encrypted_store_keeps_no_plaintext_on_disk_and_reads_it_back(tmp_path):
    from steward.codec import Keyring
    from tests.conftest import TEST_ENCRYPTION_KEYS

    store = FileArtifactStore(tmp_path, Keyring.parse(TEST_ENCRYPTION_KEYS, "tests"))
    secret_text = b"Applicant: Zebulon Quillfeather, passport 12345"
    ref = store.put("run-1", "r.pdf", secret_text, "application/pdf")
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "run-1").iterdir())
    assert b"Zebulon" not in on_disk and b"12345" not in on_disk
    assert store.read("run-1", "r.pdf") == (ref, secret_text)
    assert ref.sha256 == hashlib.sha256(secret_text).hexdigest()  # the document's digest, not the ciphertext's


def test_an_encrypted_artifact_under_an_unknown_key_is_refused(tmp_path):
    import base64

    from steward.codec import Keyring

    FileArtifactStore(tmp_path, Keyring.parse("old:" + base64.b64encode(b"o" * 32).decode(), "t")).put(
        "run-1", "r.pdf", b"data", "application/pdf")
    rotated_away = FileArtifactStore(tmp_path, Keyring.parse("new:" + base64.b64encode(b"n" * 32).decode(), "t"))
    with pytest.raises(ArtifactCorrupted, match="no key 'old'"):
        rotated_away.read("run-1", "r.pdf")
