"""One index record (spec/FORMAT.md §5.4): its fields, and the rules a reader checks
on each record alone.  ``manifest`` checks the index as a whole (order, duplicates,
hard links) and re-exports these names."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .paths import path_problem

ENTRY_TYPES = ("file", "dir", "symlink", "hardlink")
ID_PATTERN = re.compile(r"backup-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z)-([a-z0-9]{6})\Z")
CHUNK_SIZE = 4 * 1024 * 1024        # plaintext bytes per sealed object
BLOCK_DIGEST = 16                   # bytes of SHA-256 kept per block
BUNDLE_MAX = 65536                  # sealed files up to this size share objects (§11.4)
SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")


def is_int(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63     # not bool, nor an int subclass


# Times are nanoseconds since the epoch, signed: any time a 64-bit time_t holds (a file
# from before 1970 has a negative mtime, one after 2262-04-11 more than 2^63 ns), so that
# pack never writes a time a reader rejects (spec §5.4).
TIME_LIMIT = 2**63 * 10**9


def is_time(value: object) -> bool:
    return type(value) is int and -TIME_LIMIT <= value < TIME_LIMIT


def is_inode(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**64     # st_ino is unsigned 64-bit


# A plain file smaller than this needs no SHA-256 of its own (spec §5.4): the signed
# body checksum covers its bytes, and the digests of many small files (incompressible)
# would make their archive much larger.  Larger files and every database keep theirs.
DIGEST_MIN_SIZE = 1 << 16


def needs_digest(size: int, sqlite: bool) -> bool:
    """Whether a plain (not sealed) file record must carry ``sha256``."""
    return sqlite or size >= DIGEST_MIN_SIZE


@dataclass(slots=True)
class IndexEntry:
    """One archived path, as recorded in the index (compact in memory)."""

    path: str
    target: str | None
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None
    link: str | None = None
    sealed: list | None = None          # [[member name, sealed size], ...] per 4 MiB chunk
    hmac_sha256: str | None = None      # keyed digest of the plaintext of a sealed file
    sqlite: bool = False
    changed: bool = False
    generated: bool = False
    ctime_ns: int | None = None         # live stat facts, for the next incremental's
    ino: int | None = None              # change detection (§12.2)
    stored_in: str | None = None        # content lives in this ancestor's body (§12.3)
    blocks: dict | None = None          # {"size", "digests"}: a database's blocks (§12.4)
    delta: list | None = None           # block numbers stored here; the rest is the parent's
    bundle: int | None = None           # offset in the sealed bundle object it shares (§11.4)

    def needs_key(self) -> bool:
        """Content readable only with a key (also when an ancestor holds it)."""
        return self.sealed is not None or self.hmac_sha256 is not None

    def payload_size(self) -> int:
        """Content bytes this record's member holds in this archive's body."""
        if self.stored_in is not None or self.type != "file":
            return 0
        if self.delta is None:
            return self.size
        block = self.blocks["size"]
        return sum(min(block, self.size - n * block) for n in self.delta)

    def to_json(self) -> dict:
        record = {"path": self.path, "target": self.target, "type": self.type,
                  "mode": self.mode, "uid": self.uid, "gid": self.gid,
                  "mtime_ns": self.mtime_ns, "size": self.size}
        if self.sha256 is not None:
            record["sha256"] = self.sha256
        if self.link is not None:
            record["link"] = self.link
        if self.sealed is not None:
            record["sealed"] = self.sealed
        if self.hmac_sha256 is not None:
            record["hmac_sha256"] = self.hmac_sha256
        for flag in ("sqlite", "changed", "generated"):
            if getattr(self, flag):
                record[flag] = True
        for key in ("ctime_ns", "ino", "stored_in", "blocks", "delta", "bundle"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        return record


# a 4 MiB chunk whose zstd frame did not shrink, plus headers and tags
MAX_SEALED_MEMBER = CHUNK_SIZE + CHUNK_SIZE // 64 + 64 * 1024


def _check_sealed(entry: IndexEntry) -> None:
    chunks = max(1, -(-entry.payload_size() // CHUNK_SIZE))
    if entry.type != "file" or entry.sha256 is not None or not isinstance(entry.sealed, list) \
            or len(entry.sealed) != chunks:
        raise ValueError(f"{entry.path}: sealed member list does not fit its size")
    for member in entry.sealed:
        if not (isinstance(member, list) and len(member) == 2 and isinstance(member[0], str)
                and is_int(member[1]) and path_problem(member[0]) is None
                and member[1] <= MAX_SEALED_MEMBER):
            raise ValueError(f"{entry.path}: malformed sealed member {member!r}")


def block_count(entry: IndexEntry) -> int:
    return -(-entry.size // entry.blocks["size"])


def block_digests(entry: IndexEntry) -> bytes:
    """The record's per-block digests, ``BLOCK_DIGEST`` bytes each (base64 in the index)."""
    try:
        return base64.b64decode(entry.blocks["digests"], validate=True)
    except (ValueError, TypeError):
        raise ValueError(f"{entry.path}: block digests are not base64") from None


def encode_digests(digests: bytes) -> str:
    return base64.b64encode(digests).decode("ascii")


def check_entry(entry: IndexEntry, version) -> None:
    """The rules of one record alone, in an archive of ``version`` (a
    ``versions.FormatVersion``).  What its path may be (§1) and where a restore may write it
    is restore/safety.py's (every reader that restores or verifies applies it)."""
    if not isinstance(entry.path, str) or not entry.path \
            or not (entry.target is None or isinstance(entry.target, str)) \
            or not (entry.link is None or isinstance(entry.link, str)):
        raise ValueError(f"{entry.path!r}: path, target or link is not a string")
    if entry.type not in ENTRY_TYPES:
        raise ValueError(f"{entry.path}: unknown entry type {entry.type!r}")
    if not (entry.target is None or type(entry.target) is str) \
            or not (entry.link is None or type(entry.link) is str):
        raise ValueError(f"{entry.path}: target or link is not a string")
    if not (is_int(entry.mode) and is_int(entry.uid) and is_int(entry.gid)
            and is_int(entry.size)):
        key = next(k for k in ("mode", "uid", "gid", "size") if not is_int(getattr(entry, k)))
        raise ValueError(f"{entry.path}: {key} is not a non-negative integer")
    if not is_time(entry.mtime_ns):
        raise ValueError(f"{entry.path}: mtime_ns is not a time in range")
    if entry.mode > 0o7777:
        raise ValueError(f"{entry.path}: mode out of range")
    keyed = entry.sealed is not None or entry.hmac_sha256 is not None
    digest = entry.hmac_sha256 if keyed else entry.sha256
    if entry.type in ("file", "hardlink"):
        if digest is None:
            if keyed or needs_digest(entry.size, entry.sqlite):
                raise ValueError(f"{entry.path}: missing digest")
        elif not (isinstance(digest, str) and SHA256_HEX.match(digest)):
            raise ValueError(f"{entry.path}: malformed digest")
    elif entry.sha256 is not None or entry.hmac_sha256 is not None:
        raise ValueError(f"{entry.path}: a {entry.type} has no content digest")
    if entry.sealed is not None:
        if entry.stored_in is not None:
            raise ValueError(f"{entry.path}: a record stored in an ancestor has no sealed members")
        _check_sealed(entry)
    if entry.type in ("symlink", "hardlink") and not entry.link:
        raise ValueError(f"{entry.path}: link without a target")
    _check_incremental_keys(entry)
    if entry.bundle is not None:
        # the first file of a bundle carries its member (``sealed``) at offset 0; the others
        # follow at their offsets, never 0 but in format 1 (after leading empty files)
        first = entry.sealed is not None
        if entry.type != "file" or not is_int(entry.bundle) or entry.size > BUNDLE_MAX \
                or entry.hmac_sha256 is None or entry.sqlite or entry.delta is not None \
                or entry.stored_in is not None or (first and entry.bundle != 0) \
                or (not first and entry.bundle == 0 and not version.zero_offset_continues):
            raise ValueError(f"{entry.path}: malformed bundle reference")


MIN_BLOCK, MAX_BLOCK = 4096, 1 << 24


def _check_incremental_keys(entry: IndexEntry) -> None:
    """The §12 keys: stat facts, ancestor references, database blocks and deltas."""
    for key, valid in (("ctime_ns", is_time), ("ino", is_inode)):
        value = getattr(entry, key)
        if value is not None and (entry.type != "file" or not valid(value)):
            raise ValueError(f"{entry.path}: {key} is malformed or on a non-file record")
    if entry.stored_in is None and entry.blocks is None and entry.delta is None:
        return          # a full archive's plain record
    if entry.stored_in is not None:
        if entry.type != "file" or entry.sqlite or entry.delta is not None \
                or not isinstance(entry.stored_in, str) or not ID_PATTERN.match(entry.stored_in):
            raise ValueError(f"{entry.path}: malformed stored_in reference")
    blocks = entry.blocks
    if blocks is not None:
        size = blocks.get("size") if isinstance(blocks, dict) else None
        if not entry.sqlite or set(blocks) != {"size", "digests"} or not is_int(size) \
                or not MIN_BLOCK <= size <= MAX_BLOCK or size & (size - 1) \
                or not isinstance(blocks["digests"], str) \
                or len(blocks["digests"]) != 4 * -(-block_count(entry) * BLOCK_DIGEST // 3) \
                or len(block_digests(entry)) != block_count(entry) * BLOCK_DIGEST:
            raise ValueError(f"{entry.path}: malformed block digests")
    if entry.delta is not None:
        if blocks is None or not isinstance(entry.delta, list):
            raise ValueError(f"{entry.path}: a delta needs the record's block digests")
        count = block_count(entry)
        previous = -1
        for number in entry.delta:
            if not is_int(number) or not previous < number < count:
                raise ValueError(f"{entry.path}: delta block numbers must rise within the file")
            previous = number
