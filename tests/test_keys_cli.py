"""`steward keys`: rotating the keyring file, and re-encrypting what Steward stores, resumably."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from activities.artifacts.store import StoredArtifact, artifact_store
from activities.audit.activity import audit_log
from activities.events.subscriptions import SubscriptionStore
from steward.cli.main import main
from steward.codec import KEY_FILE, Keyring, new_key_entry
from steward.settings import Settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment whose keyring is the data dir's key file, as `steward up` makes it."""
    for variable in ("STEWARD_ENCRYPTION_KEYS", "STEWARD_ENCRYPTION_KEY_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path))
    key_file = tmp_path / KEY_FILE
    key_file.write_text(new_key_entry())
    key_file.chmod(0o600)
    return tmp_path


def keys(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["keys", *args])
    out, err = capsys.readouterr()
    return code, out, err


def keyring_of(data_dir: Path) -> Keyring:
    return Keyring.from_settings(Settings(data_dir=data_dir))


def meta(data_dir: Path, run_id: str, name: str) -> StoredArtifact:
    return StoredArtifact.model_validate_json((data_dir / "artifacts" / run_id / f"{name}.meta.json").read_bytes())


def test_rotate_puts_a_new_key_first_keeps_the_old_for_reading_and_the_file_private(data_dir, capsys):
    old = keyring_of(data_dir)

    code, out, _ = keys(capsys, "rotate")

    assert code == 0
    rotated = keyring_of(data_dir)
    assert rotated.active != old.active and rotated.keys[old.active] == old.keys[old.active]
    assert f"added key {rotated.active} first" in out and "steward keys reencrypt" in out
    assert stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode) == 0o600
    assert keys(capsys, "list")[1].splitlines() == [f"{rotated.active}\tencrypts and decrypts",
                                                    f"{old.active}\tdecrypts"]
    assert old.keys[old.active].hex() not in out and "base64" not in out


def test_a_staged_key_decrypts_everywhere_before_activate_makes_it_encrypt(data_dir, capsys):
    old = keyring_of(data_dir)

    assert keys(capsys, "rotate", "--staged")[0] == 0
    staged = keyring_of(data_dir)
    new = next(kid for kid in staged.keys if kid != old.active)
    assert staged.active == old.active

    assert keys(capsys, "activate", new)[0] == 0
    assert keyring_of(data_dir).active == new and set(keyring_of(data_dir).keys) == {old.active, new}
    code, _, err = keys(capsys, "activate", "k-nope")
    assert code == 2 and "no key 'k-nope'" in err


def test_rotate_refuses_a_keyring_from_the_environment_naming_where_to_rotate_it(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("STEWARD_ENCRYPTION_KEYS", new_key_entry().strip())

    code, out, err = keys(capsys, "rotate")

    assert code == 2 and out == ""
    assert "STEWARD_ENCRYPTION_KEYS" in err and "docs/security.md#rotating-a-key" in err


async def test_reencrypt_moves_every_artifact_and_subscription_to_the_new_key_and_a_second_run_changes_nothing(
        data_dir, capsys):
    settings = Settings(data_dir=data_dir)
    before = artifact_store(settings, keyring_of(data_dir))
    before.put("review-1", "report.pdf", b"acme's report", "application/pdf", tenant="acme")
    before.put("review-2", "report.pdf", b"older report", "application/pdf")  # before tenants had keys
    audit_log(settings).append("globex", "review-2:started", "run.started", run_id="review-2")
    clear = artifact_store(settings, None)  # before encryption at all
    clear.put("review-3", "notes.txt", b"clear notes", "text/plain")
    subscriptions = SubscriptionStore(settings, keyring_of(data_dir))
    await subscriptions.create("acme", url="https://hooks.example/acme", event_types=["run.completed"],
                               workflows=[], description=None, created_by="olga")
    assert keys(capsys, "rotate")[0] == 0
    new = keyring_of(data_dir)

    code, out, _ = keys(capsys, "reencrypt")

    assert code == 0
    assert ("artifacts_examined=3 artifacts_reencrypted=3 artifacts_current=0 artifacts_failed=0 "
            "subscription_rows_resealed=1") in out
    after = artifact_store(settings, new)
    expected = {("review-1", "report.pdf"): (b"acme's report", "acme"),
                ("review-2", "report.pdf"): (b"older report", "globex"),  # the tenant the audit log names
                ("review-3", "notes.txt"): (b"clear notes", None)}
    for (run_id, name), (content, tenant) in expected.items():
        assert after.read(run_id, name)[1] == content
        stored = meta(data_dir, run_id, name)
        assert (stored.key_id, stored.tenant) == (new.active, tenant)
    [shown] = await SubscriptionStore(settings, new).list("acme")
    assert shown.url == "https://hooks.example/acme"

    assert keys(capsys, "reencrypt")[1].strip() == (
        "artifacts_examined=3 artifacts_reencrypted=0 artifacts_current=3 artifacts_failed=0 subscription_rows_resealed=0")


def test_reencrypt_interrupted_between_a_file_and_its_metadata_is_read_and_then_finished(data_dir, capsys):
    settings = Settings(data_dir=data_dir)
    old = keyring_of(data_dir)
    artifact_store(settings, old).put("review-1", "report.pdf", b"acme's report", "application/pdf", tenant="acme")
    assert keys(capsys, "rotate")[0] == 0
    new = keyring_of(data_dir)
    # What a re-encryption killed after writing the file, before its metadata, leaves behind.
    _, blob = new.encrypt(b"acme's report", "acme")
    (data_dir / "artifacts" / "review-1" / "report.pdf").write_bytes(blob)
    assert meta(data_dir, "review-1", "report.pdf").key_id == old.active

    assert artifact_store(settings, new).read("review-1", "report.pdf")[1] == b"acme's report"
    code, out, _ = keys(capsys, "reencrypt")
    assert code == 0 and "artifacts_reencrypted=1" in out
    assert meta(data_dir, "review-1", "report.pdf").key_id == new.active
    assert "artifacts_current=1" in keys(capsys, "reencrypt")[1]


def test_reencrypt_reports_an_artifact_it_cannot_read_and_exits_1(data_dir, capsys):
    settings = Settings(data_dir=data_dir)
    artifact_store(settings, keyring_of(data_dir)).put("review-1", "r.pdf", b"report", "application/pdf", tenant="a")
    (data_dir / "artifacts" / "review-1" / "r.pdf").write_bytes(b"\0" * 64)  # damaged on disk

    code, out, err = keys(capsys, "reencrypt")

    assert code == 1 and "artifacts_failed=1" in out
    assert "failed: artifact 'r.pdf' of run 'review-1'" in err
