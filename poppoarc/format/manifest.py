"""The manifest (head document) and the entry index, and their validation.

The head manifest is small and bounded; the per-entry records live in the
index member at the end of the archive, bound to the manifest by its SHA-256
(spec/FORMAT.md §5).  Both are canonical JSON, so one byte encoding exists.
"""

from __future__ import annotations

import base64
import re
import secrets
import tempfile
from dataclasses import dataclass, fields
from datetime import datetime, timezone

from ..errors import CorruptArchive, TamperedArchive
from ..crypto.recipients import check_stanzas
from .head import canonical_json, strict_loads
from .paths import path_problem
from .records import IndexRecords, encode_entry, strict_record

FORMAT = "poppoarc/1"
INDEX_FORMAT = "poppoarc-index/1"
ARCHIVE_TYPES = ("manual", "scheduled", "pre-restore")
ENTRY_TYPES = ("file", "dir", "symlink", "hardlink")
MAX_WARNINGS_IN_HEAD = 50
MAX_WARNING_CHARS = 240

ID_PATTERN = re.compile(r"backup-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z)-([a-z0-9]{6})\Z")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

REQUIRED_KEYS = {
    "format", "id", "timestamp", "version", "tool", "type", "name", "incremental",
    "parent", "host", "root", "targets", "databases", "certificates", "warnings",
    "warnings_total", "encryption", "compression", "layout", "checksum", "duration",
    "size", "files",
}
ENCRYPTION_KEYS = {"scheme", "scope", "chunk_size", "recipients"}
ENCRYPTION_SCHEME = "poppoarc-seg/1"
SCOPES = ("archive", "secrets")     # everything sealed, or only secret files
CHUNK_SIZE = 4 * 1024 * 1024        # plaintext bytes per sealed object
DELTA_PREFIX = ".poppoarc/delta/"   # member name of a database's changed blocks (§12.4)
BLOCK_SIZE = 4096                   # database block size writers use: a page (§12.4)
BLOCK_DIGEST = 16                   # bytes of SHA-256 kept per block
BUNDLE_MAX = 65536                  # sealed files up to this size share objects (§11.4)
BUNDLE_CHUNK = 0xFFFFFFFF           # the chunk number a bundle object's key is bound to
SEALED_MANIFEST_KEYS = ("host", "root", "databases", "certificates", "warnings")
LAYOUT_KEYS = {"head_size", "body_offset", "index_offset", "index_length", "index_size",
               "index_sha256", "entries"}


def new_archive_id(now: datetime) -> str:
    """``backup-2025-06-19T12-00-00-000Z-abc123`` (UTC, milliseconds, 6 random chars)."""
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S-") + f"{now.microsecond // 1000:03d}Z"
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    return f"backup-{stamp}-{suffix}"


def iso_timestamp(now: datetime) -> str:
    """``2025-06-19T12:00:00.000Z`` as in the seed's metadata.json."""
    now = now.astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def timestamp_seconds(timestamp: str) -> int:
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def cap_warnings(warnings: list[str]) -> list[str]:
    return [w if len(w) <= MAX_WARNING_CHARS else w[:MAX_WARNING_CHARS - 1] + "…"
            for w in warnings[:MAX_WARNINGS_IN_HEAD]]


def _is_int(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63     # not bool, nor an int subclass


def validate_manifest(manifest: dict, path: object) -> None:
    """Reader rules for the head document (spec/FORMAT.md §5.3).

    Called only after the signature verified, so a failure here means a
    writer bug or a signed-but-malicious archive: either way, reject.
    """
    missing = REQUIRED_KEYS - manifest.keys()
    extra = manifest.keys() - REQUIRED_KEYS
    if missing or extra:
        raise TamperedArchive(f"manifest keys wrong (missing {sorted(missing)}, unknown {sorted(extra)})",
                              path=path)
    match = ID_PATTERN.match(str(manifest["id"]))
    if not match:
        raise TamperedArchive(f"manifest id {manifest['id']!r} is malformed", path=path)
    timestamp = str(manifest["timestamp"])
    if "backup-" + timestamp.replace(":", "-").replace(".", "-") != "backup-" + match.group(1):
        raise TamperedArchive("manifest timestamp does not match the archive id", path=path)
    if manifest["type"] not in ARCHIVE_TYPES:
        raise TamperedArchive(f"unknown archive type {manifest['type']!r}", path=path)
    _check_parent(manifest, path)
    layout = manifest["layout"]
    if not isinstance(layout, dict) or set(layout) != LAYOUT_KEYS:
        raise TamperedArchive("manifest layout is malformed", path=path)
    for key in LAYOUT_KEYS - {"index_sha256"}:
        if not _is_int(layout[key]):
            raise TamperedArchive(f"layout.{key} is not a non-negative integer", path=path)
    if not _is_int(manifest["size"]) or not str(manifest["checksum"]).startswith("sha256:"):
        raise TamperedArchive("manifest size or checksum is malformed", path=path)
    end = layout["index_offset"] + layout["index_length"]
    if not layout["body_offset"] <= layout["index_offset"] < end == manifest["size"]:
        raise TamperedArchive("manifest layout offsets are inconsistent", path=path)
    encryption = manifest["encryption"]
    if encryption is not None:
        if not isinstance(encryption, dict) or set(encryption) != ENCRYPTION_KEYS:
            raise TamperedArchive("manifest encryption header is malformed", path=path)
        if encryption["scheme"] != ENCRYPTION_SCHEME or encryption["scope"] not in SCOPES \
                or encryption["chunk_size"] != CHUNK_SIZE:
            raise TamperedArchive("unsupported encryption scheme, scope or chunk size", path=path)
        check_stanzas(encryption["recipients"], path)


PARENT_KEYS = {"id", "manifest_sha256", "depth"}
MAX_DEPTH_OF_CHAIN = 1000


def _check_parent(manifest: dict, path: object) -> None:
    """``incremental`` and ``parent`` agree, and the parent reference is well formed (§12.1)."""
    parent, incremental = manifest["parent"], manifest["incremental"]
    if not isinstance(incremental, bool) or incremental != (parent is not None):
        raise TamperedArchive("manifest incremental and parent disagree", path=path)
    if parent is None:
        return
    if not isinstance(parent, dict) or set(parent) != PARENT_KEYS \
            or not isinstance(parent["id"], str) or not ID_PATTERN.match(parent["id"]) \
            or parent["id"] == manifest["id"] \
            or not isinstance(parent["manifest_sha256"], str) \
            or not _SHA256_HEX.match(parent["manifest_sha256"]) \
            or not _is_int(parent["depth"]) or not 1 <= parent["depth"] <= MAX_DEPTH_OF_CHAIN \
            or manifest["type"] == "pre-restore":
        raise TamperedArchive("manifest parent reference is malformed", path=path)


# -- the index -------------------------------------------------------------

# A plain file smaller than this needs no SHA-256 of its own (spec §5.4): the signed
# body checksum covers its bytes, and 100,000 small files' digests (3.8 MB compressed)
# would make their archive 20 % larger.  Larger files and every database keep theirs.
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


_ENTRY_REQUIRED = {"path", "target", "type", "mode", "uid", "gid", "mtime_ns", "size"}
_ENTRY_OPTIONAL = {"sha256", "link", "sqlite", "changed", "generated", "sealed", "hmac_sha256",
                   "ctime_ns", "ino", "stored_in", "blocks", "delta", "bundle"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_FIELDS = tuple(field.name for field in fields(IndexEntry))   # in positional order


def write_index(out, archive_id: str, entries, sealed_manifest: dict | None = None) -> None:
    """Write the index line by line (100,000 entries never sit in memory twice).

    ``entries`` is a list of records or a ``spool.IndexSpool`` (it has ``write_to``).
    """
    header = {"format": INDEX_FORMAT, "archive_id": archive_id, "entries": len(entries)}
    if sealed_manifest is not None:
        header["sealed_manifest"] = sealed_manifest
    out.write(canonical_json(header) + b"\n")
    if hasattr(entries, "write_to"):
        entries.write_to(out)
        return
    for entry in entries:
        out.write(encode_entry(entry))


def decode_index(data, archive_id: str, path: object, sealed: bool = False,
                 incremental: bool = False) -> tuple[IndexRecords, dict | None]:
    """Check the index; its bytes were already matched against the signed hash.

    ``data`` is the index's bytes or a binary file holding them (read from its
    start).  Returns the records and, for an encrypted archive, the manifest fields
    that were sealed into the index header.
    """
    if isinstance(data, (bytes, bytearray)):
        spool = tempfile.TemporaryFile()
        spool.write(data)
    else:
        spool = data
    spool.seek(0)
    try:
        line = spool.readline()
        if not line.endswith(b"\n"):
            raise CorruptArchive("index does not end with a newline", path=path)
        header = strict_loads(line[:-1])
        sealed_manifest = header.pop("sealed_manifest", None) if isinstance(header, dict) else None
        if not isinstance(header, dict) or set(header) != {"format", "archive_id", "entries"} \
                or header["format"] != INDEX_FORMAT or header["archive_id"] != archive_id \
                or (sealed_manifest is None) == sealed:
            raise ValueError("index header does not match the archive")
        if sealed and (not isinstance(sealed_manifest, dict)
                       or set(sealed_manifest) != set(SEALED_MANIFEST_KEYS)):
            raise ValueError("sealed manifest fields are malformed")
        records = IndexRecords(IndexEntry, _FIELDS)
        seen: set[str] = set()          # every path (duplicates)
        dirs: set[str] = set()
        parents: set[str] = set()       # every path some record lies below
        hardlinks = False
        for line in spool:
            if not line.endswith(b"\n"):
                raise CorruptArchive("index does not end with a newline", path=path)
            record = strict_record(line[:-1])
            keys = set(record) if isinstance(record, dict) else set()
            if not _ENTRY_REQUIRED <= keys <= _ENTRY_REQUIRED | _ENTRY_OPTIONAL:
                raise ValueError(f"entry keys wrong: {sorted(keys)}")
            entry = IndexEntry(**record)
            _check_entry(entry)
            if not incremental and (entry.stored_in is not None or entry.delta is not None):
                raise ValueError(f"{entry.path!r}: ancestor reference in a full archive")
            if entry.path in seen:
                raise ValueError(f"{entry.path!r}: listed twice")
            seen.add(entry.path)
            if entry.type == "dir":
                dirs.add(entry.path)
            hardlinks = hardlinks or entry.type == "hardlink"
            records.sealed += entry.needs_key()
            parent = entry.path.rpartition("/")[0]
            while parent and parent not in parents:
                parents.add(parent)
                parent = parent.rpartition("/")[0]
            records.add(entry)
        records.close_writing()
        if header["entries"] != len(records):
            raise ValueError("index header does not match the archive")
        # No path may lie below a file or a link: writing it would follow the link.
        below = sorted(p for p in parents if p in seen and p not in dirs)
        if below:
            raise ValueError(f"a path lies below {below[0]!r}, which is not a directory")
        del seen, dirs, parents
        if hardlinks:
            _check_hardlinks(records)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptArchive(f"index is malformed: {exc}", path=path) from None
    return records, sealed_manifest


def _check_hardlinks(records: IndexRecords) -> None:
    """Each hard link names an earlier file of the same content."""
    wanted = {entry.link for entry in records if entry.type == "hardlink"}
    files: dict[str, tuple] = {}
    for entry in records:
        if entry.type == "file" and entry.path in wanted:
            files[entry.path] = (entry.size, entry.sha256, entry.hmac_sha256)
        elif entry.type == "hardlink" and files.get(entry.link) != (
                entry.size, entry.sha256, entry.hmac_sha256):
            raise ValueError(f"{entry.path!r}: hard link to {entry.link!r}, "
                             "which is not an earlier file of the same content")


# a 4 MiB chunk whose zstd frame did not shrink, plus headers and tags
MAX_SEALED_MEMBER = CHUNK_SIZE + CHUNK_SIZE // 64 + 64 * 1024


def _check_sealed(entry: IndexEntry) -> None:
    chunks = max(1, -(-entry.payload_size() // CHUNK_SIZE))
    if entry.type != "file" or entry.sha256 is not None or not isinstance(entry.sealed, list) \
            or len(entry.sealed) != chunks:
        raise ValueError(f"{entry.path}: sealed member list does not fit its size")
    for member in entry.sealed:
        if not (isinstance(member, list) and len(member) == 2 and isinstance(member[0], str)
                and _is_int(member[1]) and path_problem(member[0]) is None
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


def _check_entry(entry: IndexEntry) -> None:
    problem = path_problem(entry.path)
    if problem:
        raise ValueError(f"{entry.path!r}: {problem}")
    if entry.type not in ENTRY_TYPES:
        raise ValueError(f"{entry.path}: unknown entry type {entry.type!r}")
    if not (_is_int(entry.mode) and _is_int(entry.uid) and _is_int(entry.gid)
            and _is_int(entry.mtime_ns) and _is_int(entry.size)):
        key = next(k for k in ("mode", "uid", "gid", "mtime_ns", "size")
                   if not _is_int(getattr(entry, k)))
        raise ValueError(f"{entry.path}: {key} is not a non-negative integer")
    if entry.mode > 0o7777:
        raise ValueError(f"{entry.path}: mode out of range")
    keyed = entry.sealed is not None or entry.hmac_sha256 is not None
    digest = entry.hmac_sha256 if keyed else entry.sha256
    if entry.type in ("file", "hardlink"):
        if digest is None:
            if keyed or needs_digest(entry.size, entry.sqlite):
                raise ValueError(f"{entry.path}: missing digest")
        elif not (isinstance(digest, str) and _SHA256_HEX.match(digest)):
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
        first = entry.bundle == 0
        if entry.type != "file" or not _is_int(entry.bundle) or entry.size > BUNDLE_MAX \
                or entry.hmac_sha256 is None or entry.sqlite or entry.delta is not None \
                or entry.stored_in is not None or (entry.sealed is not None) != first:
            raise ValueError(f"{entry.path}: malformed bundle reference")


MIN_BLOCK, MAX_BLOCK = 4096, 1 << 24


def _check_incremental_keys(entry: IndexEntry) -> None:
    """The §12 keys: stat facts, ancestor references, database blocks and deltas."""
    for key in ("ctime_ns", "ino"):
        value = getattr(entry, key)
        if value is not None and (entry.type != "file" or not _is_int(value)):
            raise ValueError(f"{entry.path}: {key} is malformed or on a non-file record")
    if entry.stored_in is not None:
        if entry.type != "file" or entry.sqlite or entry.delta is not None \
                or not isinstance(entry.stored_in, str) or not ID_PATTERN.match(entry.stored_in):
            raise ValueError(f"{entry.path}: malformed stored_in reference")
    blocks = entry.blocks
    if blocks is not None:
        size = blocks.get("size") if isinstance(blocks, dict) else None
        if not entry.sqlite or set(blocks) != {"size", "digests"} or not _is_int(size) \
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
            if not _is_int(number) or not previous < number < count:
                raise ValueError(f"{entry.path}: delta block numbers must rise within the file")
            previous = number
