"""The byte-level pieces: canonical JSON (§1), ustar/pax headers (§4.2), zstd frames (§4.1)."""

from __future__ import annotations

import json

from pyzstd import DParameter, ZstdDecompressor, ZstdError

MAGIC = bytes.fromhex("28b52ffd")
OCTAL_7, OCTAL_11 = 0o7777777, 0o77777777777


class Verdict(Exception):
    """A reader's conclusion other than ``ok``: one class of §7.1 and why."""

    def __init__(self, verdict: str, message: str):
        super().__init__(f"{verdict}: {message}")
        self.verdict = verdict


def fail(verdict: str, message: str):
    raise Verdict(verdict, message)


# -- §1 canonical JSON -----------------------------------------------------------------

def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _unique(pairs):
    found = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key}")
        found[key] = value
    return found


def _refuse(text):
    raise ValueError(f"{text} is not allowed")


def depth(data: bytes) -> int:
    """§14: how deeply arrays and objects nest, brackets inside strings not counted."""
    deepest = level = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif byte in b"]}":
            level -= 1
    return deepest


def strict_json(data: bytes, verdict: str, what: str):
    """§1: a value whose re-encoding is the input, without duplicates, floats, NaN; §14:
    nested at most 8 deep, checked before parsing."""
    if depth(data) > 8:
        fail(verdict, f"{what} nests deeper than 8 levels")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique,
                           parse_float=_refuse, parse_constant=_refuse)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        fail(verdict, f"{what} is not JSON of the allowed kind: {exc}")
    if canonical(value) != data:
        fail(verdict, f"{what} is not canonical JSON")
    return value


def is_int(value) -> bool:
    return type(value) is int and 0 <= value < 2**63


# -- §4.2 headers ----------------------------------------------------------------------

def _block(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
           linkname: bytes) -> bytes:
    header = bytearray(512)
    header[0:len(name)] = name
    header[100:108] = b"%07o\0" % mode
    header[108:116] = b"%07o\0" % uid
    header[116:124] = b"%07o\0" % gid
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"%011o\0" % mtime
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[157:157 + len(linkname)] = linkname
    header[257:265] = b"ustar\x0000"
    header[329:345] = b"0000000\x000000000\x00"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _rendering(text: str) -> bytes:
    """One ``?`` per code point above U+007F, then the first 100 bytes."""
    return "".join(c if ord(c) < 0x80 else "?" for c in text).encode("ascii")[:100]


def _record(key: str, value: str) -> bytes:
    rest = f" {key}={value}\n".encode("utf-8")
    length = len(rest) + 1
    while len(str(length)) + len(rest) != length:
        length = len(str(length)) + len(rest)
    return str(length).encode("ascii") + rest


def header(name: str, typeflag: bytes, mode: int, uid: int, gid: int, size: int, seconds: int,
           linkname: str = "") -> bytes:
    """The exact bytes a member's header is (§4.2), pax header included when needed."""
    def fits(text: str) -> bool:
        return text.isascii() and len(text) <= 100
    pax = []
    if not fits(name):
        pax.append(_record("path", name))
    if not fits(linkname):
        pax.append(_record("linkpath", linkname))
    if size > OCTAL_11:
        pax.append(_record("size", str(size)))
    if not 0 <= seconds <= OCTAL_11:
        pax.append(_record("mtime", str(seconds)))
    if uid > OCTAL_7:
        pax.append(_record("uid", str(uid)))
    if gid > OCTAL_7:
        pax.append(_record("gid", str(gid)))
    clamped = min(max(seconds, 0), OCTAL_11)
    ustar = _block(_rendering(name), mode & 0o7777, min(uid, OCTAL_7), min(gid, OCTAL_7),
                   min(size, OCTAL_11), clamped, typeflag, _rendering(linkname))
    if not pax:
        return ustar
    records = b"".join(pax)
    return (_block(b"././@PaxHeader", 0o644, 0, 0, len(records), clamped, b"x", b"")
            + records + bytes(-len(records) % 512) + ustar)


def fixed_header(name: str, mode: int, size: int, seconds: int) -> bytes:
    """§4.3: the members of no record (head, note, index) and sealed members."""
    return header(name, b"0", mode, 0, 0, size, seconds)


def octal_field(field: bytes) -> int | None:
    digits = field.rstrip(b"\0 ")
    if not digits or any(c not in b"01234567" for c in digits):
        return None
    return int(digits, 8)


# -- §4.1 frames -----------------------------------------------------------------------

def frames(data: bytes) -> bytes:
    """Decode consecutive zstd frames strictly: magic, content checksum, window 2^27."""
    out = bytearray()
    position = 0
    while position < len(data):
        if data[position:position + 4] != MAGIC:
            fail("CorruptArchive", f"no zstd frame at body byte {position}")
        if len(data) - position < 5:
            fail("TruncatedArchive", "the archive ends inside a frame header")
        if not data[position + 4] & 0x04:
            fail("CorruptArchive", "a frame without a content checksum")
        decoder = ZstdDecompressor(option={DParameter.windowLogMax: 27})
        try:
            out += decoder.decompress(data[position:])
        except ZstdError as exc:
            fail("CorruptArchive", f"a frame does not decode: {exc}")
        if not decoder.eof:
            fail("TruncatedArchive", "the archive ends inside a frame")
        position = len(data) - len(decoder.unused_data)
    return bytes(out)
