"""Objects in S3 or an S3-compatible store (MinIO, Ceph, R2): the ObjectStore that lets API and
worker hosts share artifacts and the audit log (docs/configuration.md, STEWARD_OBJECT_STORE).

Each object is written whole by one PutObject — S3 never shows a half-written object, so a
network fault mid-upload leaves nothing behind and the activity's retry writes it again. `create`
is a conditional put (`If-None-Match: *`), which S3 makes atomic across writers: two workers can
never both append the audit log's entry N. Every object carries its SHA-256 (S3 checks it on
upload, and it is checked again on read), is encrypted by the server (on top of Steward's own
encryption of artifacts), and, for the audit log, may be locked against deletion (object lock,
compliance mode) for a retention period.

boto3 is synchronous: callers run these methods off the event loop (a thread, or the CPU pool's
processes), as they do for files.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from activities.artifacts.objects import ObjectNotFound, ObjectStoreUnavailable, check_key

# Retries of one call (throttling, a dropped connection): Temporal retries the activity beyond that.
CLIENT_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)
SHA256_METADATA = "sha256"


class ObjectCorrupted(Exception):
    """An object's bytes do not match the SHA-256 it was written with."""


class S3ObjectStore:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, endpoint_url: str | None = None,
                 region: str | None = None, server_side_encryption: str | None = "AES256",
                 kms_key_id: str | None = None, lock_days: int | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        # Credentials from the standard AWS chain: AWS_ACCESS_KEY_ID/…, AWS_SHARED_CREDENTIALS_FILE,
        # a web identity, an instance role. None of them pass through Steward's settings.
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                             config=CLIENT_CONFIG)
        self.encryption: dict[str, str] = {}
        if server_side_encryption:
            self.encryption["ServerSideEncryption"] = server_side_encryption
            if kms_key_id:
                self.encryption["SSEKMSKeyId"] = kms_key_id
        self.lock_days = lock_days

    def check(self) -> None:
        """Raise ObjectStoreUnavailable naming the bucket when it cannot be used."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reason = "does not exist" if code in ("404", "NoSuchBucket", "NotFound") else \
                "is not readable with these credentials" if code in ("403", "AccessDenied") else f"answered {code}"
            raise ObjectStoreUnavailable(f"S3 bucket {self.bucket!r} {reason}") from None
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)}"

    def _put(self, key: str, data: bytes, **conditions: Any) -> None:
        digest = hashlib.sha256(data).digest()
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(digest).decode(),
            Metadata={SHA256_METADATA: digest.hex()}, **self.encryption, **conditions)

    def create(self, key: str, data: bytes) -> bool:
        lock: dict[str, Any] = {}
        if self.lock_days:
            lock = {"ObjectLockMode": "COMPLIANCE",
                    "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=self.lock_days)}
        try:
            self._put(key, data, IfNoneMatch="*", **lock)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def replace(self, key: str, data: bytes) -> None:
        self._put(key, data)

    def read(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise
        data = answer["Body"].read()
        recorded = answer.get("Metadata", {}).get(SHA256_METADATA)
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
            raise ObjectCorrupted(f"object {key!r} does not match the SHA-256 it was written with")
        return data

    def list(self, prefix: str) -> list[str]:
        """The keys and folders directly under `prefix`, like FileObjectStore.list."""
        folder = f"{self.prefix}{check_key(prefix)}/" if prefix else self.prefix
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, Delimiter="/"):
            found += [item["Key"][len(folder):] for item in page.get("Contents", ())]
            found += [item["Prefix"][len(folder):].rstrip("/") for item in page.get("CommonPrefixes", ())]
        return sorted(f"{prefix}/{name}" if prefix else name for name in found if name and not name.startswith("."))
