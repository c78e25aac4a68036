"""Writing an archive to S3: a multipart upload whose first part is sent last.

The head frame is written last but sits at offset 0, and every multipart
part but the last must be at least 5 MiB.  So part 1 — the head's reserved
bytes plus the first body bytes, exactly 5 MiB — is kept in memory, while
parts 2, 3, ... are uploaded as they fill (at most ``MAX_IN_FLIGHT`` at a
time, from recycled buffers, so memory stays at a few part sizes).  When
the head is signed, part 1 is uploaded and the upload completed: the object
appears under its final key only once whole.  An archive smaller than 5 MiB
is sent with one PutObject at the end.  Every part and object carries its
SHA-256 (``x-amz-checksum-sha256``), which S3 checks on receipt.

Any failure aborts the multipart upload (``abort``); what a killed writer
leaves is aborted by the next pack (``S3Store.cleanup``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from .. import __version__
from ..errors import StoreError
from .base import SUFFIX, ArchiveUpload, StoredArchive

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 5 << 30
PARTS_PER_STEP = 1000
MAX_IN_FLIGHT = 2


def sha256_b64(data) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class S3Upload(ArchiveUpload):
    """A multipart upload whose first part (the head's) is sent last.

    Part 1 is the head frame plus the first body bytes, exactly 5 MiB (the
    S3 minimum), held in memory until the head is signed.  Later parts fill a
    preallocated buffer that is handed to the uploader without copying; the
    part size doubles every ``PARTS_PER_STEP`` parts, so an archive of any
    size stays within S3's 10 000 parts.
    """

    def __init__(self, store, key: str):
        self.store, self.key = store, key
        self.part_size = store.part_size
        self._head_length: int | None = None
        self._head: bytes | None = None
        self._first = bytearray()          # body bytes that share part 1 with the head
        self._first_room = 0
        self._current: bytearray | None = None     # the part being filled (2, 3, ...)
        self._fill = 0
        self._next_part = 2
        self._upload_id: str | None = None
        self._parts: dict[int, dict] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._futures: list = []
        self._spare: list[bytearray] = []  # part buffers back from the uploader, for reuse
        self._written = 0

    def begin(self, body_offset: int) -> None:
        self._head_length = body_offset
        self._first_room = MIN_PART_SIZE - body_offset
        self._first = bytearray(self._first_room)

    def _size_of(self, number: int) -> int:
        return min(MAX_PART_SIZE, self.part_size << ((number - 2) // PARTS_PER_STEP))

    def write(self, data) -> None:
        self._raise_failed()
        view = memoryview(data).cast("B")
        used = self._written
        self._written += len(view)
        if used < self._first_room:
            take = min(len(view), self._first_room - used)
            self._first[used:used + take] = view[:take]
            view = view[take:]
        while view:
            if self._current is None:
                self._current, self._fill = self._buffer(self._size_of(self._next_part)), 0
            take = min(len(view), len(self._current) - self._fill)
            self._current[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == len(self._current):
                part, self._current = self._current, None
                self._send(self._next_part, part)
                self._next_part += 1

    def _buffer(self, size: int) -> bytearray:
        """A part buffer: recycled when one of the right size is free.

        Reusing them (rather than freeing and allocating 8 MiB each time)
        keeps the allocator from growing the heap: peak memory stays at about
        (MAX_IN_FLIGHT + 2) parts plus part 1.
        """
        while self._spare:
            spare = self._spare.pop()
            if len(spare) == size:
                return spare
        return bytearray(size)

    def write_head(self, frame: bytes) -> None:
        if len(frame) != self._head_length:
            raise StoreError(f"head frame is {len(frame)} bytes, {self._head_length} reserved",
                             path=self.location)
        self._head = bytes(frame)

    @property
    def location(self) -> str:
        return f"s3://{self.store.bucket}/{self.key}"

    def _metadata(self) -> dict:
        return {"poppoarc-writer": f"{socket.gethostname()}:{os.getpid()}",
                "poppoarc-version": __version__}

    def _start_upload(self) -> None:
        if self.store.lookup(self.key[len(self.store.prefix):-len(SUFFIX)]) is not None:
            raise StoreError("an archive with this id already exists", path=self.location)
        created = self.store.call("create_multipart_upload", Key=self.key,
                                  ChecksumAlgorithm="SHA256", Metadata=self._metadata(),
                                  ContentType="application/zstd")
        self._upload_id = created["UploadId"]
        self._pool = ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT, thread_name_prefix="s3-part")

    def _send(self, number: int, data) -> None:
        if self._upload_id is None:
            self._start_upload()
        self._slots.acquire()
        try:
            future = self._pool.submit(self._upload_part, number, data)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _upload_part(self, number: int, data) -> None:
        checksum = sha256_b64(data)
        response = self.store.call("upload_part", Key=self.key, UploadId=self._upload_id,
                                   PartNumber=number, Body=data, ChecksumSHA256=checksum)
        self._parts[number] = {"PartNumber": number, "ETag": response["ETag"],
                               "ChecksumSHA256": checksum}
        if number != 1 and len(data) == self._size_of(number):
            self._spare.append(data)

    def _raise_failed(self) -> None:
        pending = []
        for future in self._futures:
            if not future.done():
                pending.append(future)
            elif future.exception() is not None:
                raise future.exception()
        self._futures = pending

    def commit(self) -> StoredArchive:
        if self._head is None:
            raise StoreError("archive has no head yet", path=self.location)
        size = self._head_length + self._written
        used = min(self._written, self._first_room)
        first = bytearray(self._head)
        first += memoryview(self._first)[:used]
        self._first = bytearray()
        if self._upload_id is None and self._current is None:
            if self.store.lookup(self.key[len(self.store.prefix):-len(SUFFIX)]) is not None:
                raise StoreError("an archive with this id already exists", path=self.location)
            self.store.call("put_object", Key=self.key, Body=first,
                            ChecksumSHA256=sha256_b64(first), Metadata=self._metadata(),
                            ContentType="application/zstd", IfNoneMatch="*")
        else:
            if self._current is not None:
                last, self._current = self._current, None
                del last[self._fill:]
                self._send(self._next_part, last)
                del last
            self._send(1, first)
            del first
            for future in self._futures:
                future.result()
            parts = [self._parts[n] for n in sorted(self._parts)]
            self.store.call("complete_multipart_upload", Key=self.key, UploadId=self._upload_id,
                            MultipartUpload={"Parts": parts}, IfNoneMatch="*")
            self._upload_id = None
            self._pool.shutdown()
        stored = self.store.object_at(self.key)
        if stored.size != size:         # never leave a wrong object under a final key
            self.store.delete(stored)
            raise StoreError(f"stored object is {stored.size} bytes, {size} were written",
                             path=self.location)
        return stored

    def abort(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            self.store.call("abort_multipart_upload", Key=self.key, UploadId=upload_id)
        self._first, self._current = bytearray(), None
