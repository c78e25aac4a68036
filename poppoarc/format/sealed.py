"""Reading sealed members (spec/FORMAT.md §11.3, §11.4): chunked objects and bundles.

Called by ``reader.read_body`` for the records of an encrypted archive.  Without a
key the members are still framed, bounded and skipped; with one, every object is
opened, every file checked against its HMAC (a delta's blocks against their digests),
and only then is the plaintext handed to the sink.
"""

from __future__ import annotations

import hmac

from ..crypto import segments
from ..errors import CorruptArchive
from . import tarheader
from .blocks import BlockCheck, check_blocks
from .frames import FrameStream, expect
from .entry import CHUNK_SIZE, IndexEntry
from .manifest import BUNDLE_CHUNK


def _read_member(stream: FrameStream, entry: IndexEntry, name: str, size: int, seconds: int,
                 path: object) -> bytes:
    """One sealed member: its header as the index implies it, its bytes, zero padding."""
    header = tarheader.member_header(name, tarheader.REGULAR, mode=0o600, size=size, mtime=seconds)
    expect(stream, header, f"member {entry.path}", path)
    data = stream.read(size)
    if len(data) < size:
        raise CorruptArchive(f"the decompressed body ends inside member {entry.path}", path=path)
    if stream.read(tarheader.padding(size)) != bytes(tarheader.padding(size)):
        raise CorruptArchive(f"member {entry.path}: padding is not zero", path=path)
    return data


class Bundle:
    """A sealed bundle object (§11.4): small files' contents, back to back."""

    def __init__(self, plaintext: bytes | None):
        self.plaintext, self.cursor = plaintext, 0

    @classmethod
    def read(cls, stream: FrameStream, entry: IndexEntry, position: int, seconds: int,
             path: object, sealer) -> "Bundle":
        name, size = entry.sealed[0]
        data = _read_member(stream, entry, name, size, seconds, path)
        if sealer is None:
            return cls(None)
        try:
            return cls(sealer.open_chunk(position, BUNDLE_CHUNK, data, None, limit=CHUNK_SIZE))
        except segments.SegmentError as exc:
            raise CorruptArchive(f"member {entry.path}: {exc}", path=path) from None

    def take(self, entry: IndexEntry, sink, path: object, sealer) -> bool:
        """The next file's content, checked against its HMAC; False without a key."""
        start, self.cursor = self.cursor, self.cursor + entry.size
        if self.plaintext is None:
            return False
        content = self.plaintext[start:self.cursor]
        if len(content) != entry.size:
            raise CorruptArchive(f"member {entry.path}: bundle ends inside it", path=path)
        mac = sealer.new_mac()
        mac.update(content)
        if not hmac.compare_digest(mac.hexdigest(), entry.hmac_sha256):
            raise CorruptArchive(f"member {entry.path}: content does not match its HMAC", path=path)
        if content:
            sink.data(entry, content)
        return True

    def finish(self, path: object) -> None:
        if self.plaintext is not None and self.cursor != len(self.plaintext):
            raise CorruptArchive("a bundle holds bytes no file claims", path=path)


def read_sealed(stream: FrameStream, entry: IndexEntry, position: int, seconds: int,
                 path: object, sink, sealer, block_digests: bool = True) -> bool:
    """One sealed file's chunks; False when there is no key to open them.

    A delta record's payload is checked block by block; the HMAC covers the
    whole file, which only the chain reader reassembles.
    """
    mac = sealer.new_mac() if sealer else None
    blocks = BlockCheck.of(entry, block_digests) if mac is not None else None
    remaining = entry.payload_size()
    for number, (name, size) in enumerate(entry.sealed):
        data = _read_member(stream, entry, name, size, seconds, path)
        if mac is None:
            continue
        expected = min(CHUNK_SIZE, remaining)
        try:
            plaintext = sealer.open_chunk(position, number, data, expected)
        except segments.SegmentError as exc:
            raise CorruptArchive(f"member {entry.path}: {exc}", path=path) from None
        mac.update(plaintext)
        if blocks is not None:
            check_blocks(blocks.update, plaintext, entry, path)
        sink.data(entry, plaintext)
        remaining -= expected
    if blocks is not None:
        check_blocks(blocks.finish, None, entry, path)
    if mac is not None and entry.delta is None \
            and not hmac.compare_digest(mac.hexdigest(), entry.hmac_sha256):
        raise CorruptArchive(f"member {entry.path}: content does not match its HMAC", path=path)
    return mac is not None
