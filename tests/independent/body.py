"""The body of one archive (§4, §7 steps 8-9, §11.3-§11.5, §12.8): every member checked,
the content of every record with a member kept by its index position."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from . import sealed
from .archive import TYPES, Archive
from .tar import fail, fixed_header, frames, header

SPEC = Path(__file__).resolve().parents[2] / "spec" / "FORMAT.md"
BUNDLE_CHUNK = 0xFFFFFFFF


def note_bytes(manifest: dict, seconds: int) -> bytes:
    """§12.8, with the text taken from the spec itself."""
    template = re.search(r"<!-- incremental-note:begin -->\n```text\n(.*?)```\n",
                         SPEC.read_text(encoding="utf-8"), re.S).group(1)
    parent = manifest["parent"]
    text = template.replace("{id}", manifest["id"]).replace("{parent}", parent["id"]).replace(
        "{depth}", str(parent["depth"])).encode("utf-8")
    return fixed_header(".poppoarc/README", 0o644, len(text), seconds) + text + bytes(-len(text) % 512)


class _Body:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, size: int, what: str) -> bytes:
        piece = self.data[self.at:self.at + size]
        if len(piece) != size:
            fail("CorruptArchive", f"the body ends before {what}")
        self.at += size
        return piece

    def expect(self, expected: bytes, what: str) -> None:
        if self.take(len(expected), what) != expected:
            fail("CorruptArchive", f"{what} differs from what the index implies (§4.2)")

    def padding(self, size: int, what: str) -> None:
        if self.take(-size % 512, what) != bytes(-size % 512):
            fail("CorruptArchive", f"{what}: padding is not zero")


def payload_size(r: dict) -> int:
    if "delta" not in r:
        return r["size"]
    block = r["blocks"]["size"]
    return sum(min(block, r["size"] - n * block) for n in r["delta"])


def read_body(archive: Archive) -> None:
    """Fills ``archive.contents``; records whose content needs a key it lacks stay out."""
    m = archive.manifest
    layout = m["layout"]
    body = _Body(frames(archive.data[layout["body_offset"]:layout["index_offset"]]))
    if m["incremental"] and archive.version["note"]:     # §12.8, §15
        body.expect(note_bytes(m, archive.seconds), "the incremental note")
    whole = archive.scope == "archive"
    bundle = None
    for position, r in enumerate(archive.records):
        if "stored_in" in r or (whole and r["type"] != "file"):
            continue                                    # no member (§12.3, §11.4)
        first = "sealed" in r       # a bundle's first file names its member (§11.4)
        if bundle is not None and ("bundle" not in r or first or r["target"] != bundle[2]):
            _finish(bundle)
            bundle = None
        if "bundle" in r:
            if first:
                if r["bundle"] != 0 or len(r["sealed"]) != 1:
                    fail("CorruptArchive", f"{r['path']}: a bundle's first file is not at 0")
                plain = _sealed_member(archive, body, position, BUNDLE_CHUNK, r["sealed"][0],
                                       sealed.CHUNK)
                bundle = [plain, 0, r["target"]]
            elif r["bundle"] == 0 and not archive.version["zero_offset_continues"]:
                fail("CorruptArchive", f"{r['path']}: offset 0 without the bundle's member")
            elif bundle is None or r["bundle"] != bundle[1]:
                fail("CorruptArchive", f"{r['path']}: bundle offset is not the running sum")
            content = bundle[0][bundle[1]:bundle[1] + r["size"]]
            bundle[1] += r["size"]
            if len(content) != r["size"]:
                fail("CorruptArchive", f"{r['path']}: the bundle ends inside it")
            _keep(archive, position, r, content)
        elif "sealed" in r:
            size, chunks = payload_size(r), []
            for number, member in enumerate(r["sealed"]):
                limit = min(sealed.CHUNK, size - number * sealed.CHUNK) if size else 0
                chunk = _sealed_member(archive, body, position, number, member, limit)
                if chunk is not None and len(chunk) != limit:
                    fail("CorruptArchive", f"{r['path']}: chunk {number} has another length")
                chunks.append(chunk)
            if archive.data_key is not None:
                _keep(archive, position, r, b"".join(chunks))
        else:
            _plain_member(archive, body, position, r)
    if bundle is not None:
        _finish(bundle)
    if body.at != len(body.data):
        fail("CorruptArchive", "the body holds data after its last member")
    digest = hashlib.sha256(archive.data[layout["body_offset"]:m["size"]]).hexdigest()
    if m["checksum"] != "sha256:" + digest:
        fail("CorruptArchive", "the body checksum differs (§5.2)")


def _plain_member(archive: Archive, body: _Body, position: int, r: dict) -> None:
    size = payload_size(r) if r["type"] == "file" else 0
    name = {"dir": r["path"] + "/"}.get(r["type"], r["path"])
    if "delta" in r:
        name = ".poppoarc/delta/" + r["path"]
    body.expect(header(name, TYPES[r["type"]], r["mode"], r["uid"], r["gid"], size,
                       r["mtime_ns"] // 10**9, r.get("link", "")), f"the header of {r['path']}")
    if r["type"] != "file":
        return
    content = body.take(size, r["path"])
    body.padding(size, r["path"])
    if "delta" not in r and "sha256" in r and hashlib.sha256(content).hexdigest() != r["sha256"]:
        fail("CorruptArchive", f"{r['path']}: content does not match its SHA-256")
    _check_blocks(r, content)
    archive.contents[position] = content


def _sealed_member(archive: Archive, body: _Body, position: int, chunk: int, member: list,
                   limit: int) -> bytes | None:
    name, size = member
    body.expect(fixed_header(name, 0o600, size, archive.seconds), f"the header of {name}")
    data = body.take(size, name)
    body.padding(size, name)
    if archive.data_key is None:
        return None
    return sealed.open_object(archive.data_key, archive.manifest["id"], position, chunk, data, limit)


def _keep(archive: Archive, position: int, r: dict, content: bytes) -> None:
    if "delta" not in r and sealed.mac(archive.data_key, archive.manifest["id"], content) \
            != r["hmac_sha256"]:
        fail("CorruptArchive", f"{r['path']}: content does not match its HMAC")
    _check_blocks(r, content)
    archive.contents[position] = content


def _finish(bundle: list) -> None:
    if bundle[1] != len(bundle[0]):
        fail("CorruptArchive", "a bundle holds bytes no file claims")


def _check_blocks(r: dict, content: bytes) -> None:
    """§12.4: each stored block against its 16-byte digest."""
    if "blocks" not in r:
        return
    size, digests = r["blocks"]["size"], base64.b64decode(r["blocks"]["digests"])
    numbers = r["delta"] if "delta" in r else range(-(-r["size"] // size))
    at = 0
    for n in numbers:
        length = min(size, r["size"] - n * size)
        block, at = content[at:at + length], at + length
        if hashlib.sha256(block).digest()[:16] != digests[16 * n:16 * n + 16]:
            fail("CorruptArchive", f"{r['path']}: block {n} does not match its digest")
