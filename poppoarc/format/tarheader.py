"""POSIX tar headers, written by hand for speed and exactness.

poppoarc writes a strict subset of pax/ustar (spec/FORMAT.md §4): one ustar
header per member, preceded by a per-file pax header (typeflag ``x``) only
when a value does not fit ustar.  Readers never parse these headers with a
general tar parser: they re-encode the header expected from the signed index
and compare bytes, which removes every parser-differential attack at once.
"""

from __future__ import annotations

import struct
from zlib import adler32

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
PAX = b"x"

_MAX_OCTAL_7 = 0o7777777          # 8-byte numeric fields (mode, uid, gid)
_MAX_OCTAL_11 = 0o77777777777     # 12-byte numeric fields (size, mtime)


def padding(size: int) -> int:
    """Bytes of zero padding after ``size`` bytes of member data."""
    return -size % BLOCK


def _pax_record(key: str, value: str) -> bytes:
    payload = f" {key}={value}\n".encode("utf-8")
    # The length prefix counts its own digits, so find the fixed point.
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return str(length).encode("ascii") + payload


def _fits_ustar_text(text: str, limit: int) -> bool:
    return text.isascii() and len(text) <= limit and "\0" not in text


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s167x")


def _ustar(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int,
           mtime: int, linkname: bytes, uname: bytes, gname: bytes) -> bytes:
    header = _USTAR.pack(name, b"%07o\0" % mode, b"%07o\0" % uid, b"%07o\0" % gid,
                         b"%011o\0" % size, b"%011o\0" % mtime, b"        ", typeflag,
                         linkname, b"ustar\x0000", uname, gname, b"0000000\0", b"0000000\0")
    # The checksum is the byte sum with its own field read as spaces (as packed above).
    # The low half of Adler-32 is 1 + the byte sum mod 65521, exact for 256 bytes (at most
    # 65280): two C calls instead of summing 512 Python ints.
    view = memoryview(header)
    total = (adler32(view[:256]) & 0xFFFF) + (adler32(view[256:]) & 0xFFFF) - 2
    return header[:148] + b"%06o\0 " % total + header[156:]


def member_header(name: str, typeflag: bytes, *, mode: int, uid: int = 0, gid: int = 0,
                  size: int = 0, mtime: int = 0, linkname: str = "", uname: str = "",
                  gname: str = "") -> bytes:
    """The header block(s) that precede a member's data.

    ``mtime`` is whole seconds; sub-second times live in the manifest only.
    A pax header is emitted exactly when some value does not fit ustar.
    """
    if (len(name) <= 100 and name.isascii() and not linkname and not uname and not gname
            and size <= _MAX_OCTAL_11 and 0 <= mtime <= _MAX_OCTAL_11
            and uid <= _MAX_OCTAL_7 and gid <= _MAX_OCTAL_7 and "\0" not in name):
        # the common case, without building a pax record list
        return _ustar(name.encode("ascii"), typeflag, mode & 0o7777, uid, gid, size, mtime,
                      b"", b"", b"")
    pax: list[bytes] = []
    if not _fits_ustar_text(name, 100):
        pax.append(_pax_record("path", name))
    if not _fits_ustar_text(linkname, 100):
        pax.append(_pax_record("linkpath", linkname))
    if size > _MAX_OCTAL_11:
        pax.append(_pax_record("size", str(size)))
    if not 0 <= mtime <= _MAX_OCTAL_11:
        pax.append(_pax_record("mtime", str(mtime)))
    if uid > _MAX_OCTAL_7:
        pax.append(_pax_record("uid", str(uid)))
    if gid > _MAX_OCTAL_7:
        pax.append(_pax_record("gid", str(gid)))
    if not _fits_ustar_text(uname, 32):
        pax.append(_pax_record("uname", uname))
    if not _fits_ustar_text(gname, 32):
        pax.append(_pax_record("gname", gname))

    def ascii_field(text: str, limit: int) -> bytes:
        raw = text.encode("ascii", "replace")[:limit] if text else b""
        return raw.replace(b"\0", b"?")

    ustar = _ustar(ascii_field(name, 100), typeflag, mode & 0o7777,
                   min(uid, _MAX_OCTAL_7), min(gid, _MAX_OCTAL_7),
                   min(size, _MAX_OCTAL_11), min(max(mtime, 0), _MAX_OCTAL_11),
                   ascii_field(linkname, 100), ascii_field(uname, 32), ascii_field(gname, 32))
    if not pax:
        return ustar
    records = b"".join(pax)
    pax_header = _ustar(b"././@PaxHeader", PAX, 0o644, 0, 0, len(records),
                        min(max(mtime, 0), _MAX_OCTAL_11), b"", b"", b"")
    return pax_header + records + bytes(padding(len(records))) + ustar


def parse_size(header: bytes) -> int:
    """The size field of one plain ustar header (no pax); strict octal."""
    field = header[124:136].rstrip(b"\0 ")
    if not field or not all(0x30 <= c <= 0x37 for c in field):
        raise ValueError("size field is not octal")
    return int(field, 8)


def checksum_ok(header: bytes) -> bool:
    stored = header[148:156].rstrip(b"\0 ")
    if not stored or not all(0x30 <= c <= 0x37 for c in stored):
        return False
    blank = header[:148] + b"        " + header[156:]
    return int(stored, 8) == sum(blank)
