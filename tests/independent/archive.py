"""One archive on its own: head and manifest (§3, §5.3, §6), index (§5.4), body (§4, §7)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import confinement, sealed
from .tar import (MAGIC, canonical, fail, fixed_header, frames, header, is_int, octal_field,
                  strict_json)

KEYS = {"format", "id", "timestamp", "version", "tool", "type", "name", "incremental", "parent",
        "host", "root", "targets", "databases", "certificates", "warnings", "warnings_total",
        "encryption", "compression", "layout", "checksum", "duration", "size", "files"}
LAYOUT = {"head_size", "body_offset", "index_offset", "index_length", "index_size",
          "index_sha256", "entries"}
ID = re.compile(r"backup-(\d{4}-\d\d-\d\dT\d\d)-(\d\d)-(\d\d)-(\d{3})Z-[a-z0-9]{6}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
TYPES = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
REQUIRED = {"path", "target", "type", "mode", "uid", "gid", "mtime_ns", "size"}
OPTIONAL = {"sha256", "sealed", "bundle", "hmac_sha256", "link", "sqlite", "changed",
            "generated", "ino", "ctime_ns", "blocks", "stored_in", "delta"}
SEALED_FIELDS = {"host", "root", "databases", "certificates", "warnings"}
INDEX_ENTRY = 2**64 - 1
# §15: the versions a reader of poppoarc/2 reads, and what differs between them
VERSIONS = {
    "poppoarc/1": {"index": "poppoarc-index/1", "note": False, "index_warnings": False,
                   "zero_offset_continues": True, "areas": False},
    "poppoarc/2": {"index": "poppoarc-index/2", "note": True, "index_warnings": True,
                   "zero_offset_continues": False, "areas": True},
}


@dataclass
class Archive:
    path: object
    data: bytes
    manifest: dict
    member: bytes                   # the manifest member, as signed
    seconds: int                    # the manifest time in whole seconds (§4.3)
    data_key: bytes | None = None
    records: list = field(default_factory=list)
    contents: dict = field(default_factory=dict)    # position -> bytes this body holds

    @property
    def version(self) -> dict:
        return VERSIONS[self.manifest["format"]]

    @property
    def scope(self) -> str | None:
        return self.manifest["encryption"]["scope"] if self.manifest["encryption"] else None


def read_head(data: bytes, path, pinned: list[bytes]) -> Archive:
    """§7 steps 1-4."""
    if len(data) < 13:
        fail("ForeignArchive" if data[:4] != MAGIC[:len(data[:4])] else "TruncatedArchive",
             "shorter than a head frame header")
    size = int.from_bytes(data[5:13], "little")
    if data[:4] != MAGIC or data[4] != 0xE0 or size % 512 or not 4096 <= size <= 1048576:
        fail("ForeignArchive", "no poppoarc head frame (§3.1)")
    blocks = -(-size // 131072)
    frame = data[:13 + size + 3 * blocks]
    if len(frame) < 13 + size + 3 * blocks:
        fail("TruncatedArchive", "the file ends inside the head frame")
    content, offset = bytearray(), 13
    for _ in range(blocks):
        block = int.from_bytes(frame[offset:offset + 3], "little")
        if (block >> 1) & 3:
            fail("ForeignArchive", "a head block that is not raw")
        content += frame[offset + 3:offset + 3 + (block >> 3)]
        offset += 3 + (block >> 3)
    content = bytes(content[:size]).ljust(size, b"\0")
    if not content.startswith(b".poppoarc/manifest.json\0"):
        fail("ForeignArchive", "the first member is not .poppoarc/manifest.json")
    member_size = size - 1536
    second = content[512 + member_size:1024 + member_size]
    signature_size = octal_field(second[124:136])
    if octal_field(content[124:136]) != member_size or not second.startswith(
            b".poppoarc/manifest.sig\0") or signature_size is None or signature_size > 512:
        fail("TamperedArchive", "the head's members are not where §3.2 puts them")
    member = content[512:512 + member_size]
    signature_json = content[1024 + member_size:1024 + member_size + signature_size]
    _format_first(member)
    manifest = _authenticate(member, signature_json, pinned)
    seconds = int(datetime.strptime(manifest["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
                  .replace(tzinfo=timezone.utc).timestamp())
    expected = (fixed_header(".poppoarc/manifest.json", 0o644, member_size, seconds) + member
                + fixed_header(".poppoarc/manifest.sig", 0o644, signature_size, seconds)
                + signature_json + bytes(512 - signature_size))
    encoded = MAGIC + b"\xe0" + size.to_bytes(8, "little") + b"".join(
        ((1 if n == blocks - 1 else 0) | len(expected[n * 131072:(n + 1) * 131072]) << 3)
        .to_bytes(3, "little") + expected[n * 131072:(n + 1) * 131072] for n in range(blocks))
    if encoded != frame or manifest["layout"]["body_offset"] != len(frame):
        fail("TamperedArchive", "the head differs from its re-encoding (§3.2)")
    if len(data) != manifest["size"]:
        fail("TruncatedArchive" if len(data) < manifest["size"] else "CorruptArchive",
             f"{len(data)} bytes, the manifest says {manifest['size']}")
    return Archive(path, data, manifest, member, seconds)


def _format_first(member: bytes) -> None:
    """§5.3: the format is read from any JSON before anything is verified."""
    try:
        top = json.loads(member.decode("utf-8"), object_pairs_hook=lambda pairs: ("obj", pairs))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    if isinstance(top, tuple):
        named = [value for key, value in top[1] if key == "format"]
        if len(named) == 1 and isinstance(named[0], str) and named[0] not in VERSIONS:
            fail("UnsupportedFormat", f"format {named[0]}")


def _authenticate(member: bytes, signature_json: bytes, pinned: list[bytes]) -> dict:
    """§6, then §3.2's padding and §5.3's rules."""
    document = strict_json(signature_json, "TamperedArchive", "the signature document")
    if not isinstance(document, dict) or set(document) != {
            "alg", "key_id", "public_key", "signature"} or document["alg"] != "ed25519":
        fail("TamperedArchive", "malformed signature document")
    try:
        public = base64.b64decode(document["public_key"], validate=True)
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, TypeError):
        fail("TamperedArchive", "signature document base64")
    if base64.b64encode(public).decode() != document["public_key"] or base64.b64encode(
            signature).decode() != document["signature"] or len(public) != 32 \
            or len(signature) != 64 or hashlib.sha256(public).hexdigest()[:16] != document["key_id"]:
        fail("TamperedArchive", "signature document: base64, lengths or key id")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            signature, b"poppoarc/1 manifest\x00" + member)
    except InvalidSignature:
        fail("TamperedArchive", "the signature does not verify")
    if public not in pinned:
        fail("UntrustedSigner", "signed by a key that is not pinned")
    body = member.rstrip(b" \n")
    if member[len(body):] != b" " * (len(member) - len(body) - 1) + b"\n":
        fail("CorruptArchive", "manifest padding")
    manifest = strict_json(body, "CorruptArchive", "the manifest")
    _manifest_rules(manifest)
    return manifest


def _manifest_rules(m) -> None:
    """§5.3 and §12.1."""
    bad = not isinstance(m, dict) or set(m) - {"areas"} != KEYS or m["format"] not in VERSIONS
    bad = bad or ("areas" in m and not VERSIONS[m["format"]]["areas"])     # §15.1
    bad = bad or not confinement.areas_well_formed(m)                          # §5.2
    match = None if bad else ID.match(str(m["id"]))
    bad = bad or not match or m["timestamp"] != "{}:{}:{}.{}Z".format(*match.groups()) \
        or m["type"] not in ("manual", "scheduled", "pre-restore")
    layout = None if bad else m["layout"]
    bad = bad or not isinstance(layout, dict) or set(layout) != LAYOUT or not all(
        is_int(layout[k]) for k in LAYOUT - {"index_sha256"}) or not is_int(m["size"])
    bad = bad or not layout["body_offset"] <= layout["index_offset"] < (
        layout["index_offset"] + layout["index_length"]) == m["size"]
    parent = None if bad else m["parent"]
    bad = bad or not isinstance(m["incremental"], bool) or m["incremental"] != (parent is not None)
    if not bad and parent is not None:
        bad = not isinstance(parent, dict) or set(parent) != {"id", "manifest_sha256", "depth"} \
            or not ID.match(str(parent["id"])) or parent["id"] == m["id"] \
            or not HEX64.match(str(parent["manifest_sha256"])) or not is_int(parent["depth"]) \
            or not 1 <= parent["depth"] <= 1000 or m["type"] == "pre-restore"
    if bad:
        fail("CorruptArchive", "the manifest breaks §5.3")
    if m["encryption"] is not None:
        sealed.check_header(m["encryption"])


# -- §5.4 the index --------------------------------------------------------------------

def read_index(archive: Archive) -> tuple[list, dict | None]:
    m, data = archive.manifest, archive.data
    layout = m["layout"]
    whole = archive.scope == "archive"
    stream = frames(data[layout["index_offset"]:m["size"]])
    name = ".poppoarc/index.enc" if whole else ".poppoarc/index.jsonl"
    size = layout["index_size"]
    if size > 1 << 30:
        fail("CorruptArchive", "index_size beyond 2^30 (§14)")
    if stream[:512] != fixed_header(name, 0o644, size, archive.seconds):
        fail("CorruptArchive", "the index member's header (§4.3)")
    index = stream[512:512 + size]
    if hashlib.sha256(index).hexdigest() != layout["index_sha256"] or \
            stream[512 + size:] != bytes(-size % 512 + 1024):
        fail("CorruptArchive", "the index does not match its hash, or the end of the archive")
    if whole:
        if archive.data_key is None:
            fail("NoKey", "the index is sealed and no key is held")
        index = sealed.open_object(archive.data_key, m["id"], INDEX_ENTRY, 0, index, 1 << 30)
    lines = index.split(b"\n")
    if lines.pop() != b"":
        fail("CorruptArchive", "the index does not end with a newline")
    if any(len(line) >= 4 << 20 for line in lines):
        fail("CorruptArchive", "an index line beyond 4 MiB (§14)")
    first = strict_json(lines[0], "CorruptArchive", "the index header")
    extra = first.pop("sealed_manifest", None) if isinstance(first, dict) else None
    every = first.pop("warnings", None) if isinstance(first, dict) else None
    if first != {"archive_id": m["id"], "entries": len(lines) - 1,
                 "format": archive.version["index"]} or (extra is None) == whole or len(lines) - 1 != \
            layout["entries"] or (whole and (not isinstance(extra, dict) or set(extra) != SEALED_FIELDS)):
        fail("CorruptArchive", "the index header line (§5.4)")
    if every is not None:       # §5.4: the run's warnings, at most warnings_total of them
        if whole or not archive.version["index_warnings"] or not isinstance(every, list) \
                or not every \
                or not all(isinstance(w, str) for w in every) or len(every) > m["warnings_total"]:
            fail("CorruptArchive", "the index header's warnings (§5.4)")
        extra = {"warnings": every}
    if whole and len(extra["warnings"]) > m["warnings_total"]:
        fail("CorruptArchive", "the sealed manifest's warnings (§5.4)")
    records = [strict_json(line, "CorruptArchive", "an index record") for line in lines[1:]]
    _check_records(records, m["incremental"])
    _check_counts({**m, **(extra or {})}, records)
    confinement.check(m, records)
    return records, extra


def _time_ok(value) -> bool:
    """§5.4: nanoseconds since the epoch, any time a signed 64-bit time_t holds."""
    return type(value) is int and -(2**63) * 10**9 <= value < 2**63 * 10**9


def _path_ok(path) -> bool:
    parts = path.split("/") if isinstance(path, str) else []
    return bool(parts) and "\0" not in path and len(path.encode()) <= 4096 and len(parts) <= 256 \
        and all(p not in ("", ".", "..") and len(p.encode()) <= 255 for p in parts)


def _check_records(records: list, incremental: bool) -> None:
    """§1, §5.4, §11.3-§11.4, §12.3-§12.4: each record alone, then paths and links."""
    seen, files = {}, {}
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("path"), str) and not _path_ok(r["path"]):
            fail("UnsafeArchiveEntry", f"{r['path']!r}: a path §1 rejects (§13 rule 1)")
        if not isinstance(r, dict) or not REQUIRED <= set(r) <= REQUIRED | OPTIONAL \
                or not _path_ok(r["path"]) or r["type"] not in TYPES \
                or not all(is_int(r[k]) for k in ("mode", "uid", "gid", "size")) \
                or not all(_time_ok(r[k]) for k in ("mtime_ns", "ctime_ns") if k in r) \
                or not (type(r.get("ino", 0)) is int and 0 <= r.get("ino", 0) < 2**64) \
                or r["mode"] > 0o7777 or not (r["target"] is None or isinstance(r["target"], str)) \
                or any(r.get(flag, True) is not True for flag in ("sqlite", "changed", "generated")) \
                or not isinstance(r.get("link", ""), str):
            fail("CorruptArchive", f"index record {str(r)[:80]} breaks §5.4")
        keyed = "sealed" in r or "hmac_sha256" in r
        digest = r.get("hmac_sha256" if keyed else "sha256")
        if r["type"] in ("file", "hardlink"):
            needed = keyed or r["size"] >= 65536 or r.get("sqlite")
            if (digest is None and needed) or (digest is not None and not HEX64.match(str(digest))):
                fail("CorruptArchive", f"{r['path']}: digest missing or malformed")
        elif "sha256" in r or "hmac_sha256" in r:
            fail("CorruptArchive", f"{r['path']}: a {r['type']} with a digest")
        if r["type"] in ("symlink", "hardlink") and not r.get("link"):
            fail("CorruptArchive", f"{r['path']}: a link without a target")
        if ("stored_in" in r or "delta" in r) and not incremental:
            fail("CorruptArchive", f"{r['path']}: an ancestor reference in a full archive")
        if "blocks" in r and not _blocks_ok(r):
            fail("CorruptArchive", f"{r['path']}: malformed block digests")
        if "stored_in" in r and (r["type"] != "file" or r.get("sqlite") or "delta" in r
                                 or "sealed" in r or not ID.match(str(r["stored_in"]))):
            fail("CorruptArchive", f"{r['path']}: malformed stored_in")
        if "delta" in r and ("blocks" not in r or not isinstance(r["delta"], list) or any(
                not is_int(n) for n in r["delta"]) or r["delta"] != sorted(set(r["delta"]))
                or (r["delta"] and r["delta"][-1] >= -(-r["size"] // r["blocks"]["size"]))):
            fail("CorruptArchive", f"{r['path']}: malformed delta")
        if r["path"] in seen:
            fail("CorruptArchive", f"{r['path']}: listed twice")
        seen[r["path"]] = r["type"]
        if r["target"] is None and r["type"] != "dir":
            fail("CorruptArchive", f"{r['path']}: a shared parent that is not a directory")
        if r["type"] == "file":
            files[r["path"]] = (r["target"], r["size"], r.get("sha256"), r.get("hmac_sha256"))
        elif r["type"] == "hardlink" and files.get(r["link"]) != (
                r["target"], r["size"], r.get("sha256"), r.get("hmac_sha256")):
            fail("CorruptArchive", f"{r['path']}: not a link to an earlier file of its content")
    targeted = set()
    for r in records:               # in any order: writing below a link would follow it
        parts = r["path"].split("/")
        above = ["/".join(parts[:n]) for n in range(1, len(parts))]
        if any(seen.get(p, "dir") != "dir" for p in above):
            fail("CorruptArchive", f"{r['path']}: below a record that is not a directory")
        if r["target"] is not None:
            targeted.update(above)
    for r in records:
        if r["target"] is None and r["path"] not in targeted:
            fail("CorruptArchive", f"{r['path']}: a shared parent of nothing")


def _blocks_ok(r) -> bool:
    blocks = r["blocks"]
    if not r.get("sqlite") or not isinstance(blocks, dict) or set(blocks) != {"size", "digests"}:
        return False
    size = blocks["size"]
    if not is_int(size) or not 4096 <= size <= 1 << 24 or size & (size - 1):
        return False
    try:
        digests = base64.b64decode(blocks["digests"], validate=True)
    except (ValueError, TypeError):
        return False
    return base64.b64encode(digests).decode() == blocks["digests"] and \
        len(digests) == 16 * -(-r["size"] // size)


def _check_counts(m: dict, records: list) -> None:
    """§5.2: targets, files and databases are what the index implies."""
    counts: dict = {}
    for r in records:
        if r["target"] is None:
            continue
        c = counts.setdefault(r["target"], {"entries": 0, "files": 0, "size": 0})
        c["entries"] += 1
        if not r.get("generated") and r["type"] in ("file", "hardlink"):
            c["files"] += 1
            c["size"] += r["size"] if r["type"] == "file" else 0
    stated = {t: {k: v for k, v in s.items() if k != "stored"} for t, s in m["targets"].items()} \
        if isinstance(m["targets"], dict) and all(isinstance(s, dict) for s in m["targets"].values()) else None
    databases = sorted((r["path"], r["size"], r.get("sha256")) for r in records if r.get("sqlite"))
    listed = sorted((d.get("path"), d.get("size"), d.get("sha256")) for d in m["databases"]) \
        if isinstance(m["databases"], list) and all(isinstance(d, dict) for d in m["databases"]) else None
    if stated is None or set(counts) - set(stated) or any(
            stated[t] != counts.get(t, {"entries": 0, "files": 0, "size": 0}) for t in stated) \
            or m["files"] != sum(c["files"] for c in counts.values()) or listed != databases:
        fail("CorruptArchive", "the manifest's counts or databases differ from the index (§5.2)")
