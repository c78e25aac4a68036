"""An encrypted archive's data key (``Sealer``): compress each 4 MiB chunk, then encrypt it
as an object; the HMAC of each sealed file.  (Where the objects go in the body, and how
they are read back, is ``format/sealed.py``; the AES-GCM segments, ``segments.py``.)

Compression comes first because ciphertext does not compress; the outer
zstd frames of an encrypted archive then only carry the tar framing.  A
sealed file's plaintext is authenticated per object by AES-GCM and as a
whole by an HMAC recorded in the index (a plain SHA-256 of a secret in a
readable index would let anyone test guesses of it offline).
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyzstd import DParameter, ZstdCompressor, ZstdDecompressor, ZstdError

from . import segments

CHUNK_LEVEL = 3


class Sealer:
    def __init__(self, data_key: bytes, archive_id: str):
        self.data_key, self.archive_id = data_key, archive_id
        self._local = threading.local()
        self._mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                             info=b"poppoarc/1 hmac\x00" + archive_id.encode("ascii")).derive(data_key)

    def new_mac(self):
        return hmac.new(self._mac_key, digestmod=hashlib.sha256)

    def seal_chunk(self, entry: int, chunk: int, plaintext: bytes) -> bytes:
        """Compress and seal; thread-safe (writers seal chunks on a pool)."""
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:      # one per thread: allocating a context per chunk is costly
            compressor = self._local.compressor = ZstdCompressor(CHUNK_LEVEL)
        frame = compressor.compress(plaintext, ZstdCompressor.FLUSH_FRAME)
        return segments.seal(self.data_key, self.archive_id, entry, chunk, frame)

    def seal_stream(self, entry: int, chunk: int, read) -> bytes:
        """Compress ``read(n)``'s bytes as they come, then seal the frame (a large index:
        its plaintext never sits in memory whole)."""
        compressor = ZstdCompressor(CHUNK_LEVEL)
        pieces = []
        while data := read(1 << 20):
            pieces.append(compressor.compress(data))
        pieces.append(compressor.flush(ZstdCompressor.FLUSH_FRAME))
        return segments.seal(self.data_key, self.archive_id, entry, chunk, b"".join(pieces))

    def open_to_file(self, entry: int, chunk: int, read, length: int, out, limit: int) -> int:
        """Decrypt the object of ``length`` bytes that ``read(n)`` gives, segment by
        segment, and decompress it into the binary file ``out``, at most ``limit``
        bytes (more is an error); returns how many.  Neither the object nor its
        plaintext sits in memory whole: an encrypted index may be large."""
        decompressor = ZstdDecompressor(option={DParameter.windowLogMax: 27})
        written = 0
        try:
            for compressed in segments.open_stream(self.data_key, self.archive_id, entry, chunk,
                                                   read, length):
                while True:
                    if decompressor.eof:
                        if compressed or decompressor.unused_data:
                            raise segments.SegmentError("sealed object has trailing data")
                        break
                    piece = decompressor.decompress(compressed, max_length=1 << 20)
                    compressed = b""
                    written += len(piece)
                    if written > limit:
                        raise segments.SegmentError(
                            f"sealed object inflates beyond its limit of {limit} bytes")
                    out.write(piece)
                    if not piece and decompressor.needs_input:
                        break
        except ZstdError as exc:
            raise segments.SegmentError(f"sealed object does not decompress ({exc})") from None
        if not decompressor.eof or decompressor.unused_data:
            raise segments.SegmentError("sealed object is cut short or has trailing data")
        return written

    def open_chunk(self, entry: int, chunk: int, sealed: bytes, expected: int | None,
                   limit: int = 0) -> bytes:
        """Decrypt, then decompress exactly ``expected`` bytes (or at most ``limit``).

        Output beyond the expected length is never produced, so a chunk that
        inflates past it (a decompression bomb) stops there.
        """
        compressed = segments.open_sealed(self.data_key, self.archive_id, entry, chunk, sealed)
        decompressor = ZstdDecompressor(option={DParameter.windowLogMax: 27})
        cap = (expected if expected is not None else limit) + 1
        try:
            plaintext = decompressor.decompress(compressed, max_length=cap)
        except ZstdError as exc:
            raise segments.SegmentError(f"sealed chunk does not decompress ({exc})") from None
        wrong_length = len(plaintext) != expected if expected is not None else len(plaintext) >= cap
        if wrong_length or not decompressor.eof or decompressor.unused_data:
            raise segments.SegmentError("sealed chunk has the wrong length")
        return plaintext
