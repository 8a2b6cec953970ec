"""Artifacts and the audit log in S3, against a real S3-compatible server: moto's, started by the
tests as its own process (`moto_server` from PyPI), spoken to over HTTP by boto3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import boto3
import pytest

from activities.artifacts.objects import ObjectNotFound, ObjectStoreUnavailable, check_object_store
from activities.artifacts.s3 import ObjectCorrupted, S3ObjectStore
from activities.artifacts.store import ArtifactNotFound, FileArtifactStore, artifact_store
from activities.audit.activity import audit_log
from steward.codec import Keyring, new_key_entry
from steward.settings import Settings
from tests.support import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "steward-test", "AWS_SECRET_ACCESS_KEY": "steward-test-secret",
               "AWS_DEFAULT_REGION": "eu-central-1"}
TEST_KEY = new_key_entry()


@contextmanager
def running_moto() -> Iterator[str]:
    """moto's S3 server in its own process on a free port, until the block ends; yields its URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with running_moto() as url:
        yield url


@pytest.fixture
def aws(monkeypatch) -> None:
    """boto3's standard credential chain, as a deployment sets it: the environment."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def new_bucket(s3_url: str, *, locked: bool = False) -> str:
    name = f"steward-{os.urandom(4).hex()}"
    client = boto3.client("s3", endpoint_url=s3_url, region_name="eu-central-1")
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
                         ObjectLockEnabledForBucket=locked)
    return name


def s3_settings(s3_url: str, bucket: str, tmp_path, **changes) -> Settings:
    return Settings(data_dir=tmp_path, object_store="s3", s3_bucket=bucket, s3_endpoint_url=s3_url,
                    s3_prefix="prod/", **changes)


def test_objects_behave_as_files_do_create_once_replace_read_and_list(aws, s3_url):
    store = S3ObjectStore(new_bucket(s3_url), "steward/", endpoint_url=s3_url)
    assert store.create("acme/entries/001", b"first") is True
    assert store.create("acme/entries/001", b"second") is False  # S3's If-None-Match: the first stays
    assert store.read("acme/entries/001") == b"first"
    store.replace("acme/tail", b"1")
    store.replace("acme/tail", b"2")
    assert store.read("acme/tail") == b"2"
    store.create("globex/entries/001", b"x")
    assert store.list("") == ["acme", "globex"]
    assert store.list("acme") == ["acme/entries", "acme/tail"]
    assert store.list("acme/entries") == ["acme/entries/001"]
    with pytest.raises(ObjectNotFound):
        store.read("acme/entries/002")
    with pytest.raises(ValueError):
        store.read("../escape")


def test_a_changed_object_is_refused_on_read_by_its_sha256(aws, s3_url):
    bucket = new_bucket(s3_url)
    store = S3ObjectStore(bucket, endpoint_url=s3_url)
    store.replace("report.pdf", b"%PDF-1.7 the real one")
    head = store.client.head_object(Bucket=bucket, Key="report.pdf")
    # Someone with bucket access rewrites the bytes and keeps the recorded digest.
    store.client.put_object(Bucket=bucket, Key="report.pdf", Body=b"%PDF-1.7 forged", Metadata=head["Metadata"])
    with pytest.raises(ObjectCorrupted):
        store.read("report.pdf")


def test_artifacts_in_s3_are_encrypted_twice_and_read_back_whole(aws, s3_url, tmp_path):
    bucket = new_bucket(s3_url)
    store = artifact_store(s3_settings(s3_url, bucket, tmp_path), Keyring.parse(TEST_KEY, "test"))
    ref = store.put("compliance-documentation-1", "compliance-report.pdf", b"%PDF-1.7 secret applicant",
                    "application/pdf")
    assert store.read("compliance-documentation-1", "compliance-report.pdf") == (ref, b"%PDF-1.7 secret applicant")
    assert [r.name for r in store.list("compliance-documentation-1")] == ["compliance-report.pdf"]
    client = boto3.client("s3", endpoint_url=s3_url)
    key = "prod/artifacts/compliance-documentation-1/compliance-report.pdf"
    raw = client.get_object(Bucket=bucket, Key=key)
    assert b"secret applicant" not in raw["Body"].read()  # Steward's own encryption
    assert raw["ServerSideEncryption"] == "AES256"  # and the server's
    # Another host reads it through its own client: the bucket is what they share.
    other = artifact_store(s3_settings(s3_url, bucket, tmp_path / "other-host"), Keyring.parse(TEST_KEY, "test"))
    assert other.read("compliance-documentation-1", "compliance-report.pdf")[1] == b"%PDF-1.7 secret applicant"
    with pytest.raises(ArtifactNotFound):
        other.read("compliance-documentation-1", "nothing.pdf")


def test_the_audit_log_chains_in_s3_and_locks_each_entry(aws, s3_url, tmp_path):
    bucket = new_bucket(s3_url, locked=True)
    settings = s3_settings(s3_url, bucket, tmp_path, s3_audit_lock_days=30)
    log = audit_log(settings)
    for number in range(3):
        log.append("acme", f"event-{number}", "run.started", run_id=f"run-{number}", workflow="w", data={})
    assert [entry.seq for entry in log.entries("acme")] == [1, 2, 3]
    client = boto3.client("s3", endpoint_url=s3_url)
    (first,) = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="prod/audit/acme/entries/")["Contents"]
                ][:1]
    head = client.head_object(Bucket=bucket, Key=first)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] > datetime.now(UTC)
    # A second host appending sees the first's entries: the chain continues, it does not fork.
    audit_log(s3_settings(s3_url, bucket, tmp_path / "other-host")).append(
        "acme", "event-3", "run.started", run_id="run-3", workflow="w", data={})
    assert [entry.seq for entry in audit_log(settings).entries("acme")] == [1, 2, 3, 4]


def test_a_missing_bucket_stops_start_up_with_one_line_naming_it(aws, s3_url, tmp_path):
    settings = s3_settings(s3_url, "no-such-bucket", tmp_path)
    with pytest.raises(ObjectStoreUnavailable, match="'no-such-bucket' does not exist"):
        check_object_store(settings)
    env = {**os.environ, **CREDENTIALS, "STEWARD_DATA_DIR": str(tmp_path), "STEWARD_OBJECT_STORE": "s3",
           "STEWARD_S3_BUCKET": "no-such-bucket", "STEWARD_S3_ENDPOINT_URL": s3_url}
    result = subprocess.run([sys.executable, "-m", "steward", "worker"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["steward: object store: S3 bucket 'no-such-bucket' does not exist"]


class CuttingProxy:
    """A TCP proxy to the S3 server that, while `cutting`, drops each connection after the first
    bytes of the request: an upload that breaks mid-body."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cutting = True
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        if self.cutting:
            upstream.sendall(client.recv(1024))  # the headers and the body's start, then the line goes
            client.close()
            upstream.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_an_upload_cut_mid_body_leaves_nothing_to_serve_and_the_retry_writes_it_whole(aws, s3_url, tmp_path):
    bucket = new_bucket(s3_url)
    proxy = CuttingProxy(int(s3_url.rsplit(":", 1)[1]))
    try:
        settings = s3_settings(f"http://127.0.0.1:{proxy.port}", bucket, tmp_path)
        store: FileArtifactStore = artifact_store(settings, None)
        report = os.urandom(256 * 1024)
        with pytest.raises(Exception):  # what the activity raises: Temporal retries it
            store.put("run-1", "compliance-report.pdf", report, "application/pdf")
        direct = artifact_store(s3_settings(s3_url, bucket, tmp_path), None)
        with pytest.raises(ArtifactNotFound):
            direct.read("run-1", "compliance-report.pdf")  # nothing half-written is ever served
        proxy.cutting = False  # the network is back: the retry
        ref = store.put("run-1", "compliance-report.pdf", report, "application/pdf")
        assert direct.read("run-1", "compliance-report.pdf") == (ref, report)
    finally:
        proxy.close()


def test_workers_on_two_hosts_sign_one_chain_with_the_key_file_they_share(aws, s3_url, tmp_path):
    from activities.audit.signing import Signer

    bucket = new_bucket(s3_url)
    key_file = tmp_path / "secrets" / "audit-signing-key"  # a mounted secret, the same on both hosts
    hosts = [s3_settings(s3_url, bucket, tmp_path / host, audit_signing_key_file=key_file) for host in ("a", "b")]
    for number, settings in enumerate(hosts):
        log = audit_log(settings, signing=True)
        log.append("acme", f"event-{number}", "run.started", run_id=f"run-{number}", workflow="w", data={})
        log.sign_head("acme")
    assert not (tmp_path / "a" / "audit-signing-key").exists() and key_file.exists()
    verification = audit_log(hosts[0]).verify("acme", Signer.from_settings(hosts[1]).public_key)
    assert verification.problem is None and (verification.entries, verification.signed_heads) == (2, 2)
