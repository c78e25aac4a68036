"""Sealed objects: streamed AES-256-GCM in the manner of Tink's AES-GCM-HKDF and age's STREAM.

One object is ``header || segment_0 || ... || segment_n``:

    header   = "PPS1" || 0x01 (AES-256-GCM) || 0x10 (log2 segment size) || 0x0000 || salt[24]
    K        = HKDF-SHA256(ikm = data key, salt = salt,
                           info = "poppoarc/1 object" || 0x00 || archive id || 0x00
                                  || u64be(entry index) || u32be(chunk index))
    nonce_i  = 0x00 * 7 || u32be(i) || (0x01 if i is the last segment else 0x00)
    segment_i = AES-256-GCM(K, nonce_i, plaintext_i, aad = header)

Every segment but the last holds exactly 65 536 plaintext bytes; the last
holds 1..65 536, or 0 only when the whole plaintext is empty, so each length
has exactly one segmentation.  A fresh key per object (random salt, bound to
the archive, entry and chunk) makes the counter nonce safe and makes objects
useless anywhere but their own place (spec/FORMAT.md §11).
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"PPS1"
AEAD_AES_256_GCM = 0x01
SEGMENT_LOG2 = 16
SEGMENT = 1 << SEGMENT_LOG2
TAG = 16
SALT = 24
HEADER = 8 + SALT
MAX_SEGMENTS = 2**32
INDEX_ENTRY = 2**64 - 1          # the entry index used for the encrypted index itself


class SegmentError(ValueError):
    """An object fails authentication or does not have the one valid layout."""


def segment_count(plaintext_length: int) -> int:
    return max(1, -(-plaintext_length // SEGMENT))


def sealed_size(plaintext_length: int) -> int:
    """Ciphertext length of an object holding ``plaintext_length`` bytes."""
    return HEADER + plaintext_length + TAG * segment_count(plaintext_length)


def plaintext_size(sealed_length: int) -> int:
    """Inverse of ``sealed_size``; raises SegmentError when no plaintext length fits."""
    body = sealed_length - HEADER
    segments = max(1, -(-body // (SEGMENT + TAG)))
    length = body - TAG * segments
    if length < 0 or sealed_size(length) != sealed_length:
        raise SegmentError(f"{sealed_length} bytes is not the size of any sealed object")
    return length


def object_key(data_key: bytes, salt: bytes, archive_id: str, entry: int, chunk: int) -> bytes:
    info = (b"poppoarc/1 object\x00" + archive_id.encode("ascii") + b"\x00"
            + struct.pack(">QI", entry, chunk))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(data_key)


def _nonce(index: int, last: bool) -> bytes:
    return b"\x00" * 7 + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def seal(data_key: bytes, archive_id: str, entry: int, chunk: int, plaintext: bytes,
         salt: bytes | None = None) -> bytes:
    """Encrypt one object (``salt`` is random unless given, for test vectors)."""
    salt = os.urandom(SALT) if salt is None else salt
    if len(salt) != SALT:
        raise ValueError("salt must be 24 bytes")
    count = segment_count(len(plaintext))
    if count >= MAX_SEGMENTS:
        raise ValueError("object too large for one key")
    header = MAGIC + bytes([AEAD_AES_256_GCM, SEGMENT_LOG2, 0, 0]) + salt
    aead = AESGCM(object_key(data_key, salt, archive_id, entry, chunk))
    view = memoryview(plaintext)
    parts = [header]
    for index in range(count):
        piece = view[index * SEGMENT:(index + 1) * SEGMENT]
        parts.append(aead.encrypt(_nonce(index, index == count - 1), bytes(piece), header))
    return b"".join(parts)


def open_sealed(data_key: bytes, archive_id: str, entry: int, chunk: int, sealed: bytes) -> bytes:
    """Decrypt and authenticate one whole object, or raise SegmentError."""
    view = memoryview(sealed)
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        position += size
        return bytes(view[position - size:position])

    return b"".join(open_stream(data_key, archive_id, entry, chunk, read, len(sealed)))


def open_stream(data_key: bytes, archive_id: str, entry: int, chunk: int, read, length: int):
    """The plaintext of an object of ``length`` bytes read with ``read(n)``, one segment
    at a time: each is authenticated before it is yielded, and a dropped, reordered or
    cut segment fails (the counter and the last-segment flag are in the nonce), but the
    object is only known whole when the last segment was yielded."""
    if length < HEADER + TAG:
        raise SegmentError("sealed object shorter than its header and one tag")
    header = read(HEADER)
    if len(header) != HEADER or header[:4] != MAGIC or header[4] != AEAD_AES_256_GCM \
            or header[5] != SEGMENT_LOG2 or header[6:8] != b"\x00\x00":
        raise SegmentError("sealed object header is not poppoarc/1 AES-256-GCM with 64 KiB segments")
    plaintext = plaintext_size(length)
    count = segment_count(plaintext)
    aead = AESGCM(object_key(data_key, header[8:], archive_id, entry, chunk))
    for index in range(count):
        size = min(SEGMENT, plaintext - index * SEGMENT) + TAG
        piece = read(size)
        if len(piece) != size:
            raise SegmentError("sealed object is cut short")
        try:
            yield aead.decrypt(_nonce(index, index == count - 1), piece, header)
        except InvalidTag:
            raise SegmentError(f"segment {index} fails authentication") from None
