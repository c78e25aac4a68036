"""Database block digests (spec/FORMAT.md §12.4): computing, reading and checking them.

A database snapshot is cut into blocks (``block_size_for``: a SQLite page, or
larger for a database of more than 65,536 pages); each block's digest is the
first ``BLOCK_DIGEST`` bytes of its SHA-256.  Writers compute them while the
snapshot streams (``BlockHasher``) or in a pass of their own before a delta
(``hash_blocks``), read changed blocks back checked (``read_blocks``); readers
check streamed content against them (``BlockCheck``).
"""

from __future__ import annotations

import hashlib
import os

from ..errors import CorruptArchive, DatabaseSnapshotError
from .entry import BLOCK_DIGEST, MAX_BLOCK, IndexEntry, block_digests

READ_CHUNK = 4 << 20
BLOCK_SIZE = 4096       # a page: inserts touch pages scattered over the file
MAX_BLOCKS = 1 << 16    # per database, so that its digests are at most 1 MiB (§12.4)


def block_size_for(size: int, previous: int | None = None) -> int:
    """The block size a writer uses for a database of ``size`` bytes (§12.4).

    A page, up to ``MAX_BLOCKS`` blocks; beyond, the smallest power of two that keeps
    the count there.  Without that bound a 10 GB database's digests would be one
    52 MB string in its index record.  ``previous``, the parent snapshot's block size,
    is kept while it is within a factor of two of that choice (at most twice the
    blocks): a database whose size hovers near a boundary keeps its deltas.  (It comes
    from a checked record: a power of two in the range readers accept.)
    """
    chosen = BLOCK_SIZE
    while chosen < MAX_BLOCK and -(-size // chosen) > MAX_BLOCKS:
        chosen *= 2
    if previous is not None and chosen // 2 <= previous <= chosen * 2:
        return previous
    return chosen


class BlockHasher:
    """SHA-256 of the whole content and the block digests (§12.4), in one pass.

    ``whole=False``: block digests only (a sealed file's digest is its HMAC).
    """

    def __init__(self, block_size: int, whole: bool = True):
        self.block_size = block_size
        self.whole = hashlib.sha256() if whole else None
        self.blocks = bytearray()       # BLOCK_DIGEST bytes per block
        self._current = hashlib.sha256()
        self._filled = 0

    def update(self, data) -> None:
        if self.whole is not None:
            self.whole.update(data)
        view = memoryview(data)
        size, sha256 = self.block_size, hashlib.sha256
        if self._filled:
            take = min(len(view), size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled < size:
                return
            self.blocks += self._current.digest()[:BLOCK_DIGEST]
            self._current, self._filled = sha256(), 0
        whole = len(view) - len(view) % size
        for start in range(0, whole, size):     # the hot loop: one digest per page
            self.blocks += sha256(view[start:start + size]).digest()[:BLOCK_DIGEST]
        if whole < len(view):
            self._current.update(view[whole:])
            self._filled = len(view) - whole

    def hexdigest(self) -> str:
        if self._filled:
            self.blocks += self._current.digest()[:BLOCK_DIGEST]
            self._current, self._filled = hashlib.sha256(), 0
        return self.whole.hexdigest() if self.whole is not None else None


def hash_blocks(fd: int, size: int, block_size: int, extra=None,
                whole: bool = True) -> tuple[str | None, bytes]:
    """(SHA-256 of the content or None without ``whole``, the block digests) of ``size``
    bytes of ``fd``; ``extra`` (a keyed MAC) sees the content too."""
    hasher = BlockHasher(block_size, whole)
    offset = 0
    while offset < size:
        data = os.pread(fd, min(READ_CHUNK, size - offset), offset)
        if not data:
            raise OSError(f"file shrank to {offset} bytes while it was hashed")
        hasher.update(data)
        if extra is not None:
            extra.update(data)
        offset += len(data)
    return hasher.hexdigest(), bytes(hasher.blocks)


def read_blocks(fd: int, size: int, blocks: bytes, block_size: int, numbers, path: str):
    """Yield the listed blocks of ``fd``, each checked against its digest."""
    for number in numbers:
        length = min(block_size, size - number * block_size)
        data = os.pread(fd, length, number * block_size)
        expected = blocks[number * BLOCK_DIGEST:(number + 1) * BLOCK_DIGEST]
        if len(data) != length or hashlib.sha256(data).digest()[:BLOCK_DIGEST] != expected:
            raise DatabaseSnapshotError("its snapshot changed while its delta was written",
                                        path=path)
        yield data


class BlockCheck:
    """Checks streamed content block by block against a record's block hashes.

    For a whole record the blocks are 0, 1, ...; for a delta record the
    listed ones, each as long as that block of the full file.
    """

    @classmethod
    def of(cls, entry: IndexEntry, whole: bool = True) -> "BlockCheck | None":
        """The check a record needs: None without digests, or for a whole record
        when ``whole`` is off (its SHA-256 covers it)."""
        if entry.blocks is None or (entry.delta is None and not whole):
            return None
        return cls(entry)

    def __init__(self, entry: IndexEntry):
        self.size, self.digests = entry.blocks["size"], block_digests(entry)
        self.numbers = iter(entry.delta if entry.delta is not None
                            else range(len(self.digests) // BLOCK_DIGEST))
        self.path, self.total = entry.path, entry.size
        self._next_block()

    def _next_block(self) -> None:
        self.number = next(self.numbers, None)
        self.left = 0 if self.number is None else min(self.size, self.total - self.number * self.size)
        self.hasher = hashlib.sha256()

    def update(self, data) -> None:
        view = memoryview(data)
        while view:
            if self.number is None:
                raise ValueError("more content than its blocks")
            take = min(len(view), self.left)
            self.hasher.update(view[:take])
            self.left -= take
            view = view[take:]
            if not self.left:
                start = self.number * BLOCK_DIGEST
                if self.hasher.digest()[:BLOCK_DIGEST] != self.digests[start:start + BLOCK_DIGEST]:
                    raise ValueError(f"block {self.number} does not match its SHA-256")
                self._next_block()

    def finish(self) -> None:
        if self.number is not None:
            raise ValueError(f"content ends before block {self.number}")


def check_blocks(step, chunk, entry: IndexEntry, path: object) -> None:
    """Run a BlockCheck step; a mismatch is a corrupt member."""
    try:
        step(chunk) if chunk is not None else step()
    except ValueError as exc:
        raise CorruptArchive(f"member {entry.path}: {exc}", path=path) from None
