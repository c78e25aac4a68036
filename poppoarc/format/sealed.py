"""Sealed members (spec/FORMAT.md §11.3, §11.4): chunked objects and bundles, written
and read.

Writing (``SealingMixin``, which ``BodyWriter`` mixes in): sealed files are cut into
chunks, or gathered into bundle objects when small; the chunks go to a thread pool in
batches, where each batch is sealed and framed as tar members in a zstd frame of its own,
and the writing thread appends finished frames in order.  ``BodyWriter`` owns the state
used here (``_batch``, ``_bundle``, ``_sealing``, ``_pool``, ``_threads``, ``_level``).

Reading (``read_sealed``, called by ``reader.read_body`` for the records of an encrypted
archive): without a key the members are still framed, bounded and skipped; with one,
every object is opened, every file checked against its HMAC (a delta's blocks against
their digests), and only then is the plaintext handed to the sink.

The cipher itself (an archive's data key, each object's AES-GCM) is
``crypto/sealer.py``'s ``Sealer``.
"""

from __future__ import annotations

import hmac
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pyzstd import CParameter, ZstdCompressor

from ..errors import CorruptArchive
from . import tarheader
from .blocks import BlockCheck, check_blocks
from .entry import CHUNK_SIZE, IndexEntry
from .frames import FrameStream, expect
from .manifest import BUNDLE_CHUNK

SEAL_BATCH = 1 << 20          # small sealed chunks go to the pool together, in one frame


@dataclass(frozen=True)
class StoredFile:
    """What writing one regular file found."""

    sha256: str | None
    size: int            # bytes stored (the size recorded at open)
    changed: bool        # the file grew or shrank while it was read
    sealed: list | None = None      # [[member, size], ...] when sealed
    hmac_sha256: str | None = None
    blocks: bytes | None = None     # block digests when asked for (databases, §12.4)
    block_size: int = 0             # ... of blocks of this size
    bundle: int | None = None       # offset in a shared bundle object (§11.4)
    # a small file that changed while it was read, read again whole: the fstat its stored
    # content matches (its size, mode and times replace those seen at open)
    reread: object = None


def _read_exactly(read, size: int) -> tuple[bytes, bool]:
    """``size`` bytes from ``read(n)``: a source that ends early is padded with zeros
    (and reported, True), so the member always matches its recorded size."""
    data = read(size)
    while len(data) < size:
        more = read(size - len(data))
        if not more:
            break
        data += more
    return data + bytes(size - len(data)), len(data) < size


class SealingMixin:
    def add_sealed_file(self, read, size: int, entry: int, names: list[str], sealer,
                        mtime_ns: int) -> StoredFile:
        """Store ``size`` bytes from ``read(n)`` as sealed 4 MiB chunks named ``names``.

        Member headers carry no file metadata (mode 0600, owner 0, the
        archive's own time): that lives in the encrypted index.
        """
        self._close_bundle()
        mac = sealer.new_mac()
        members: list = []          # filled in order as the pool's results are written
        remaining, changed = size, False
        for chunk, name in enumerate(names):
            want = min(CHUNK_SIZE, remaining)
            data, short = _read_exactly(read, want)
            changed = changed or short
            mac.update(data)
            self._queue((sealer, entry, chunk, data, name, mtime_ns // 10**9, members))
            remaining -= want
        if not changed and read(1):
            changed = True
        return StoredFile(None, size, changed, members, mac.hexdigest())

    def add_bundled_file(self, read, size: int, entry: int, sealer, mtime_ns: int) -> StoredFile:
        """Store a small file in the open bundle object (§11.4); ``bundle`` of the result
        is its offset in the bundle.  The first file of a bundle gets the ``sealed``
        member list (filled once the bundle is sealed); the others get None.

        A bundle holds consecutive sealed files of one target, at most CHUNK_SIZE bytes:
        compressing them together costs one zstd frame and one object, not one per file.
        """
        data, changed = _read_exactly(read, size)
        changed = changed or bool(read(1))
        mac = sealer.new_mac()
        mac.update(data)
        if self._bundle is not None and (len(self._bundle[2]) + size > CHUNK_SIZE
                                         or not self._bundle[2]):
            # (after nothing but empty files a file's offset would be 0, which names the
            # first of a bundle, §11.4: it starts a bundle of its own)
            self._close_bundle()
        members = None
        if self._bundle is None:
            members = []
            self._bundle = [sealer, entry, bytearray(), f"objects/{entry:08x}.b",
                            mtime_ns // 10**9, members]
        offset = len(self._bundle[2])
        self._bundle[2] += data
        return StoredFile(None, size, changed, members, mac.hexdigest(), bundle=offset)

    def _close_bundle(self) -> None:
        """Queue the open bundle for sealing: its members come before anything later."""
        if self._bundle is None:
            return
        sealer, entry, plaintext, name, seconds, members = self._bundle
        self._bundle = None
        self._queue((sealer, entry, BUNDLE_CHUNK, bytes(plaintext), name, seconds, members))

    def _queue(self, job: tuple) -> None:
        """Add one sealing job (sealer, entry, chunk, plaintext, name, seconds, members)."""
        self._batch.append(job)
        self._batch_bytes += len(job[3])
        if self._batch_bytes >= SEAL_BATCH:
            self._submit_batch()

    def _submit_batch(self) -> None:
        """Hand the batched chunks to the sealing pool as one job.

        Batching keeps a tree of small files from costing a thread hand-off
        (and a zstd frame) per file.
        """
        if not self._batch:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self._threads),
                                            thread_name_prefix="seal")
        jobs, self._batch, self._batch_bytes = self._batch, [], 0
        owners = [(job[4], job[6]) for job in jobs]     # before the pool empties ``jobs``
        self._sealing.append((self._pool.submit(sealed_members_frame, jobs, self._level), owners))
        self._drain(limit=max(1, self._threads))

    def _drain(self, limit: int = 0) -> None:
        """Write finished sealing jobs, oldest first, until at most ``limit`` are in flight
        (with no limit, batched chunks are sealed and written first).

        Each job's members arrive as a whole zstd frame (``sealed_members_frame``),
        so the frame being compressed here is closed first.
        """
        if not limit:
            if self._bundle is None and not self._batch and not self._sealing:
                return          # nothing sealed in flight: the plain per-file path
            self._close_bundle()
            self._submit_batch()
        while len(self._sealing) > limit:
            future, owners = self._sealing.popleft()
            frame, sizes = future.result()
            self._close_frame()
            self._emit(frame)
            for (name, members), size in zip(owners, sizes):
                members.append([name, size])


_member_compressors = threading.local()


def sealed_members_frame(jobs: list, level: int) -> tuple[bytes, list[int]]:
    """Seal chunks and write their tar members as one zstd frame.

    Runs on the sealing pool, so the tar framing and the outer frame of
    sealed members cost the writing thread nothing; ciphertext does not
    compress, so zstd stores it in raw blocks.  Returns (frame, sealed sizes).
    """
    parts, sizes = [], []
    for sealer, entry, chunk, plaintext, name, seconds, _members in jobs:
        sealed = sealer.seal_chunk(entry, chunk, plaintext)
        parts += (tarheader.member_header(name, tarheader.REGULAR, mode=0o600, size=len(sealed),
                                          mtime=seconds),
                  sealed, bytes(tarheader.padding(len(sealed))))
        sizes.append(len(sealed))
    del jobs[:]                 # the plaintext is not needed any more (memory)
    compressors = getattr(_member_compressors, "by_level", None)
    if compressors is None:
        compressors = _member_compressors.by_level = {}
    compressor = compressors.get(level)
    if compressor is None:
        compressor = compressors[level] = ZstdCompressor(
            {CParameter.compressionLevel: level, CParameter.checksumFlag: 1})
    return compressor.compress(b"".join(parts), ZstdCompressor.FLUSH_FRAME), sizes


# -- reading ----------------------------------------------------------------------

def _read_member(stream: FrameStream, entry: IndexEntry, name: str, size: int, seconds: int,
                 path: object) -> bytes:
    """One sealed member: its header as the index implies it, its bytes, zero padding."""
    header = tarheader.member_header(name, tarheader.REGULAR, mode=0o600, size=size, mtime=seconds)
    expect(stream, header, f"member {entry.path}", path)
    data = stream.read(size)
    if len(data) < size:
        raise CorruptArchive(f"the decompressed body ends inside member {entry.path}", path=path)
    if stream.read(tarheader.padding(size)) != bytes(tarheader.padding(size)):
        raise CorruptArchive(f"member {entry.path}: padding is not zero", path=path)
    return data


class Bundle:
    """A sealed bundle object (§11.4): small files' contents, back to back."""

    def __init__(self, plaintext: bytes | None):
        self.plaintext, self.cursor = plaintext, 0

    @classmethod
    def read(cls, stream: FrameStream, entry: IndexEntry, position: int, seconds: int,
             path: object, sealer) -> "Bundle":
        name, size = entry.sealed[0]
        data = _read_member(stream, entry, name, size, seconds, path)
        if sealer is None:
            return cls(None)
        from ..crypto.segments import SegmentError    # (a key is here: so is cryptography)
        try:
            return cls(sealer.open_chunk(position, BUNDLE_CHUNK, data, None, limit=CHUNK_SIZE))
        except SegmentError as exc:
            raise CorruptArchive(f"member {entry.path}: {exc}", path=path) from None

    def take(self, entry: IndexEntry, sink, path: object, sealer) -> bool:
        """The next file's content, checked against its HMAC; False without a key."""
        start, self.cursor = self.cursor, self.cursor + entry.size
        if self.plaintext is None:
            return False
        content = self.plaintext[start:self.cursor]
        if len(content) != entry.size:
            raise CorruptArchive(f"member {entry.path}: bundle ends inside it", path=path)
        mac = sealer.new_mac()
        mac.update(content)
        if not hmac.compare_digest(mac.hexdigest(), entry.hmac_sha256):
            raise CorruptArchive(f"member {entry.path}: content does not match its HMAC", path=path)
        if content:
            sink.data(entry, content)
        return True

    def finish(self, path: object) -> None:
        if self.plaintext is not None and self.cursor != len(self.plaintext):
            raise CorruptArchive("a bundle holds bytes no file claims", path=path)


def read_sealed(stream: FrameStream, entry: IndexEntry, position: int, seconds: int,
                 path: object, sink, sealer, block_digests: bool = True) -> bool:
    """One sealed file's chunks; False when there is no key to open them.

    A delta record's payload is checked block by block; the HMAC covers the
    whole file, which only the chain reader reassembles.
    """
    mac = sealer.new_mac() if sealer else None
    blocks = BlockCheck.of(entry, block_digests) if mac is not None else None
    from ..crypto.segments import SegmentError    # (only a writer must do without it)
    remaining = entry.payload_size()
    for number, (name, size) in enumerate(entry.sealed):
        data = _read_member(stream, entry, name, size, seconds, path)
        if mac is None:
            continue
        expected = min(CHUNK_SIZE, remaining)
        try:
            plaintext = sealer.open_chunk(position, number, data, expected)
        except SegmentError as exc:
            raise CorruptArchive(f"member {entry.path}: {exc}", path=path) from None
        mac.update(plaintext)
        if blocks is not None:
            check_blocks(blocks.update, plaintext, entry, path)
        sink.data(entry, plaintext)
        remaining -= expected
    if blocks is not None:
        check_blocks(blocks.finish, None, entry, path)
    if mac is not None and entry.delta is None \
            and not hmac.compare_digest(mac.hexdigest(), entry.hmac_sha256):
        raise CorruptArchive(f"member {entry.path}: content does not match its HMAC", path=path)
    return mac is not None
