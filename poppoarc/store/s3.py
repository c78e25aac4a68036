"""Archives in an S3-compatible bucket, under a key prefix.

Writing: ``s3upload.S3Upload`` (part 1, holding the head, is sent last).
A killed writer cannot abort its multipart upload, so ``cleanup`` (run by
every pack) aborts uploads under the prefix with an archive name that are
older than ``staleUploadHours`` (default 24).

Reading (``S3Source``).  Ranged GETs only, with a read-ahead window that
starts at 64 KiB (so reading a head costs one or two requests and at most
about the head's size) and doubles on sequential reads up to 8 MiB (so
streaming a body costs one request per 8 MiB).  Each GET carries the ETag
seen when the archive was listed (``If-Match``): an object replaced mid-read
is an error, never a mix of two archives.

boto3 is an optional dependency (``pip install 'poppoarc[s3]'``); credentials,
region and endpoint come from the standard AWS chain (environment, shared
config and profiles, ``AWS_ENDPOINT_URL``) unless the storage settings name them.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

from ..errors import (
    ArchiveNotFound,
    MissingDependency,
    RemoteStoreError,
    TruncatedArchive,
    UsageError,
)
from ..format.access import ArchiveSource
from .base import MARK_SUFFIX, SUFFIX, Store, StoredArchive, marked_ids
from .s3upload import DEFAULT_PART_SIZE, MIN_PART_SIZE, MiB, S3Upload

FIRST_WINDOW = 64 * 1024
MAX_WINDOW = 8 * MiB
DEFAULT_STALE_HOURS = 24
_ARCHIVE_NAME = re.compile(r"[^/]+" + re.escape(SUFFIX) + r"\Z")


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix/")."""
    if not url.startswith("s3://"):
        raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise UsageError(f"S3 URL has no bucket: {url!r}")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def _boto():
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        raise MissingDependency("S3 storage needs boto3, which is not installed: "
                                "pip install 'poppoarc[s3]'") from None
    return boto3, botocore


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str = "", options: dict | None = None):
        self.bucket, self.prefix = bucket, prefix
        self.options = dict(options or {})
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.part_size = max(MIN_PART_SIZE, int(self.options.get("partSizeMiB", DEFAULT_PART_SIZE // MiB)) * MiB)
        self.stale_hours = int(self.options.get("staleUploadHours", DEFAULT_STALE_HOURS))
        self._client = None
        self._lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------
    @property
    def client(self):
        with self._lock:
            if self._client is None:
                boto3, botocore = _boto()
                o = self.options
                try:
                    session = boto3.session.Session(
                        profile_name=o.get("profile"), region_name=o.get("region"),
                        aws_access_key_id=o.get("accessKeyId"),
                        aws_secret_access_key=o.get("secretAccessKey"),
                        aws_session_token=o.get("sessionToken"))
                    s3 = {"addressing_style": o["addressingStyle"]} if o.get("addressingStyle") else {}
                    config = botocore.config.Config(
                        retries={"max_attempts": 5, "mode": "standard"}, s3=s3 or None,
                        max_pool_connections=16, connect_timeout=10, read_timeout=120)
                    self._client = session.client("s3", endpoint_url=o.get("endpointUrl"),
                                                  config=config)
                except botocore.exceptions.BotoCoreError as exc:
                    raise RemoteStoreError(f"cannot set up S3 access: {exc}", path=self.url) from None
            return self._client

    def call(self, operation: str, *, missing=None, **params):
        """One S3 request, with its failures mapped to poppoarc errors."""
        _, botocore = _boto()
        client = self.client
        try:
            return getattr(client, operation)(Bucket=self.bucket, **params)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            where = f"s3://{self.bucket}/{params['Key']}" if "Key" in params else self.url
            if code in ("NoSuchKey", "404", "NotFound") and missing is not None:
                raise missing("no such archive object", path=where) from None
            if code == "NoSuchBucket" or (operation == "head_bucket" and code == "404"):
                raise RemoteStoreError(f"bucket {self.bucket!r} does not exist", path=self.url) from None
            if code in ("PreconditionFailed", "412"):
                raise RemoteStoreError("conditional request failed: the object changed while "
                                       "it was read, or already exists", path=where) from None
            message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise RemoteStoreError(f"{operation} failed: {code}: {message}", path=where) from None
        except botocore.exceptions.NoCredentialsError:
            raise RemoteStoreError("no AWS credentials found (environment, shared credentials "
                                   "file or profile)", path=self.url) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise RemoteStoreError(f"{operation} failed: {exc}", path=self.url) from None

    # -- the Store interface ----------------------------------------------------
    def ensure(self) -> None:
        self.call("head_bucket")

    def _archive(self, key: str, size: int | None, etag: str | None) -> StoredArchive:
        name = key[len(self.prefix):]
        return StoredArchive(name[:-len(SUFFIX)], f"s3://{self.bucket}/{key}", size, key, etag)

    def _objects(self):
        """Every object directly under the prefix (list_objects_v2, page by page)."""
        token = None
        while True:
            params = {"Prefix": self.prefix, "Delimiter": "/"}
            if token:
                params["ContinuationToken"] = token
            page = self.call("list_objects_v2", **params)
            yield from page.get("Contents", [])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break

    def catalog(self) -> list[StoredArchive]:
        found = []
        for item in self._objects():
            name = item["Key"][len(self.prefix):]
            if _ARCHIVE_NAME.match(name) and not name.startswith("."):
                found.append(self._archive(item["Key"], item["Size"], item.get("ETag")))
        return sorted(found, key=lambda a: a.key)

    def protected(self) -> set[str]:
        return marked_ids(item["Key"][len(self.prefix):] for item in self._objects())

    def protect(self, archive_id: str, note: bytes) -> bool:
        key = self.prefix + archive_id + MARK_SUFFIX
        if archive_id in self.protected():
            return False
        self.call("put_object", Key=key, Body=note)
        return True

    def unprotect(self, archive_id: str) -> bool:
        if archive_id not in self.protected():
            return False
        self.call("delete_object", Key=self.prefix + archive_id + MARK_SUFFIX)
        return True

    def lookup(self, archive_id: str) -> StoredArchive | None:
        key = self.prefix + archive_id + SUFFIX
        try:
            head = self.call("head_object", Key=key, missing=ArchiveNotFound)
        except ArchiveNotFound:
            return None
        return self._archive(key, head["ContentLength"], head.get("ETag"))

    def object_at(self, key: str) -> StoredArchive:
        """An archive by its full key (``s3://bucket/key`` references)."""
        head = self.call("head_object", Key=key, missing=ArchiveNotFound)
        return self._archive(key, head["ContentLength"], head.get("ETag"))

    def open(self, archive: StoredArchive) -> "S3Source":
        if archive.size is None or archive.etag is None:
            archive = self.object_at(archive.key)
        return S3Source(self, archive)

    def begin(self, archive_id: str) -> S3Upload:
        return S3Upload(self, self.prefix + archive_id + SUFFIX)

    def delete(self, archive: StoredArchive) -> None:
        self.call("delete_object", Key=archive.key)

    def cleanup(self, max_age_hours: float | None = None) -> list[str]:
        """Abort this prefix's archive uploads older than ``staleUploadHours``."""
        hours = self.stale_hours if max_age_hours is None else max_age_hours
        cutoff = datetime.now(timezone.utc) - timedelta(hours=hours)
        aborted, params = [], {"Prefix": self.prefix}
        while True:
            page = self.call("list_multipart_uploads", **params)
            for upload in page.get("Uploads", []):
                name = upload["Key"][len(self.prefix):]
                if _ARCHIVE_NAME.match(name) and upload["Initiated"] <= cutoff:
                    self.call("abort_multipart_upload", Key=upload["Key"],
                              UploadId=upload["UploadId"])
                    aborted.append(f"s3://{self.bucket}/{upload['Key']}")
            if not page.get("IsTruncated"):
                break
            params.update(KeyMarker=page.get("NextKeyMarker"),
                          UploadIdMarker=page.get("NextUploadIdMarker"))
        return aborted


class S3Source(ArchiveSource):
    """Ranged GETs with a growing read-ahead window (see the module docstring)."""

    def __init__(self, store: S3Store, archive: StoredArchive):
        self.store, self.archive = store, archive
        self.name = archive.location
        self._size = archive.size
        self._buffer, self._start = b"", 0
        self._window = FIRST_WINDOW

    def size(self) -> int:
        return self._size

    def _get(self, start: int, end: int) -> bytes:
        params = {"Key": self.archive.key, "Range": f"bytes={start}-{end - 1}"}
        if self.archive.etag:
            params["IfMatch"] = self.archive.etag
        response = self.store.call("get_object", missing=ArchiveNotFound, **params)
        _, botocore = _boto()
        try:
            with response["Body"] as body:
                data = body.read()
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise RemoteStoreError(f"reading failed: {exc}", path=self.name) from None
        self.store.fetched += len(data)
        if len(data) != end - start:
            raise TruncatedArchive(f"ranged read returned {len(data)} of {end - start} bytes",
                                   path=self.name)
        return data

    def read_at(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self._size)
        if offset >= end:
            return b""
        buf_end = self._start + len(self._buffer)
        if self._start <= offset and end <= buf_end:
            return self._buffer[offset - self._start:end - self._start]
        if self._start <= offset <= buf_end:            # continue sequentially
            have = self._buffer[offset - self._start:]
            fetch_from, sequential = buf_end, True
        else:
            have, fetch_from, sequential = b"", offset, False
        if not sequential:
            self._window = FIRST_WINDOW
        fetch_end = min(self._size, max(end, fetch_from + self._window))
        self._buffer, self._start = self._get(fetch_from, fetch_end), fetch_from
        if sequential:
            self._window = min(MAX_WINDOW, max(self._window, fetch_end - fetch_from) * 2)
        return have + self._buffer[:end - fetch_from]
