"""Rewrite an archive's body and re-sign it: an attacker who holds the signing key.

Used to show that encryption holds on its own: even with a valid signature
and checksum, moved, dropped or altered sealed members must be rejected by
the segment layer.
"""

from __future__ import annotations

from pathlib import Path

from poppoarc.crypto import signing
from poppoarc.format import head as headfmt
from poppoarc.format import tarheader
from poppoarc.format.reader import FrameStream, read_head
from poppoarc.format.writer import BodyWriter, signed_head
from poppoarc.format.manifest import timestamp_seconds



def members(path: Path) -> tuple[dict, list[list]]:
    """(manifest, [[name, header bytes, data]]) of every body member (no pax in sealed bodies)."""
    with open(path, "rb") as handle:
        raw = read_head(handle, path)
        layout = raw.manifest["layout"]
        stream = FrameStream(handle, layout["body_offset"], layout["index_offset"], path)
        found = []
        while True:
            header = stream.read(512)
            if not header:
                break
            name = header[:100].rstrip(b"\0").decode()
            size = tarheader.parse_size(header)
            data = stream.read(size)
            stream.read(tarheader.padding(size))
            found.append([name, header, data])
    return raw.manifest, found


def rebuild(path: Path, out: Path, key_dir: Path, transform, manifest_edit=None,
            extra: bytes = b"") -> Path:
    """Write ``out``: ``path`` with its member list transformed, re-signed with the local key;
    ``extra`` bytes follow the last member."""
    manifest, found = members(path)
    found = transform(found)
    data = path.read_bytes()
    layout = manifest["layout"]
    index_frame = data[layout["index_offset"]:]
    head_size = layout["head_size"]
    with open(out, "w+b") as handle:
        writer = BodyWriter(handle, head_size, level=1, threads=0)
        seconds = timestamp_seconds(manifest["timestamp"])
        for name, _, content in found:
            writer._feed(tarheader.member_header(name, tarheader.REGULAR, mode=0o600,
                                                 size=len(content), mtime=seconds))
            writer._feed(content)
            writer._feed(bytes(tarheader.padding(len(content))))
        if extra:
            writer._feed(extra)
        writer.end_frame()
        index_offset = writer.offset
        handle.write(index_frame)
        writer.body_hash.update(index_frame)
        manifest = dict(manifest, layout=dict(layout, index_offset=index_offset),
                        size=index_offset + len(index_frame),
                        checksum="sha256:" + writer.body_hash.hexdigest())
        if manifest_edit:
            manifest_edit(manifest)
        key = signing.load(key_dir)
        handle.seek(0)
        handle.write(signed_head(manifest, manifest["warnings"], head_size, key, seconds))
    assert headfmt.head_frame_size(head_size) == layout["body_offset"]
    return out


def reindex(path: Path, out: Path, key_dir: Path, edit) -> Path:
    """Write ``out``: ``path`` with its index records edited by ``edit(entries)``, re-signed.

    The body is kept byte for byte; the index frame, layout and checksum are
    rewritten, so only the reader's cross-checks can notice the lie.
    """
    import io

    from poppoarc.format.manifest import decode_index, write_index

    data = path.read_bytes()
    with open(path, "rb") as handle:
        raw = read_head(handle, path)
    manifest = raw.manifest
    layout = manifest["layout"]
    stream = FrameStream(io.BytesIO(data), layout["index_offset"], manifest["size"], path)
    stream.read(512)
    entries, _ = decode_index(stream.read(layout["index_size"]), manifest["id"], path,
                              incremental=manifest["incremental"])
    entries = edit(list(entries))
    manifest = recount(manifest, entries)
    spool = io.BytesIO()
    write_index(spool, manifest["id"], entries)
    index = spool.getvalue()
    body = data[layout["body_offset"]:layout["index_offset"]]
    head_size = layout["head_size"]
    seconds = timestamp_seconds(manifest["timestamp"])
    with open(out, "w+b") as handle:
        writer = BodyWriter(handle, head_size, level=1, threads=0)
        handle.write(body)
        writer.body_hash.update(body)
        writer.offset += len(body)
        writer._frame_start = writer.offset
        index_offset, index_length, index_sha256 = writer.add_index(io.BytesIO(index), len(index),
                                                                    seconds * 10**9)
        manifest = dict(manifest, layout=dict(layout, index_offset=index_offset,
                                              index_length=index_length, index_size=len(index),
                                              index_sha256=index_sha256, entries=len(entries)),
                        size=writer.offset, checksum="sha256:" + writer.body_hash.hexdigest())
        handle.seek(0)
        handle.write(signed_head(manifest, manifest["warnings"], head_size, signing.load(key_dir),
                                 seconds))
    return out


def recount(manifest: dict, entries) -> dict:
    """``manifest`` with the counts and database facts its index now implies (§5.2), as a
    writer that lies about the records would also write them."""
    from poppoarc.format.summary import Tally

    tally = Tally()
    for entry in entries:
        tally.add(entry)
    targets = {name: dict(stats, **dict(zip(("entries", "files", "size"),
                                            tally.targets.get(name, [0, 0, 0]))))
               for name, stats in manifest["targets"].items()}
    databases = [dict(d, size=tally.databases[d["path"]][0], sha256=tally.databases[d["path"]][1])
                 if d["path"] in tally.databases else d for d in manifest["databases"]]
    return dict(manifest, targets=targets, databases=databases,
                files=sum(stats["files"] for stats in targets.values()))
