"""Encryption (§11): recipient stanzas, sealed objects, the HMAC key."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyzstd import ZstdDecompressor, ZstdError

from .tar import fail, is_int

CHUNK = 4194304
SEGMENT = 65536
BOUNDS = {"time_cost": (2, 8), "memory_kib": (19456, 262144), "lanes": (1, 8)}


def _b64(text, length: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != length:
        fail("CorruptArchive", f"{what} is not {length} bytes of base64")
    return raw


def check_header(encryption: dict) -> None:
    """§11.2: everything a reader rejects before running any KDF."""
    if not isinstance(encryption, dict) or set(encryption) != {
            "chunk_size", "recipients", "scheme", "scope"}:
        fail("CorruptArchive", "malformed encryption header")
    if encryption["scheme"] != "poppoarc-seg/1" or encryption["scope"] not in (
            "archive", "secrets") or encryption["chunk_size"] != CHUNK:
        fail("CorruptArchive", "unknown scheme, scope or chunk size")
    stanzas = encryption["recipients"]
    if not isinstance(stanzas, list) or not stanzas:
        fail("CorruptArchive", "no recipient stanzas")
    for stanza in stanzas:
        kind = stanza.get("type") if isinstance(stanza, dict) else None
        if kind == "argon2id" and set(stanza) == {"type", "salt", "wrapped", *BOUNDS}:
            for name, (low, high) in BOUNDS.items():
                if not is_int(stanza[name]) or not low <= stanza[name] <= high:
                    fail("CorruptArchive", f"argon2id {name} out of bounds")
            _b64(stanza["salt"], 16, "salt")
        elif kind == "x25519" and set(stanza) == {"type", "key_id", "ephemeral", "wrapped"}:
            _b64(stanza["ephemeral"], 32, "ephemeral key")
        else:
            fail("CorruptArchive", "unknown stanza type or fields")
        _b64(stanza["wrapped"], 48, "wrapped key")
    if sum(s["type"] == "argon2id" for s in stanzas) > 1:
        fail("CorruptArchive", "more than one argon2id stanza")


def unwrap(encryption: dict, archive_id: str, passphrase: bytes | None, identity) -> bytes | None:
    """The data key; None when the reader holds no key at all (§11.2)."""
    if passphrase is None and identity is None:
        return None
    aad_id = archive_id.encode("ascii")
    for stanza in encryption["recipients"]:
        wrapped = base64.b64decode(stanza["wrapped"])
        if stanza["type"] == "argon2id" and passphrase is not None:
            kek = Argon2id(salt=base64.b64decode(stanza["salt"]), length=32,
                           iterations=stanza["time_cost"], lanes=stanza["lanes"],
                           memory_cost=stanza["memory_kib"]).derive(passphrase)
            aad = b"poppoarc/1 argon2id" + aad_id
        elif stanza["type"] == "x25519" and identity is not None:
            ephemeral = base64.b64decode(stanza["ephemeral"])
            mine = identity.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
            shared = identity.exchange(X25519PublicKey.from_public_bytes(ephemeral))
            if shared == bytes(32):
                fail("CorruptArchive", "a low-order ephemeral key (§11.2)")
            kek = HKDF(hashes.SHA256(), 32, ephemeral + mine, b"poppoarc/1 x25519").derive(shared)
            aad = b"poppoarc/1 x25519" + aad_id
        else:
            continue
        try:
            return AESGCM(kek).decrypt(bytes(12), wrapped, aad)
        except InvalidTag:
            continue
    fail("WrongKey", "no stanza opens with the keys held")


def open_object(data_key: bytes, archive_id: str, entry: int, chunk: int, sealed: bytes,
                limit: int) -> bytes:
    """§11.3: decrypt one object, then decompress it (at most ``limit`` bytes)."""
    if len(sealed) < 48 or sealed[:8] != b"PPS1\x01\x10\x00\x00":
        fail("CorruptArchive", "not a sealed object")
    info = (b"poppoarc/1 object\x00" + archive_id.encode("ascii") + b"\x00"
            + entry.to_bytes(8, "big") + chunk.to_bytes(4, "big"))
    key = HKDF(hashes.SHA256(), 32, sealed[8:32], info).derive(data_key)
    body, plain, number = sealed[32:], bytearray(), 0
    while True:
        piece, body = body[:SEGMENT + 16], body[SEGMENT + 16:]
        last = not body
        nonce = bytes(7) + number.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        try:
            plain += AESGCM(key).decrypt(nonce, piece, sealed[:32])
        except InvalidTag:
            fail("CorruptArchive", f"object {entry}.{chunk} fails authentication")
        if last:
            break
        number += 1
    if len(sealed) != 32 + len(plain) + 16 * max(1, -(-len(plain) // SEGMENT)):
        fail("CorruptArchive", "a sealed object of another length than its plaintext's")
    decoder = ZstdDecompressor()
    try:
        out = decoder.decompress(bytes(plain), max_length=limit + 1)
    except ZstdError as exc:
        fail("CorruptArchive", f"sealed chunk does not decode: {exc}")
    if len(out) > limit or not decoder.eof or decoder.unused_data:
        fail("CorruptArchive", "sealed chunk holds more or less than one frame of its size")
    return out


def mac(data_key: bytes, archive_id: str, content: bytes) -> str:
    key = HKDF(hashes.SHA256(), 32, None,
               b"poppoarc/1 hmac\x00" + archive_id.encode("ascii")).derive(data_key)
    return hmac.new(key, content, hashlib.sha256).hexdigest()
