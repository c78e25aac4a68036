"""The archive head: a stored (raw-block) zstd frame at offset 0.

The head frame holds two tar members, ``.poppoarc/manifest.json`` and
``.poppoarc/manifest.sig``.  Its size is fixed before the body is written,
so the writer reserves it, streams the body, and then writes the finished,
signed manifest into the reserved bytes (spec/FORMAT.md §3).  Because the
head is a deterministic function of (manifest bytes, signature bytes, head
size, timestamp), a reader re-encodes it and compares every byte.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from itertools import accumulate

from ..errors import ForeignArchive, TamperedArchive, TruncatedArchive, UnsupportedFormat
from . import tarheader, versions

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HEAD_FHD = 0xE0                 # 8-byte content size, single segment, no checksum
FRAME_HEADER_SIZE = 4 + 1 + 8
RAW_BLOCK_MAX = 128 * 1024      # largest zstd block
MIN_HEAD_SIZE = 4096
MAX_HEAD_SIZE = 1024 * 1024     # the bound on what `list` reads (plus framing)
SIG_MEMBER_SIZE = 512

MANIFEST_NAME = ".poppoarc/manifest.json"
SIGNATURE_NAME = ".poppoarc/manifest.sig"
INDEX_NAME = ".poppoarc/index.jsonl"
ENCRYPTED_INDEX_NAME = ".poppoarc/index.enc"
# The same in every format version (§15): it names the signature scheme, which has not
# changed, and the signed manifest names its own version.
SIGNATURE_CONTEXT = b"poppoarc/1 manifest\x00"


def head_frame_size(head_size: int) -> int:
    """Bytes the head frame occupies in the file for ``head_size`` content bytes."""
    blocks = -(-head_size // RAW_BLOCK_MAX)
    return FRAME_HEADER_SIZE + head_size + 3 * blocks


def canonical_json(value: object) -> bytes:
    """The one byte encoding of a JSON value that poppoarc writes and accepts."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def reject_float(text: str):
    raise ValueError(f"non-integer number {text} is not allowed")


def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


# Every JSON document a reader parses before (or without) trusting it is bounded first
# (spec/FORMAT.md §14): in bytes by where it sits (the head, one index line), and in
# nesting here.  The deepest valid document is an encrypted index's header line (5 levels:
# sealed_manifest, databases, a database, its tables); a parser that recurses would
# otherwise meet a hostile 10,000-level array before any signature is checked.
MAX_JSON_DEPTH = 8
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``data`` (brackets inside
    strings do not count).  Linear in ``len(data)``, recursion-free: safe on any input."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(1 if c in b"[{" else -1 for c in brackets))


def check_json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ValueError when ``data`` nests deeper than ``limit``; cheap for the common
    case (a line with few brackets cannot nest deeply)."""
    if data.count(b"[") + data.count(b"{") > limit and json_depth(data) > limit:
        raise ValueError(f"JSON nests deeper than {limit} levels")


def strict_loads(data: bytes) -> object:
    """Parse canonical JSON; anything non-canonical, or nested deeper than
    ``MAX_JSON_DEPTH``, raises ValueError."""
    check_json_depth(data)
    value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                       parse_constant=reject_constant, parse_float=reject_float)
    if canonical_json(value) != data:
        raise ValueError("JSON is not in canonical form")
    return value


def signed_message(manifest_member: bytes) -> bytes:
    return SIGNATURE_CONTEXT + manifest_member


def manifest_capacity(head_size: int) -> int:
    """Size of the manifest member's data: the head minus three 512-byte blocks."""
    return head_size - 3 * tarheader.BLOCK


def pad_manifest(manifest_json: bytes, head_size: int) -> bytes:
    """Manifest member bytes: canonical JSON, spaces, one newline."""
    capacity = manifest_capacity(head_size)
    if len(manifest_json) + 1 > capacity:
        raise OverflowError(f"manifest of {len(manifest_json)} bytes exceeds head capacity {capacity}")
    return manifest_json + b" " * (capacity - len(manifest_json) - 1) + b"\n"


def encode_head(manifest_member: bytes, signature_json: bytes, head_size: int,
                mtime: int) -> bytes:
    """The complete head frame (zstd frame header + raw blocks)."""
    if len(signature_json) > SIG_MEMBER_SIZE:
        raise OverflowError("signature document too long")
    content = b"".join([
        tarheader.member_header(MANIFEST_NAME, tarheader.REGULAR, mode=0o644,
                                size=len(manifest_member), mtime=mtime),
        manifest_member,
        tarheader.member_header(SIGNATURE_NAME, tarheader.REGULAR, mode=0o644,
                                size=len(signature_json), mtime=mtime),
        signature_json,
        bytes(tarheader.padding(len(signature_json))),
    ])
    if len(content) != head_size:
        raise ValueError("head content does not fill the reserved size")
    parts = [ZSTD_MAGIC, bytes([HEAD_FHD]), struct.pack("<Q", head_size)]
    for start in range(0, head_size, RAW_BLOCK_MAX):
        block = content[start:start + RAW_BLOCK_MAX]
        last = 1 if start + RAW_BLOCK_MAX >= head_size else 0
        # block header: bit 0 last, bits 1-2 type (0 = raw), bits 3-23 size
        parts.append((last | (len(block) << 3)).to_bytes(3, "little"))
        parts.append(block)
    return b"".join(parts)


@dataclass(frozen=True)
class RawHead:
    """The head as found in a file, before any trust decision."""

    head_size: int
    frame: bytes              # the whole head frame as read
    manifest_member: bytes    # padded manifest bytes (what is signed)
    manifest: dict            # parsed manifest ({} when it is not a JSON object)
    signature: dict           # parsed signature document
    signature_json: bytes
    # why the signed manifest member breaks §3.2/§1 (padding, not canonical JSON), or None;
    # only known to be the signer's doing once the signature verified (reader.authenticate)
    problem: str | None = None


def read_head_size(prefix: bytes, path: object) -> int:
    """Validate the head frame header in the first 13 bytes; return its content size."""
    if len(prefix) < FRAME_HEADER_SIZE:
        if prefix and not ZSTD_MAGIC.startswith(prefix[:4]):
            raise ForeignArchive("not a zstd file", path=path)
        raise TruncatedArchive("file too short to hold a poppoarc head", path=path)
    if prefix[:4] != ZSTD_MAGIC:
        if prefix[1:4] == b"\x2a\x4d\x18" and 0x50 <= prefix[0] <= 0x5F:
            raise ForeignArchive("starts with a zstd skippable frame, not a poppoarc head frame",
                                 path=path)
        raise ForeignArchive("not a zstd file (bad magic number)", path=path)
    if prefix[4] != HEAD_FHD:
        raise ForeignArchive("zstd file without a poppoarc head frame", path=path)
    (head_size,) = struct.unpack("<Q", prefix[5:13])
    if not MIN_HEAD_SIZE <= head_size <= MAX_HEAD_SIZE or head_size % tarheader.BLOCK:
        raise ForeignArchive(f"head frame content size {head_size} out of range", path=path)
    return head_size


def decode_head(frame: bytes, path: object) -> RawHead:
    """Parse and structurally validate a complete head frame."""
    head_size = read_head_size(frame, path)
    if len(frame) < head_frame_size(head_size):
        raise TruncatedArchive("file ends inside the head frame", path=path)
    content = bytearray()
    offset = FRAME_HEADER_SIZE
    while len(content) < head_size:
        block_header = int.from_bytes(frame[offset:offset + 3], "little")
        block_type, size = (block_header >> 1) & 3, block_header >> 3
        if block_type != 0:
            raise ForeignArchive("head frame is not stored (raw) data", path=path)
        content += frame[offset + 3:offset + 3 + size]
        offset += 3 + size
        if block_header & 1:
            break
    if len(content) != head_size:
        raise TamperedArchive("head frame blocks do not add up to its declared size", path=path)
    first = bytes(content[:tarheader.BLOCK])
    if not first.startswith(MANIFEST_NAME.encode() + b"\0") or not tarheader.checksum_ok(first):
        raise ForeignArchive("first member is not a poppoarc manifest", path=path)
    manifest_len = tarheader.parse_size(first)
    if manifest_len != manifest_capacity(head_size):
        raise TamperedArchive("manifest member size does not match the head size", path=path)
    manifest_member = bytes(content[tarheader.BLOCK:tarheader.BLOCK + manifest_len])
    sig_header = bytes(content[tarheader.BLOCK + manifest_len:2 * tarheader.BLOCK + manifest_len])
    if not sig_header.startswith(SIGNATURE_NAME.encode() + b"\0") or not tarheader.checksum_ok(sig_header):
        raise TamperedArchive("second member is not the manifest signature", path=path)
    sig_len = tarheader.parse_size(sig_header)
    if sig_len > SIG_MEMBER_SIZE:
        raise TamperedArchive("signature member too long", path=path)
    sig_start = 2 * tarheader.BLOCK + manifest_len
    signature_json = bytes(content[sig_start:sig_start + sig_len])
    # A later format may change everything after this point, even how it signs: its
    # name is read first, from any JSON the manifest member holds (§5.3, §7 step 2).
    declared = declared_format(manifest_member)
    if declared is not None and versions.named(declared) is None:
        raise UnsupportedFormat(f"archive format {declared!r} is not one this poppoarc reads "
                                f"({versions.READABLE}): it needs a newer poppoarc", path=path)
    try:
        signature = strict_loads(signature_json)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TamperedArchive(f"signature document is not canonical JSON: {exc}",
                              path=path) from None
    if not isinstance(signature, dict):
        raise TamperedArchive("signature document is not a JSON object", path=path)
    manifest, problem = _parse_manifest(manifest_member)
    return RawHead(head_size=head_size, frame=frame[:head_frame_size(head_size)],
                   manifest_member=manifest_member, manifest=manifest,
                   signature=signature, signature_json=signature_json, problem=problem)


class _Pairs(list):
    """A JSON object as the list of its (name, value) pairs, duplicates kept."""


def declared_format(manifest_member: bytes) -> str | None:
    """The ``format`` a manifest member names, read from any JSON (RFC 8259, canonical or
    not; its padding is JSON whitespace): None unless it is an object with exactly one
    ``format`` member whose value is a string."""
    try:
        top = json.loads(manifest_member.decode("utf-8"), object_pairs_hook=_Pairs)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(top, _Pairs):
        return None
    named = [value for key, value in top if key == "format"]
    return named[0] if len(named) == 1 and isinstance(named[0], str) else None


def _parse_manifest(manifest_member: bytes) -> tuple[dict, str | None]:
    """(the manifest, None), or (what can be shown of it, why it breaks §3.2 or §1)."""
    body = manifest_member.rstrip(b" \n")
    if manifest_member[len(body):] != b" " * (len(manifest_member) - len(body) - 1) + b"\n":
        return {}, "manifest padding is not spaces and a newline"
    try:
        manifest = strict_loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        try:
            shown = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            shown = {}
        return (shown if isinstance(shown, dict) else {}), f"manifest is not canonical JSON: {exc}"
    if not isinstance(manifest, dict):
        return {}, "manifest is not a JSON object"
    return manifest, None
