"""Strict reading of consecutive zstd frames (spec/FORMAT.md §4.1), and byte-exact checks.

Every frame must start with the zstd magic (skippable frames are rejected), the window
is capped at 2**27, and output comes in bounded pieces; ``expect`` compares the next
bytes with what the signed index implies.
"""

from __future__ import annotations

from pyzstd import DParameter, ZstdDecompressor, ZstdError

from ..errors import CorruptArchive, TruncatedArchive
from .access import as_source
from .head import ZSTD_MAGIC

WINDOW_LOG_MAX = 27
READ_SIZE = 1 << 20


class FrameStream:
    """Decompressed bytes of consecutive zstd frames, with strict framing.

    Every frame must start with the zstd magic (skippable frames are
    rejected), the window is capped at 2**27, and output is produced in
    bounded pieces.  ``hasher`` sees every compressed byte consumed.
    """

    def __init__(self, handle, start: int, end: int, path: object, hasher=None):
        self.source = as_source(handle)
        self.position, self.end, self.path = start, end, path
        self.hasher = hasher
        self._input = b""
        self._decompressor: ZstdDecompressor | None = None
        # The latest decompressed piece and how much of it was handed out: content is
        # returned as slices of it (often the whole piece, which is not even copied).
        self._piece = b""
        self._taken = 0

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

    def _next_piece(self) -> bool:
        """Decompress the next piece (at most READ_SIZE bytes); False at the end."""
        while True:
            if self._decompressor is None:
                while len(self._input) < 4 and self._more_input():
                    pass
                if not self._input:
                    return False
                if self._input[:4] != ZSTD_MAGIC:
                    raise CorruptArchive("body contains something other than a zstd frame",
                                         path=self.path)
                self._decompressor = ZstdDecompressor(option={DParameter.windowLogMax: WINDOW_LOG_MAX})
            if self._decompressor.needs_input and not self._input and not self._more_input():
                raise TruncatedArchive("archive ends inside a zstd frame", path=self.path)
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
                self._piece, self._taken = out, 0
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
            raise TruncatedArchive(f"archive ends before {what}", path=path)
        raise CorruptArchive(f"{what}: tar header differs from the signed index", path=path)
