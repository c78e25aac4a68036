"""Writing the archive body: tar members through a zstd compressor.

Sources are read exactly once: each chunk is hashed (SHA-256 of content)
and handed to the compressor, and every compressed byte is hashed on its way
to the sink (the body checksum).  The head frame is reserved up front and
written last by ``finish_archive`` (spec/FORMAT.md §3).  The output is an
``ArchiveSink`` (``access.py``): a seekable local file, or an S3 multipart
upload that holds the head's part back until the head is signed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from pyzstd import CParameter, ZstdCompressor

from ..errors import SourceError
from . import head as headfmt
from . import tarheader, versions
from .access import as_sink
from .blocks import BlockHasher, read_blocks
from .head import ENCRYPTED_INDEX_NAME, INDEX_NAME, head_frame_size
from .sealed import SealingMixin, StoredFile
from .entry import IndexEntry, needs_digest
from .manifest import (DELTA_PREFIX, SEALED_MANIFEST_KEYS, cap_warnings, iso_timestamp,
                       write_index)

FEED_CHUNK = 1 << 20          # compress in 1 MiB pieces: big enough to release the GIL
READ_CHUNK = 4 << 20
REREADS = 3                   # a small file that keeps changing is read at most this often
DEFAULT_LEVEL = 3
_ZERO_BLOCK = bytes(tarheader.BLOCK)
SMALL_MEMBER = 64 << 10       # members up to this size are fed to zstd in one piece
MT_JOB_SIZE = 2 << 20         # multi-threaded compression: bytes per worker job
MT_OVERLAP_LOG = 9            # ... and each job sees the whole window before it


def _pieces(source, size: int, piece: int, what: str):
    """Exactly ``size`` bytes of the file ``source``, in reads of at most ``piece``."""
    remaining = size
    while remaining:
        chunk = source.read(min(piece, remaining))
        if not chunk:
            raise ValueError(f"{what} ended early")
        yield chunk
        remaining -= len(chunk)


def _read_small(fd: int, size: int, offset: int | None) -> bytes:
    """Up to ``size + 1`` bytes of ``fd`` (one more tells a file that grew), from its
    position or, with ``offset``, from there (a file read again)."""
    if offset is None:
        data = os.read(fd, size + 1)
    else:
        data = os.pread(fd, size + 1, offset)
    while len(data) < size:
        more = os.read(fd, size + 1 - len(data)) if offset is None else \
            os.pread(fd, size + 1 - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def _stored(hasher, size: int, changed: bool, block_size: int) -> StoredFile:
    return StoredFile(None if hasher is None else hasher.hexdigest(), size, changed,
                      blocks=bytes(hasher.blocks) if block_size else None, block_size=block_size)


class BodyWriter(SealingMixin):
    """Streams tar members, compressed, after a reserved head region.

    ``out`` is an ``ArchiveSink`` or a seekable binary file (wrapped as one).
    """

    def __init__(self, out, head_size: int | None, *, level: int = DEFAULT_LEVEL,
                 threads: int = 0):
        self.out = out
        self.sink = as_sink(out)
        # None: a part of a body written apart (``add_frames`` copies it into the archive)
        self.offset = 0 if head_size is None else head_frame_size(head_size)
        self.body_hash = hashlib.sha256()
        options = {CParameter.compressionLevel: level, CParameter.checksumFlag: 1}
        if threads > 1:
            options[CParameter.nbWorkers] = threads
            # The default job size at level 3 is 8 MiB.  Each halving saves about half
            # of zstd's buffers for a fraction of a percent of ratio (bench/RESULTS.md).
            options[CParameter.jobSize] = MT_JOB_SIZE
            # Each job is compressed with the previous job's last window as its history.
            # The default for level 3 gives it only 1/8 of the window: with small jobs,
            # many small files compress clearly worse than in one stream.
            options[CParameter.overlapLog] = MT_OVERLAP_LOG
        self._compressor = ZstdCompressor(options)
        self._level = level
        self._pending = bytearray()
        self._frame_start = self.offset
        self._frame_has_data = False
        self._buffer: bytearray | None = None   # for files of READ_CHUNK or more, when met
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._sealing: deque = deque()     # (future, [(member name, members list), ...])
        self._batch: list = []             # sealing jobs not yet handed to the pool
        self._batch_bytes = 0
        self._bundle: list | None = None   # [sealer, entry, plaintext, name, seconds, members]
        self.sink.begin(self.offset)

    # -- low level -------------------------------------------------------
    def _emit(self, compressed: bytes) -> None:
        if compressed:
            self.sink.write(compressed)
            self.body_hash.update(compressed)
            self.offset += len(compressed)

    def _feed(self, data) -> None:
        self._frame_has_data = True
        if len(data) >= FEED_CHUNK:
            if self._pending:
                self._emit(self._compressor.compress(self._pending))
                self._pending.clear()
            # One FEED_CHUNK per call: with workers, a large piece of incompressible data
            # returns its output and that of the jobs before it at once.
            view = memoryview(data)
            for start in range(0, len(view), FEED_CHUNK):
                self._emit(self._compressor.compress(view[start:start + FEED_CHUNK]))
            return
        self._pending += data
        if len(self._pending) >= FEED_CHUNK:
            self._emit(self._compressor.compress(self._pending))
            self._pending.clear()

    def _close_frame(self) -> None:
        if self._pending:
            self._emit(self._compressor.compress(self._pending))
            self._pending.clear()
        if self._frame_has_data:
            self._emit(self._compressor.flush(ZstdCompressor.FLUSH_FRAME))
        self._frame_has_data = False

    def end_frame(self) -> tuple[int, int]:
        """Close the current frame group; return its (offset, length) in the file."""
        self._drain()
        self._close_frame()
        start, self._frame_start = self._frame_start, self.offset
        return start, self.offset - start

    def add_frames(self, source, length: int) -> tuple[int, int]:
        """Copy ``length`` bytes of whole zstd frames from ``source`` (a body part that
        another ``BodyWriter`` wrote) as a frame group of its own; its (offset, length)."""
        self.end_frame()
        for chunk in _pieces(source, length, READ_CHUNK, "body part"):
            self._emit(chunk)
        return self.end_frame()

    # -- members -----------------------------------------------------------
    def add_directory(self, path: str, mode: int, mtime_ns: int, uid: int, gid: int) -> None:
        self._drain()
        self._feed(tarheader.member_header(path + "/", tarheader.DIRECTORY, mode=mode,
                                           uid=uid, gid=gid, mtime=mtime_ns // 10**9))

    def add_link(self, path: str, kind: bytes, target: str, mode: int, mtime_ns: int,
                 uid: int, gid: int) -> None:
        self._drain()
        self._feed(tarheader.member_header(path, kind, mode=mode, uid=uid, gid=gid,
                                           mtime=mtime_ns // 10**9, linkname=target))

    def add_member(self, member: bytes) -> None:
        """A whole member (header, content, padding) that belongs to no index record."""
        self._drain()
        self._feed(member)

    def add_bytes(self, path: str, data: bytes, mode: int, mtime_ns: int) -> str | None:
        """A member whose content poppoarc generated; returns its SHA-256 if it needs one."""
        self._drain()
        self._feed(tarheader.member_header(path, tarheader.REGULAR, mode=mode,
                                           size=len(data), mtime=mtime_ns // 10**9))
        self._feed(data)
        self._feed(bytes(tarheader.padding(len(data))))
        return hashlib.sha256(data).hexdigest() if needs_digest(len(data), sqlite=False) else None

    def add_file(self, path: str, fd: int, size: int, mode: int, mtime_ns: int,
                 uid: int, gid: int, on_chunk=None, block_size: int = 0,
                 digest: bool = True, reread: bool = False) -> StoredFile:
        """Store exactly ``size`` bytes read from ``fd`` (the size seen at open).

        A file that shrinks is padded with zeros and one that grows is cut,
        so the member always matches its header; both are reported as changed.
        ``reread`` (a plain file): a file under ``READ_CHUNK`` whose size changed while
        it was read is first read again whole, up to ``REREADS`` times, with the size,
        mode and times of a new fstat (``StoredFile.reread``), and only flagged if it
        never holds still; its digest follows its new size (spec §5.4).
        ``on_chunk(bytes_so_far)`` is called after each chunk of a large file.
        With ``block_size`` the SHA-256 of every block is returned as well;
        ``digest=False`` (a small file, spec §5.4) returns no SHA-256 at all.
        """
        self._drain()
        changed, again = False, None
        if size < READ_CHUNK:
            data = _read_small(fd, size, 0 if reread else None)
            for _ in range(REREADS if reread else 0):
                if len(data) == size:
                    break
                st = os.fstat(fd)       # it changed while read: read it as it is now
                if not stat.S_ISREG(st.st_mode) or st.st_size >= READ_CHUNK:
                    break
                again, size = st, st.st_size
                mode, mtime_ns = stat.S_IMODE(st.st_mode), st.st_mtime_ns
                uid, gid, digest = st.st_uid, st.st_gid, needs_digest(size, sqlite=False)
                data = _read_small(fd, size, 0)
            if len(data) != size:
                changed = True
                data = data[:size] + bytes(max(0, size - len(data)))
        header = tarheader.member_header(path, tarheader.REGULAR, mode=mode, uid=uid,
                                         gid=gid, size=size, mtime=mtime_ns // 10**9)
        hasher = BlockHasher(block_size) if block_size else hashlib.sha256() if digest else None
        if size < READ_CHUNK:
            if hasher is not None:
                hasher.update(data)
            if size <= SMALL_MEMBER:     # one feed: header, content and padding together
                self._feed(header + data + _ZERO_BLOCK[:tarheader.padding(size)])
            else:
                self._feed(header)
                self._feed(data)
                self._feed(bytes(tarheader.padding(size)))
            stored = _stored(hasher, size, changed, block_size)
            return stored if again is None else dataclasses.replace(stored, reread=again)
        self._feed(header)
        if self._buffer is None:
            self._buffer = bytearray(READ_CHUNK)
        view = memoryview(self._buffer)
        remaining = size
        while remaining:
            got = os.readv(fd, [view[:min(remaining, READ_CHUNK)]])
            if got == 0:
                changed = True
                zeros = bytes(remaining)
                if hasher is not None:
                    hasher.update(zeros)
                self._feed(zeros)
                break
            chunk = view[:got]
            if hasher is not None:
                hasher.update(chunk)
            self._feed(chunk)
            remaining -= got
            if on_chunk:
                on_chunk(size - remaining)
        if not changed and os.read(fd, 1):
            changed = True
        self._feed(bytes(tarheader.padding(size)))
        return _stored(hasher, size, changed, block_size)

    def add_delta(self, path: str, fd: int, size: int, blocks: bytes, block_size: int,
                  numbers: list[int], mode: int, mtime_ns: int, uid: int, gid: int) -> int:
        """Store the listed blocks of a database snapshot as ``.poppoarc/delta/<path>``.

        The blocks were hashed before (``hash_blocks``); each is hashed again as
        it is read, so a snapshot that changed in between is an error, not a
        wrong delta.  Returns the payload size.
        """
        self._drain()
        payload = sum(min(block_size, size - n * block_size) for n in numbers)
        self._feed(tarheader.member_header(DELTA_PREFIX + path, tarheader.REGULAR, mode=mode,
                                           uid=uid, gid=gid, size=payload,
                                           mtime=mtime_ns // 10**9))
        for data in read_blocks(fd, size, blocks, block_size, numbers, path):
            self._feed(data)
        self._feed(bytes(tarheader.padding(payload)))
        return payload

    def close(self) -> None:
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def add_index(self, source, size: int, mtime_ns: int, name: str = INDEX_NAME
                  ) -> tuple[int, int, str]:
        """Write the index member (read from ``source``) and the end-of-archive blocks
        as the last frame; returns (offset, length, SHA-256 of the member data)."""
        self.end_frame()
        self._feed(tarheader.member_header(name, tarheader.REGULAR, mode=0o644, size=size,
                                           mtime=mtime_ns // 10**9))
        digest = hashlib.sha256()
        for chunk in _pieces(source, size, FEED_CHUNK, "index source"):
            digest.update(chunk)
            self._feed(chunk)
        self._feed(bytes(tarheader.padding(size)))
        self._feed(tarheader.END_OF_ARCHIVE)
        return (*self.end_frame(), digest.hexdigest())


def finish_archive(out, writer: BodyWriter, *, archive_id: str, now, entries: list[IndexEntry],
                   fields: dict, warnings: list[str], key, head_size: int,
                   level: int = DEFAULT_LEVEL, encryption: dict | None = None,
                   sealer=None) -> dict:
    """Write the index, then sign the manifest into the reserved head.

    ``fields`` carries the manifest keys that describe the source (type,
    name, targets, databases, ...); the layout, sizes and checksums are
    filled in here from what was written.  ``out`` is what the writer was
    made with (a file or an ``ArchiveSink``); the signed head goes to its
    reserved first bytes.  Returns the manifest.
    """
    seconds = int(now.timestamp())
    writer.close()
    fields = dict(fields)
    if encryption is not None and encryption["scope"] == "archive":
        from ..crypto import segments   # here: a pack's helper process needs no cryptography
        # Paths, hosts, database and certificate details would leak: they move
        # into the encrypted index header; the readable head keeps counts only.
        sealed_manifest = {k: fields[k] for k in SEALED_MANIFEST_KEYS if k != "warnings"}
        sealed_manifest["warnings"] = index_warnings(warnings)
        fields.update(host=None, root=None, databases=[], certificates=[])
        with tempfile.TemporaryFile() as plain:        # 100,000 records: ~25 MB, not in memory
            write_index(plain, archive_id, entries, sealed_manifest)
            plain.seek(0)
            spool = io.BytesIO(sealer.seal_stream(segments.INDEX_ENTRY, 0, plain.read))
        index_name, head_warnings = ENCRYPTED_INDEX_NAME, []
    else:
        spool = tempfile.TemporaryFile()
        write_index(spool, archive_id, entries, warnings=index_warnings(warnings))
        index_name, head_warnings = INDEX_NAME, warnings
    with spool:
        index_size = spool.seek(0, io.SEEK_END)
        spool.seek(0)
        index_offset, index_length, index_sha256 = writer.add_index(
            spool, index_size, seconds * 10**9, index_name)
    manifest = {
        **fields,
        "encryption": encryption,
        "format": versions.CURRENT.name, "id": archive_id, "timestamp": iso_timestamp(now),
        "compression": {"alg": "zstd", "level": level, "window_log_max": 27, "checksum": True},
        "layout": {"head_size": head_size, "body_offset": head_frame_size(head_size),
                   "index_offset": index_offset, "index_length": index_length,
                   "index_size": index_size, "index_sha256": index_sha256,
                   "entries": len(entries)},
        "checksum": "sha256:" + writer.body_hash.hexdigest(),
        "size": writer.offset,
        "warnings": [], "warnings_total": len(warnings),
    }
    sink = writer.sink if out is writer.out else as_sink(out)
    sink.write_head(signed_head(manifest, head_warnings, head_size, key, seconds))
    return manifest


INDEX_WARNINGS_BYTES = 1 << 20     # an index line is at most 4 MiB (spec §14)


def index_warnings(warnings: list[str]) -> list[str]:
    """The run's warnings for the index header (§5.4): in order and uncut, as many as fit
    in ``INDEX_WARNINGS_BYTES`` of JSON."""
    kept, used = [], 2
    for warning in warnings:
        used += len(headfmt.canonical_json(warning)) + 1
        if used > INDEX_WARNINGS_BYTES:
            break
        kept.append(warning)
    return kept


def signed_head(manifest: dict, warnings: list[str], head_size: int, key, mtime: int) -> bytes:
    """Sign and frame the manifest, halving the head's warning list until it fits."""
    kept = cap_warnings(warnings)
    while True:
        manifest["warnings"] = kept
        try:
            member = headfmt.pad_manifest(headfmt.canonical_json(manifest), head_size)
            break
        except OverflowError:
            if not kept:
                raise SourceError("the archive's manifest does not fit its head: the "
                                  "installation has too many databases or certificates "
                                  "to list") from None
            kept = kept[:len(kept) // 2]
    signature = headfmt.canonical_json(key.sign_document(headfmt.signed_message(member)))
    return headfmt.encode_head(member, signature, head_size, mtime)
