"""Strict reading of consecutive zstd frames (spec/FORMAT.md §4.1), and byte-exact checks.

Every frame must start with the zstd magic (skippable frames are rejected) and carry a
content checksum, the window is capped at 2**27, and output comes in bounded pieces; ``expect`` compares the next
bytes with what the signed index implies.
"""

from __future__ import annotations

import queue
import threading

from pyzstd import DParameter, ZstdDecompressor, ZstdError

from ..errors import CorruptArchive, TruncatedArchive
from .access import as_source
from .head import ZSTD_MAGIC

WINDOW_LOG_MAX = 27
CONTENT_CHECKSUM_FLAG = 0x04    # in a frame's Frame_Header_Descriptor (RFC 8878 3.1.1.1.1)
READ_SIZE = 1 << 20


class FrameStream:
    """Decompressed bytes of consecutive zstd frames, with strict framing.

    Every frame must start with the zstd magic (skippable frames are
    rejected), the window is capped at 2**27, and output is produced in
    bounded pieces.  ``hasher`` sees every compressed byte consumed.

    ``ahead=True`` reads, hashes and decompresses on a thread of its own, one
    piece ahead of the caller (who hashes and writes the content meanwhile: zstd
    and hashlib release the GIL on large buffers).  Such a stream must be closed;
    it is a context manager.
    """

    def __init__(self, handle, start: int, end: int, path: object, hasher=None,
                 ahead: bool = False):
        self.source = as_source(handle)
        self.position, self.end, self.path = start, end, path
        self.hasher = hasher
        self._input = b""
        self._decompressor: ZstdDecompressor | None = None
        produced = self._produce()
        self._pieces = _Ahead(produced) if ahead else produced
        # The latest decompressed piece and how much of it was handed out: content is
        # returned as slices of it (often the whole piece, which is not even copied).
        self._piece = b""
        self._taken = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if isinstance(self._pieces, _Ahead):
            self._pieces.close()

    def _more_input(self) -> bool:
        if self.position >= self.end:
            return False
        chunk = self.source.read_at(self.position, min(READ_SIZE, self.end - self.position))
        if not chunk:
            raise TruncatedArchive("archive ends early", path=self.path)
        self.position += len(chunk)
        if self.hasher is not None:
            self.hasher.update(chunk)
        self._input += chunk
        return True

    def _produce(self):
        """Every decompressed piece (at most READ_SIZE bytes each), in order."""
        while True:
            if self._decompressor is None:
                while len(self._input) < 5 and self._more_input():
                    pass
                if not self._input:
                    return
                if self._input[:4] != ZSTD_MAGIC:
                    raise CorruptArchive("body contains something other than a zstd frame",
                                         path=self.path)
                # Frame_Header_Descriptor bit 2: without it a damaged frame could decode
                # to wrong bytes unnoticed until the end (§4.1); every writer sets it
                if len(self._input) > 4 and not self._input[4] & CONTENT_CHECKSUM_FLAG:
                    raise CorruptArchive("a zstd frame has no content checksum", path=self.path)
                self._decompressor = ZstdDecompressor(option={DParameter.windowLogMax: WINDOW_LOG_MAX})
            if self._decompressor.needs_input and not self._input and not self._more_input():
                # the file has all its bytes (only a shorter file is truncated, and
                # _more_input says so): the signed layout cuts a frame (§7.1)
                raise CorruptArchive("a zstd frame runs past the end of its part of the archive",
                                     path=self.path)
            try:
                out = self._decompressor.decompress(self._input, max_length=READ_SIZE)
            except ZstdError as exc:
                raise CorruptArchive(f"compressed data is damaged ({exc})", path=self.path) from None
            # Input not consumed because of max_length stays inside the decompressor.
            self._input = b""
            if self._decompressor.eof:
                self._input = self._decompressor.unused_data
                self._decompressor = None
            if out:
                yield out

    def _next_piece(self) -> bool:
        piece = next(self._pieces, None)
        if piece is None:
            return False
        self._piece, self._taken = piece, 0
        return True

    def read_some(self, size: int) -> bytes:
        """Between 1 and ``size`` bytes (``b""`` only at the end of the data)."""
        if self._taken >= len(self._piece) and not self._next_piece():
            return b""
        start = self._taken
        self._taken = min(len(self._piece), start + size)
        return self._piece[start:self._taken]   # the piece itself when it is taken whole

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or fewer only at the end of the data."""
        data = self.read_some(size)
        if len(data) == size or not data:
            return data
        parts = [data]
        missing = size - len(data)
        while missing:
            more = self.read_some(missing)
            if not more:
                break
            parts.append(more)
            missing -= len(more)
        return b"".join(parts)

    def at_end(self) -> bool:
        if self._taken < len(self._piece):
            return False
        return not self._next_piece()


def expect(stream: FrameStream, expected: bytes, what: str, path: object) -> None:
    actual = stream.read(len(expected))
    if actual != expected:
        if len(actual) < len(expected):
            raise CorruptArchive(f"the decompressed data ends before {what}", path=path)
        raise CorruptArchive(f"{what}: tar header differs from the signed index", path=path)


AHEAD_PIECES = 1        # decompressed pieces waiting for the caller: 1 MiB at most


class _Ahead:
    """Runs a generator on a thread, ``AHEAD_PIECES`` items ahead of its consumer.

    Its exception is raised to the consumer, with its own type, in order; ``close``
    stops the thread (also when the consumer gave up half-way).
    """

    def __init__(self, items):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD_PIECES)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    return
        except BaseException as exc:    # handed to the consumer, raised there
            self._put((False, exc))
            return
        self._put((True, None))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        ok, item = self._queue.get()
        if ok and item is not None:
            return item
        self._done = True
        self._thread.join()
        if not ok:
            raise item
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
