"""Reading archives: the head, the index, and a verified walk of the body.

Nothing is trusted before the signature verifies against a pinned key; after
that, every other byte is checked against values the signed manifest binds:
the index by its SHA-256, each member's header by exact re-encoding, each
member's content by its SHA-256, and the compressed bytes by the body
checksum (spec/FORMAT.md §7).

Every function takes an ``ArchiveSource`` (``access.py``: a local file, or
ranged GETs on an S3 object) or an open binary file, which is wrapped as one.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass

from ..crypto import segments, signing
from ..errors import CorruptArchive, ForeignArchive, TamperedArchive, TruncatedArchive
from . import summary, tarheader, versions
from .access import as_source
from .blocks import BlockCheck, check_blocks
from .frames import READ_SIZE, FrameStream, expect
from .head import (
    ENCRYPTED_INDEX_NAME,
    FRAME_HEADER_SIZE,
    INDEX_NAME,
    RawHead,
    decode_head,
    encode_head,
    head_frame_size,
    read_head_size,
    signed_message,
)
from .entry import IndexEntry
from .manifest import DELTA_PREFIX, decode_index, timestamp_seconds, validate_manifest
from .note import note_member
from .records import IndexRecords
from .sealed import Bundle, read_sealed

MAX_INDEX_SIZE = 1 << 30


def read_head(handle, path: object) -> RawHead:
    """Read and structurally decode the head; reads at most ~1 MiB."""
    source = as_source(handle)
    prefix = source.read_at(0, FRAME_HEADER_SIZE)
    head_size = read_head_size(prefix, path)
    frame = prefix + source.read_at(FRAME_HEADER_SIZE, head_frame_size(head_size) - FRAME_HEADER_SIZE)
    return decode_head(frame, path)


@dataclass(frozen=True)
class TrustedHead:
    raw: RawHead
    signer: str

    @property
    def manifest(self) -> dict:
        return self.raw.manifest


def authenticate(raw: RawHead, pinned: dict[str, bytes], path: object) -> TrustedHead:
    """Signature by a pinned key, manifest rules, and byte-exact head framing."""
    signer = signing.verify_document(raw.signature, signed_message(raw.manifest_member),
                                     pinned, path)
    # signed, so the signer wrote it so: corrupt, not tampered (§7.1)
    if raw.problem is not None:
        raise CorruptArchive(raw.problem, path=path)
    validate_manifest(raw.manifest, path)
    expected = encode_head(raw.manifest_member, raw.signature_json, raw.head_size,
                           timestamp_seconds(raw.manifest["timestamp"]))
    if expected != raw.frame or raw.manifest["layout"]["body_offset"] != len(expected):
        raise TamperedArchive("head framing differs from what the manifest implies", path=path)
    return TrustedHead(raw, signer)


def check_length(handle, manifest: dict, path: object) -> None:
    actual = as_source(handle).size()
    if actual < manifest["size"]:
        raise TruncatedArchive(f"archive is {actual} bytes, its manifest says {manifest['size']}",
                               path=path)
    if actual > manifest["size"]:
        raise CorruptArchive(f"{actual - manifest['size']} unexpected bytes after the end of the archive",
                             path=path)


def expected_header(entry: IndexEntry) -> bytes:
    """The exact header bytes a writer produces for an index entry."""
    seconds = entry.mtime_ns // 10**9
    if entry.delta is not None:
        return tarheader.member_header(DELTA_PREFIX + entry.path, tarheader.REGULAR,
                                       mode=entry.mode, uid=entry.uid, gid=entry.gid,
                                       size=entry.payload_size(), mtime=seconds)
    if entry.type == "dir":
        return tarheader.member_header(entry.path + "/", tarheader.DIRECTORY, mode=entry.mode,
                                       uid=entry.uid, gid=entry.gid, mtime=seconds)
    if entry.type in ("symlink", "hardlink"):
        kind = tarheader.SYMLINK if entry.type == "symlink" else tarheader.HARDLINK
        return tarheader.member_header(entry.path, kind, mode=entry.mode, uid=entry.uid,
                                       gid=entry.gid, mtime=seconds, linkname=entry.link)
    return tarheader.member_header(entry.path, tarheader.REGULAR, mode=entry.mode, uid=entry.uid,
                                   gid=entry.gid, size=entry.size, mtime=seconds)


def scope(manifest: dict) -> str | None:
    """None (plain), "secrets" (only secret files sealed) or "archive" (all sealed)."""
    return manifest["encryption"]["scope"] if manifest["encryption"] else None


@dataclass
class Index:
    # iterable (any number of times) and sized; None: sealed and no key to open it
    entries: IndexRecords | None
    sealed_manifest: dict | None = None


def read_index(handle, head: TrustedHead, path: object, sealer=None,
               parallel=None, share: float | None = None, visit=None) -> Index:
    """The entry index, checked against the signed hash and size (and opened if sealed);
    ``parallel``, ``share`` and ``visit`` (a reader's own rules for every record:
    restore/safety.py) as for ``decode_index``."""
    manifest = head.manifest
    sealed = scope(manifest) == "archive"
    data = stored_index(handle, head, path)
    size = manifest["layout"]["index_size"]
    if sealed:
        if sealer is None:
            data.close()
            return Index(None)
        data.seek(0)
        sealed_file, data = data, tempfile.TemporaryFile()
        try:    # decrypted and inflated as it streams; at most MAX_INDEX_SIZE bytes (§11.4)
            sealer.open_to_file(segments.INDEX_ENTRY, 0, sealed_file.read, size, data,
                                MAX_INDEX_SIZE)
        except segments.SegmentError as exc:
            raise CorruptArchive(f"encrypted index: {exc}", path=path) from None
        finally:
            sealed_file.close()
    entries, sealed_manifest = decode_index(data, manifest["id"], path, sealed=sealed,
                                            incremental=manifest["incremental"],
                                            parallel=parallel, share=share, visit=visit,
                                            version=versions.of(manifest))
    if len(entries) != manifest["layout"]["entries"]:
        raise CorruptArchive("index entry count differs from the manifest", path=path)
    if sealed_manifest is not None and \
            len(sealed_manifest["warnings"]) > manifest["warnings_total"]:
        raise CorruptArchive("the index header lists more warnings than the manifest counts",
                             path=path)
    summary.check({**manifest, **(sealed_manifest or {})}, entries.tally, path)
    return Index(entries, sealed_manifest)


def stored_index(handle, head: TrustedHead, path: object):
    """The index member's bytes as stored (sealed or not), in a temporary file, checked
    against the signed size and SHA-256 and followed by the end-of-archive blocks: what
    an incremental's pack checks of a parent whose facts it takes from its cache."""
    manifest = head.manifest
    layout = manifest["layout"]
    if layout["index_size"] > MAX_INDEX_SIZE:
        raise CorruptArchive("index is unreasonably large", path=path)
    sealed = scope(manifest) == "archive"
    stream = FrameStream(handle, layout["index_offset"], manifest["size"], path)
    header = tarheader.member_header(ENCRYPTED_INDEX_NAME if sealed else INDEX_NAME,
                                     tarheader.REGULAR, mode=0o644, size=layout["index_size"],
                                     mtime=timestamp_seconds(manifest["timestamp"]))
    expect(stream, header, "index member", path)
    # into a temporary file, not memory: the index of 100,000 files is ~25 MB
    data, digest, size = tempfile.TemporaryFile(), hashlib.sha256(), 0
    while size < layout["index_size"]:
        chunk = stream.read(min(READ_SIZE, layout["index_size"] - size))
        if not chunk:
            break
        digest.update(chunk)
        data.write(chunk)
        size += len(chunk)
    if digest.hexdigest() != layout["index_sha256"]:
        raise CorruptArchive("index does not match its signed SHA-256", path=path)
    trailer = stream.read(tarheader.padding(size) + len(tarheader.END_OF_ARCHIVE))
    if trailer != bytes(tarheader.padding(size) + len(tarheader.END_OF_ARCHIVE)) or not stream.at_end():
        raise CorruptArchive("archive does not end with the index and end-of-archive blocks",
                             path=path)
    return data


class MemberSink:
    """Receives member content; restore stages it, verify discards it.  The archive is
    only known good when ``read_body`` returns (see there)."""

    def begin(self, entry: IndexEntry) -> None: ...
    def data(self, entry: IndexEntry, chunk: bytes) -> None: ...
    def end(self, entry: IndexEntry) -> None: ...


def read_body(handle, head: TrustedHead, entries: list[IndexEntry], path: object,
              sink: MemberSink, progress=None, sealer=None, block_digests: bool = True) -> int:
    """Walk every member in index order, checking header, size and digest.

    ``sink.end`` is called for a member only after its content verified against its
    own digest; a small file without one (§5.4) is covered by the body checksum over
    all compressed bytes, checked at the end: nothing a sink received may be used
    before this function returned.
    Returns how many sealed files could not be checked for lack of a key.
    ``block_digests=False`` (a restore) skips the page digests of whole databases,
    which their SHA-256 already covers (spec §12.4); a delta's are always checked.
    """
    source = as_source(handle)
    manifest = head.manifest
    layout = manifest["layout"]
    body_hash = hashlib.sha256()
    # decompressed on a thread of its own while this one hashes and hands content on
    with FrameStream(source, layout["body_offset"], layout["index_offset"], path, body_hash,
                     ahead=True) as stream:
        if manifest["incremental"] and versions.of(manifest).incremental_note:   # §12.8
            expect(stream, note_member(manifest["id"], manifest["parent"],
                                       timestamp_seconds(manifest["timestamp"])),
                   "the incremental's note (.poppoarc/README)", path)
        members = _Members(stream, manifest, path, sink, sealer, block_digests, progress)
        for position, entry in enumerate(entries):
            members.read(position, entry)
        members.finish()
        if not stream.at_end():
            raise CorruptArchive("body holds data after the last indexed member", path=path)
    _check_body_checksum(handle, manifest, body_hash, path)
    return members.unchecked


def has_own_digest(entry: IndexEntry) -> bool:
    """Whether a ``file`` record's member is proved by something of its own (its SHA-256,
    its sealed chunks and HMAC, a delta's block digests), so that it may be read apart from
    the rest of the body (``read_member``); a small plain file is proved only by the body
    checksum (§5.4)."""
    if entry.type != "file" or entry.stored_in is not None:
        return False
    if entry.delta is not None:
        return entry.blocks is not None
    return entry.sha256 is not None or entry.hmac_sha256 is not None


def read_member(handle, head: TrustedHead, entries, path: object, wanted: IndexEntry,
                sink: MemberSink, sealer=None) -> bool:
    """One file's member, read from its target's frame group alone (the manifest's
    ``targets.<name>.stored``, §4.1) up to the member's end: the members before it in that
    group are decoded and checked as ``read_body`` checks them, nothing after it is read.

    Only for a record with its own digest (``has_own_digest``): the body checksum, which
    proves everything else, needs every byte of the body.  ``sink`` gets every member of
    the group up to ``wanted`` (``end`` once each verified).  Returns False when ``wanted``
    is sealed and there is no key.  A ``stored`` range that does not hold the target's
    members raises CorruptArchive, as a damaged body does: a caller may read the whole
    body for the verdict (``read_body``).
    """
    if not has_own_digest(wanted):
        raise ValueError(f"{wanted.path}: no digest of its own to read it apart")
    manifest = head.manifest
    start, length = _stored_range(manifest, wanted.target, path)
    with FrameStream(as_source(handle), start, start + length, path) as stream:
        members = _Members(stream, manifest, path, sink, sealer, True, None)
        for position, entry in enumerate(entries):
            if entry.target != wanted.target:
                continue
            members.read(position, entry)
            if entry.path == wanted.path:
                return members.unchecked == 0
    raise CorruptArchive(f"{wanted.path}: not a record of target {wanted.target}", path=path)


def _stored_range(manifest: dict, target: str, path: object) -> tuple[int, int]:
    """A target's frame group (offset, length), which must lie within the body."""
    layout = manifest["layout"]
    stored = manifest["targets"].get(target, {}).get("stored")
    if not (isinstance(stored, list) and len(stored) == 2
            and all(type(n) is int for n in stored)
            and layout["body_offset"] <= stored[0] <= stored[0] + stored[1]
            <= layout["index_offset"]):
        raise CorruptArchive(f"target {target}: its frame group is not within the body",
                             path=path)
    return stored[0], stored[1]


class _Members:
    """Reads members from a frame stream, one index record at a time, in body order:
    the checks ``read_body`` and ``read_member`` share."""

    def __init__(self, stream: FrameStream, manifest: dict, path: object, sink: MemberSink,
                 sealer, block_digests: bool, progress):
        self.stream, self.path, self.sink, self.sealer = stream, path, sink, sealer
        self.block_digests, self.progress = block_digests, progress
        self.all_sealed = scope(manifest) == "archive"
        self.seconds = timestamp_seconds(manifest["timestamp"])
        self.bundle: Bundle | None = None
        self.done = self.unchecked = 0

    def read(self, position: int, entry: IndexEntry) -> None:
        stream, path, sink = self.stream, self.path, self.sink
        if entry.stored_in is not None:
            return          # the content is in an ancestor's body (§12.3): no member here
        if self.all_sealed and entry.type != "file":
            sink.begin(entry)       # metadata only: no tar member names it
            sink.end(entry)
            return
        if self.bundle is not None and (entry.bundle is None or entry.sealed is not None):
            self.bundle.finish(path)    # a file with a member of its own ends the bundle
            self.bundle = None
        if entry.bundle is not None:
            self._bundled(position, entry)
            return
        if entry.sealed is not None:
            sink.begin(entry)
            ok = read_sealed(stream, entry, position, self.seconds, path, sink, self.sealer,
                             self.block_digests)
            self.unchecked += not ok
            self._advance(entry.payload_size(), entry)
            if ok:
                sink.end(entry)
            return
        expect(stream, expected_header(entry), f"member {entry.path}", path)
        sink.begin(entry)
        if entry.type == "file":
            self._content(entry)
        sink.end(entry)

    def _bundled(self, position: int, entry: IndexEntry) -> None:
        if entry.sealed is not None:    # its first file (§11.4, check_entry)
            self.bundle = Bundle.read(self.stream, entry, position, self.seconds, self.path,
                                      self.sealer)
        elif self.bundle is None or entry.bundle != self.bundle.cursor:
            raise CorruptArchive(f"member {entry.path}: its bundle offset does not follow "
                                 "the file before it", path=self.path)
        self.sink.begin(entry)
        ok = self.bundle.take(entry, self.sink, self.path, self.sealer)
        self.unchecked += not ok
        self._advance(entry.size, entry)
        if ok:
            self.sink.end(entry)

    def _content(self, entry: IndexEntry) -> None:
        stream, path = self.stream, self.path
        payload = entry.payload_size()
        # a small file has no digest of its own: the body checksum covers it (§7)
        digest = hashlib.sha256() if entry.sha256 is not None and entry.delta is None \
            else None
        blocks = BlockCheck.of(entry, self.block_digests)
        remaining = payload
        while remaining:
            chunk = stream.read_some(min(remaining, READ_SIZE))
            if not chunk:
                raise CorruptArchive(f"the decompressed body ends inside member "
                                     f"{entry.path}", path=path)
            if digest is not None:
                digest.update(chunk)
            if blocks is not None:
                check_blocks(blocks.update, chunk, entry, path)
            self.sink.data(entry, chunk)
            remaining -= len(chunk)
            self._advance(len(chunk), entry)
        pad = stream.read(tarheader.padding(payload))
        if pad != bytes(tarheader.padding(payload)):
            raise CorruptArchive(f"member {entry.path}: padding is not zero", path=path)
        if blocks is not None:
            check_blocks(blocks.finish, None, entry, path)
        if digest is not None and digest.hexdigest() != entry.sha256:
            raise CorruptArchive(f"member {entry.path}: content does not match its SHA-256",
                                 path=path)

    def _advance(self, size: int, entry: IndexEntry) -> None:
        self.done += size
        if self.progress:
            self.progress(self.done, entry.path)

    def finish(self) -> None:
        if self.bundle is not None:
            self.bundle.finish(self.path)


def _check_body_checksum(handle, manifest: dict, body_hash, path: object) -> None:
    """Add the index frame's bytes, then compare with the signed checksum."""
    source = as_source(handle)
    position = manifest["layout"]["index_offset"]
    while position < manifest["size"]:
        chunk = source.read_at(position, min(READ_SIZE, manifest["size"] - position))
        if not chunk:
            raise TruncatedArchive("archive ends early", path=path)
        body_hash.update(chunk)
        position += len(chunk)
    if "sha256:" + body_hash.hexdigest() != manifest["checksum"]:
        raise CorruptArchive("archive body checksum does not match the manifest", path=path)


def check_body_without_key(handle, head: TrustedHead, path: object, progress=None) -> None:
    """For a sealed archive and no key: decode every frame and check the checksum."""
    manifest = head.manifest
    layout = manifest["layout"]
    body_hash = hashlib.sha256()
    stream = FrameStream(handle, layout["body_offset"], layout["index_offset"], path, body_hash)
    total = 0
    while True:
        chunk = stream.read_some(READ_SIZE)
        if not chunk:
            break
        total += len(chunk)
        if progress:
            progress(stream.position - layout["body_offset"], "")
    if total % tarheader.BLOCK:
        raise CorruptArchive("body is not a whole number of tar blocks", path=path)
    _check_body_checksum(handle, manifest, body_hash, path)


def open_trusted(handle, pinned: dict[str, bytes], path: object) -> TrustedHead:
    """Head, signature and length checks in the order a reader must do them."""
    source = as_source(handle)
    raw = read_head(source, path)
    head = authenticate(raw, pinned, path)
    check_length(source, head.manifest, path)
    return head


def probe(handle, path: object) -> RawHead:
    """The head without trust, for listing; raises for non-poppoarc files."""
    try:
        return read_head(handle, path)
    except (OSError, ValueError) as exc:
        raise ForeignArchive(f"cannot read head: {exc}", path=path) from None
