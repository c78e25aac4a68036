"""The manifest (head document) and the entry index, and their validation.

The head manifest is small and bounded; the per-entry records live in the
index member at the end of the archive, bound to the manifest by its SHA-256
(spec/FORMAT.md §5).  Both are canonical JSON, so one byte encoding exists.
One record and its own rules are ``entry``; the index as a whole (order,
duplicates, paths below files, hard links) is checked here.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import fields
from datetime import datetime, timezone

from ..errors import CorruptArchive
from . import index_part, versions
from .fields import field_problem, sealable_problem
from .head import canonical_json, strict_loads
from .entry import CHUNK_SIZE, ID_PATTERN, SHA256_HEX, IndexEntry, check_entry, is_int
from .order import PathRules
from .records import MAX_INDEX_LINE, IndexRecords, bounded_lines, encode_entry, strict_record
from .spill import PathTable
from .summary import Tally

ARCHIVE_TYPES = ("manual", "scheduled", "pre-restore")
MAX_WARNINGS_IN_HEAD = 50
MAX_WARNING_CHARS = 240

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
DELTA_PREFIX = ".poppoarc/delta/"   # member name of a database's changed blocks (§12.4)
BUNDLE_CHUNK = 0xFFFFFFFF           # the chunk number a bundle object's key is bound to
SEALED_MANIFEST_KEYS = ("host", "root", "databases", "certificates", "warnings")
OPTIONAL_KEYS = {"areas"}          # custom targets' areas (§5.2), only when there are some
LAYOUT_KEYS = {"head_size", "body_offset", "index_offset", "index_length", "index_size",
               "index_sha256", "entries"}


def new_archive_id(now: datetime) -> str:
    """``backup-2025-06-19T12-00-00-000Z-abc123`` (UTC, milliseconds, 6 random chars)."""
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S-") + f"{now.microsecond // 1000:03d}Z"
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    return f"backup-{stamp}-{suffix}"


def iso_timestamp(now: datetime) -> str:
    """``2025-06-19T12:00:00.000Z``, as in the metadata.json of PoppoBuilder's documentation."""
    now = now.astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def timestamp_seconds(timestamp: str) -> int:
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def cap_warnings(warnings: list[str]) -> list[str]:
    return [w if len(w) <= MAX_WARNING_CHARS else w[:MAX_WARNING_CHARS - 1] + "…"
            for w in warnings[:MAX_WARNINGS_IN_HEAD]]


def validate_manifest(manifest: dict, path: object) -> None:
    """Reader rules for the head document (spec/FORMAT.md §5.3).

    Called only after the signature verified, so a failure here means a writer bug
    or a signed-but-malicious archive: either way, reject, as corrupt (§7.1: nothing
    was modified after signing, so it is not "tampered").
    """
    missing = REQUIRED_KEYS - manifest.keys()
    extra = manifest.keys() - REQUIRED_KEYS - OPTIONAL_KEYS
    if missing or extra:
        raise CorruptArchive(f"manifest keys wrong (missing {sorted(missing)}, unknown {sorted(extra)})",
                             path=path)
    version = versions.named(manifest["format"])
    if version is None:     # another string never gets here (§5.3)
        raise CorruptArchive(f"manifest format {manifest['format']!r} is malformed", path=path)
    if "areas" in manifest and not version.custom_targets:
        raise CorruptArchive(f"manifest key 'areas' is not one of format {version.name}",
                             path=path)
    match = ID_PATTERN.match(manifest["id"]) if isinstance(manifest["id"], str) else None
    if not match:
        raise CorruptArchive(f"manifest id {manifest['id']!r} is malformed", path=path)
    timestamp = manifest["timestamp"]
    if not isinstance(timestamp, str) \
            or "backup-" + timestamp.replace(":", "-").replace(".", "-") != "backup-" + match.group(1):
        raise CorruptArchive("manifest timestamp does not match the archive id", path=path)
    try:
        timestamp_seconds(timestamp)
    except ValueError:
        raise CorruptArchive(f"manifest timestamp {timestamp!r} is not a time", path=path) from None
    if not isinstance(manifest["type"], str) or manifest["type"] not in ARCHIVE_TYPES:
        raise CorruptArchive(f"unknown archive type {manifest['type']!r}", path=path)
    _check_parent(manifest, path)
    layout = manifest["layout"]
    if not isinstance(layout, dict) or set(layout) != LAYOUT_KEYS:
        raise CorruptArchive("manifest layout is malformed", path=path)
    for key in LAYOUT_KEYS - {"index_sha256"}:
        if not is_int(layout[key]):
            raise CorruptArchive(f"layout.{key} is not a non-negative integer", path=path)
    if not is_int(manifest["size"]) or not str(manifest["checksum"]).startswith("sha256:"):
        raise CorruptArchive("manifest size or checksum is malformed", path=path)
    end = layout["index_offset"] + layout["index_length"]
    if not layout["body_offset"] <= layout["index_offset"] < end == manifest["size"]:
        raise CorruptArchive("manifest layout offsets are inconsistent", path=path)
    encryption = manifest["encryption"]
    if encryption is not None:
        if not isinstance(encryption, dict) or set(encryption) != ENCRYPTION_KEYS:
            raise CorruptArchive("manifest encryption header is malformed", path=path)
        if encryption["scheme"] != ENCRYPTION_SCHEME or encryption["scope"] not in SCOPES \
                or encryption["chunk_size"] != CHUNK_SIZE:
            raise CorruptArchive("unsupported encryption scheme, scope or chunk size", path=path)
        # imported here: a pack's share helper (pack/share.py) needs no cryptography (memory)
        from ..crypto.recipients import check_stanzas
        check_stanzas(encryption["recipients"], path)
    problem = field_problem(manifest)
    if problem:     # signed, so not tampered with: a bad writer or a bad signer
        raise CorruptArchive(f"manifest {problem}", path=path)


PARENT_KEYS = {"id", "manifest_sha256", "depth"}
MAX_DEPTH_OF_CHAIN = 1000


def _check_parent(manifest: dict, path: object) -> None:
    """``incremental`` and ``parent`` agree, and the parent reference is well formed (§12.1)."""
    parent, incremental = manifest["parent"], manifest["incremental"]
    if not isinstance(incremental, bool) or incremental != (parent is not None):
        raise CorruptArchive("manifest incremental and parent disagree", path=path)
    if parent is None:
        return
    if not isinstance(parent, dict) or set(parent) != PARENT_KEYS \
            or not isinstance(parent["id"], str) or not ID_PATTERN.match(parent["id"]) \
            or parent["id"] == manifest["id"] \
            or not isinstance(parent["manifest_sha256"], str) \
            or not SHA256_HEX.match(parent["manifest_sha256"]) \
            or not is_int(parent["depth"]) or not 1 <= parent["depth"] <= MAX_DEPTH_OF_CHAIN \
            or manifest["type"] == "pre-restore":
        raise CorruptArchive("manifest parent reference is malformed", path=path)


# -- the index -------------------------------------------------------------

_ENTRY_REQUIRED = {"path", "target", "type", "mode", "uid", "gid", "mtime_ns", "size"}
_ENTRY_OPTIONAL = {"sha256", "link", "sqlite", "changed", "generated", "sealed", "hmac_sha256",
                   "ctime_ns", "ino", "stored_in", "blocks", "delta", "bundle"}
_FLAGS = frozenset({"sqlite", "changed", "generated"})   # written only as true (§5.4)
_FIELDS = tuple(field.name for field in fields(IndexEntry))   # in positional order


def write_index(out, archive_id: str, entries, sealed_manifest: dict | None = None,
                warnings: list[str] | None = None) -> None:
    """Write the index line by line (100,000 entries never sit in memory twice).

    ``entries`` is a list of records or a ``spool.IndexSpool`` (it has ``write_to``).
    ``warnings``: every warning of the run, for the header line of an archive not sealed
    whole (the head holds at most the first 50, cut; §5.4).
    """
    header = {"format": versions.CURRENT.index_format, "archive_id": archive_id,
              "entries": len(entries)}
    if sealed_manifest is not None:
        header["sealed_manifest"] = sealed_manifest
    if warnings:
        header["warnings"] = list(warnings)
    out.write(canonical_json(header) + b"\n")
    if hasattr(entries, "write_to"):
        entries.write_to(out)
        return
    for entry in entries:
        out.write(encode_entry(entry))


def decode_index(data, archive_id: str, path: object, sealed: bool = False,
                 incremental: bool = False, parallel=None, share: float | None = None,
                 visit=None, version: versions.FormatVersion = versions.CURRENT
                 ) -> tuple[IndexRecords, dict | None]:
    """Check the index; its bytes were already matched against the signed hash.

    ``data`` is the index's bytes or a binary file holding them (read from its
    start).  Returns the records and, for an encrypted archive, the manifest fields
    that were sealed into the index header.  ``parallel``: a ``Parallelism`` whose
    index helper checks the last ``share`` of a large index's lines (``index_part``;
    None: every line is read here).
    ``visit(position, record)`` is called for every record in path order once the
    record passed every rule of this module.  ``version``: the archive's format (§15).
    """
    if isinstance(data, (bytes, bytearray)):
        spool = tempfile.TemporaryFile()
        spool.write(data)
    else:
        spool = data
    spool.seek(0)
    try:
        line = spool.readline(MAX_INDEX_LINE + 1)
        if not line.endswith(b"\n"):
            raise CorruptArchive("index does not end with a newline", path=path)
        header = strict_loads(line[:-1])
        sealed_manifest = header.pop("sealed_manifest", None) if isinstance(header, dict) else None
        every_warning = header.pop("warnings", None) if isinstance(header, dict) else None
        if not isinstance(header, dict) or set(header) != {"format", "archive_id", "entries"} \
                or header["format"] != version.index_format or header["archive_id"] != archive_id \
                or (sealed_manifest is None) == sealed:
            raise ValueError("index header does not match the archive")
        if sealed:
            if not isinstance(sealed_manifest, dict) \
                    or set(sealed_manifest) != set(SEALED_MANIFEST_KEYS):
                raise ValueError("sealed manifest fields are malformed")
            problem = sealable_problem(sealed_manifest)
            if problem:
                raise ValueError(f"sealed manifest: {problem}")
        if every_warning is not None:       # all the run's warnings, the head's 50 and more
            if not version.index_warnings:
                raise ValueError(f"the index header lists warnings, which an index of {version.name} cannot")
            if sealed or not every_warning or not isinstance(every_warning, list) \
                    or not all(isinstance(w, str) for w in every_warning):
                raise ValueError("index header warnings are malformed")
            sealed_manifest = {"warnings": every_warning}
        records = IndexRecords(IndexEntry, _FIELDS)
        records.tally = Tally()         # what the manifest must say about the records (§5.2)
        rules = PathRules()
        helper = index_part.start(spool, incremental, version, parallel, share)
        try:
            hardlinks = decode_lines(index_part.lines_until(spool, helper), records, rules,
                                     incremental, path, version)
            part = helper.result() if helper is not None else None
            if part is not None:
                records.extend(part.records, part.count, part.sealed)
                records.tally.merge(part.tally)
                for call in part.rule_calls():
                    rules.add(*call)
                hardlinks = hardlinks or part.hardlinks
            elif helper is not None:    # it failed, or found a fault: the rest is read here
                hardlinks = decode_lines(bounded_lines(spool), records, rules, incremental,
                                         path, version) or hardlinks
        finally:
            if helper is not None:
                helper.close()
        records.close_writing()
        records.in_index_order = rules.in_index_order()
        if header["entries"] != len(records):
            raise ValueError("index header does not match the archive")
        # No path twice, none below a file or a link (writing it would follow the link),
        # shared parents above something, hard links to an earlier file: one pass in path
        # order, which ``visit`` (a reader's own rules: restore/safety.py) shares.
        with HardLinks(records if hardlinks else ()) as links:
            def each(position, record):
                links.visit(position, record)
                if visit is not None:
                    visit(position, record)
            rules.finish(records, each)
            links.finish()
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptArchive(f"index is malformed: {exc}", path=path) from None
    return records, sealed_manifest


def decode_lines(lines, records: IndexRecords, rules, incremental: bool,
                 path: object = None, version: versions.FormatVersion = versions.CURRENT) -> bool:
    """Check index lines one by one into ``records`` and ``rules`` (anything with
    ``PathRules.add``); whether any is a hard link.  Raises ValueError at the first fault."""
    hardlinks = False
    for line in lines:
        if not line.endswith(b"\n"):
            raise CorruptArchive("index does not end with a newline", path=path)
        record = strict_record(line[:-1])
        keys = set(record) if isinstance(record, dict) else set()
        if not _ENTRY_REQUIRED <= keys <= _ENTRY_REQUIRED | _ENTRY_OPTIONAL:
            raise ValueError(f"entry keys wrong: {sorted(keys)}")
        if not _FLAGS.isdisjoint(keys) and any(record[f] is not True for f in _FLAGS & keys):
            raise ValueError(f"{record['path']!r}: a flag other than true")     # §5.4
        entry = IndexEntry(**record)
        check_entry(entry, version)
        if not incremental and (entry.stored_in is not None or entry.delta is not None):
            raise ValueError(f"{entry.path!r}: ancestor reference in a full archive")
        rules.add(entry.target, entry.path, entry.type == "dir", entry.generated)
        hardlinks = hardlinks or entry.type == "hardlink"
        records.sealed += entry.needs_key()
        records.tally.add(entry)
        records.add(entry)
    return hardlinks


class HardLinks:
    """Each hard link names an earlier file of the same target and content.  The links
    are noted in index order (a pass, only when there are any), then each file met in
    the path-ordered pass settles the links that name it; memory bounded (``PathTable``)."""

    def __init__(self, records):
        self._wanted = PathTable()
        for position, entry in enumerate(records):
            if entry.type == "hardlink":
                self._wanted.add(entry.link, (position, entry.path, entry.target, entry.size,
                                              entry.sha256, entry.hmac_sha256))

    def visit(self, position: int, entry) -> None:
        if not self._wanted.count or entry.type != "file" or entry.path not in self._wanted:
            return
        for link_position, link, target, size, sha256, hmac_sha256 in self._wanted.pop(entry.path):
            if not (position < link_position and target == entry.target
                    and (size, sha256, hmac_sha256) == (entry.size, entry.sha256,
                                                        entry.hmac_sha256)):
                raise ValueError(f"{link!r}: hard link to {entry.path!r}, which is not an "
                                 "earlier file of the same target and content")

    def finish(self) -> None:
        left = self._wanted.any()
        if left is not None:
            raise ValueError(f"{left[1][1]!r}: hard link to {left[0]!r}, which is not an "
                             "earlier file of the same target and content")

    def __enter__(self) -> "HardLinks":
        return self

    def __exit__(self, *exc) -> None:
        self._wanted.close()
