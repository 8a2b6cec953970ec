"""The audit log: hash-chained entries per tenant, signed heads, and `steward audit verify`
catching an edited byte, a deleted tail and moved entries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from activities.artifacts.objects import FileObjectStore
from activities.audit.log import GENESIS, AuditLog, sha256
from activities.audit.signing import Signer
from steward.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TENANT = "acme"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def log(settings: Settings) -> AuditLog:
    return AuditLog(FileObjectStore(settings.audit_dir), Signer.from_settings(settings))


def write_run(log: AuditLog, run_id: str, events: int = 3) -> None:
    log.append(TENANT, f"{run_id}:started", "run.started", run_id=run_id, workflow="compliance-documentation",
               data={"input_sha256": sha256(run_id.encode())})
    for n in range(events):
        log.append(TENANT, f"{run_id}:llm:{n}", "llm.call", run_id=run_id, data={"prompt_sha256": "ab" * 32,
                                                                                     "tokens": 100 + n})
    log.append(TENANT, f"{run_id}:ended", "run.ended", run_id=run_id, data={"status": "completed"})
    log.sign_head(TENANT)


def entry_path(settings: Settings, seq: int) -> Path:
    return settings.audit_dir / TENANT / "entries" / f"{seq:012d}"


def verify(settings: Settings, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STEWARD_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "steward", "audit", "verify", *extra], env=env,
                          capture_output=True, text=True, timeout=60)


def test_entries_link_each_to_the_one_before_and_the_log_verifies(log, settings):
    write_run(log, "run-1")
    write_run(log, "run-2")
    entries = list(log.entries(TENANT))
    assert [e.seq for e in entries] == list(range(1, 11))
    assert entries[0].prev == GENESIS
    assert all(e.prev == sha256(entry_path(settings, e.seq - 1).read_bytes()) for e in entries[1:])
    result = verify(settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "acme: 10 entries, 2 signed heads: intact" in result.stdout


def test_a_retried_event_is_written_once(log):
    first = log.append(TENANT, "run-1:started", "run.started", run_id="run-1")
    again = log.append(TENANT, "run-1:started", "run.started", run_id="run-1")
    assert again == first and [e.seq for e in log.entries(TENANT)] == [1]


def test_reading_resumes_after_a_sequence_number(log):
    write_run(log, "run-1")
    assert [e.seq for e in log.entries(TENANT, after=3)] == [4, 5]


def test_writers_in_separate_processes_never_share_or_skip_a_sequence_number(settings, log):
    # The worker and the API (or two workers) append at once: each entry gets its own number and
    # links to the entry really before it.
    script = ("import sys; from activities.artifacts.objects import FileObjectStore; "
              "from activities.audit.log import AuditLog; from pathlib import Path; "
              "log = AuditLog(FileObjectStore(Path(sys.argv[1])));"
              "[log.append('acme', f'{sys.argv[2]}:{n}', 'test.event') for n in range(40)]")
    writers = [subprocess.Popen([sys.executable, "-c", script, str(settings.audit_dir), f"writer-{w}"], cwd=REPO)
               for w in range(3)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    log.sign_head(TENANT)
    assert [e.seq for e in log.entries(TENANT)] == list(range(1, 121))
    assert verify(settings, "--tenant", TENANT).returncode == 0


def test_entries_are_private_files(log, settings):
    write_run(log, "run-1")
    assert stat.S_IMODE(entry_path(settings, 1).stat().st_mode) == 0o600
    assert stat.S_IMODE(entry_path(settings, 1).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.audit_signing_key_path.stat().st_mode) == 0o600


def test_one_edited_byte_is_found_and_named(log, settings):
    write_run(log, "run-1")
    write_run(log, "run-2")
    path = entry_path(settings, 3)
    raw = path.read_bytes()
    at = raw.index(b'"tokens":101') + len(b'"tokens":10')
    path.write_bytes(raw[:at] + b"7" + raw[at + 1:])  # 101 tokens become 107: still valid JSON

    result = verify(settings)
    assert result.returncode == 1
    assert "acme: NOT INTACT: entry 3 is not as it was written" in result.stdout


def test_an_edited_link_names_the_entry_holding_it(log, settings):
    write_run(log, "run-1")
    path = entry_path(settings, 2)
    raw = path.read_bytes()
    at = raw.index(b'"prev":"') + len(b'"prev":"')
    path.write_bytes(raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:])
    assert "NOT INTACT: entry 2 is not as it was written" in verify(settings).stdout


def test_an_edited_last_entry_is_caught_by_the_signed_head(log, settings):
    write_run(log, "run-1")
    path = entry_path(settings, 5)
    path.write_bytes(path.read_bytes().replace(b'"completed"', b'"cancelled"'))
    result = verify(settings)
    assert result.returncode == 1 and "entry 5 does not match the head signed at it" in result.stdout


def test_a_deleted_last_entry_is_caught_by_the_signed_head(log, settings):
    write_run(log, "run-1")
    entry_path(settings, 5).unlink()
    result = verify(settings)
    assert result.returncode == 1 and "entries 5 to 5 are missing: a head was signed at entry 5" in result.stdout


def test_a_deleted_entry_in_the_middle_is_named(log, settings):
    write_run(log, "run-1")
    entry_path(settings, 2).unlink()
    assert "NOT INTACT: entry 2 is missing" in verify(settings).stdout


def test_two_swapped_entries_are_found(log, settings):
    write_run(log, "run-1")
    third, fourth = entry_path(settings, 3), entry_path(settings, 4)
    a, b = third.read_bytes(), fourth.read_bytes()
    third.write_bytes(b)
    fourth.write_bytes(a)
    result = verify(settings)
    assert result.returncode == 1 and "entry 3 holds entry 4: entries were moved" in result.stdout


def test_a_head_signed_with_another_key_does_not_verify(log, settings, tmp_path):
    write_run(log, "run-1")
    other = Settings(data_dir=tmp_path / "elsewhere")
    (tmp_path / "other.pem").write_text(Signer.from_settings(other).public_pem())
    result = verify(settings, "--public-key", str(tmp_path / "other.pem"))
    assert result.returncode == 1 and "does not verify with this public key" in result.stdout


def test_an_auditor_verifies_a_copy_with_the_public_key_alone(log, settings, tmp_path):
    write_run(log, "run-1")
    env = {**os.environ, "STEWARD_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(REPO)}
    public = subprocess.run([sys.executable, "-m", "steward", "audit", "public-key"], env=env, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "steward.pem").write_text(public)
    copy = Settings(data_dir=tmp_path / "copy")
    os.makedirs(copy.data_dir)
    subprocess.run(["cp", "-a", str(settings.audit_dir), str(copy.audit_dir)], check=True)
    result = verify(copy, "--public-key", str(tmp_path / "steward.pem"))
    assert result.returncode == 0, result.stdout
    assert not copy.audit_signing_key_path.exists()  # verifying made no key of its own


def test_threads_of_one_process_append_at_once(log, settings):
    # The worker writes entries of several runs at once from its thread pool.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: log.append(TENANT, f"event-{n}", "test.event"), range(80)))
    log.sign_head(TENANT)
    assert [e.seq for e in log.entries(TENANT)] == list(range(1, 81))
    assert verify(settings).returncode == 0


def test_verify_writes_its_verdict_for_prometheus(log, settings, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    write_run(log, "run-1")
    log.append("globex", "g-1", "run.started", run_id="g-run")
    entry_path(settings, 2).unlink()
    metrics_file = tmp_path / "steward_audit.prom"
    assert verify(settings, "--metrics-file", str(metrics_file)).returncode == 1
    found = {(s.name, s.labels.get("tenant")): s.value
             for family in text_string_to_metric_families(metrics_file.read_text()) for s in family.samples}
    assert found[("steward_audit_verify_intact", "acme")] == 0
    assert found[("steward_audit_verify_intact", "globex")] == 1
    assert found[("steward_audit_verify_last_run_timestamp_seconds", None)] > 0
