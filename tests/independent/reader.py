"""Read an archive, and its chain (§12.5), into a tree; or reach one verdict of §7.1."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

from . import sealed
from .archive import Archive, read_head, read_index
from .body import read_body
from .tar import Verdict, fail


def read(path: Path, pinned: list[bytes], passphrase: bytes | None = None,
         identity=None) -> dict:
    """{path: ("dir", mode) | ("symlink", target) | ("hardlink", link) | ("file", mode,
    content)} of every record a restore writes; raises Verdict."""
    newest = read_head(path.read_bytes(), path, pinned)                          # steps 1-4
    keys = (passphrase, identity)
    if newest.manifest["encryption"]:                                            # step 5
        newest.data_key = sealed.unwrap(newest.manifest["encryption"], newest.manifest["id"], *keys)
    links = _chain_heads(newest, path.parent, pinned)                            # step 6
    newest.records, _ = read_index(newest)                                       # step 7
    for link in links:                                                           # step 11
        try:
            if link.manifest["encryption"]:
                link.data_key = sealed.unwrap(link.manifest["encryption"], link.manifest["id"], *keys)
            link.records, _ = read_index(link)
            read_body(link)
        except Verdict as verdict:
            if verdict.verdict in ("WrongKey", "NoKey"):
                raise
            fail("BrokenChain", f"ancestor {link.manifest['id']} is damaged: {verdict}")
    read_body(newest)                                                            # steps 8-9
    return _tree(newest, links)


def _chain_heads(newest: Archive, directory: Path, pinned: list[bytes]) -> list[Archive]:
    """§12.5 step 1: oldest first."""
    links, child, seen = [], newest.manifest, {newest.manifest["id"]}
    while child["parent"] is not None:
        reference = child["parent"]
        if reference["id"] in seen:
            fail("BrokenChain", f"the chain loops at {reference['id']}")
        seen.add(reference["id"])
        where = directory / f"{reference['id']}.poppo.tar.zst"
        if not where.is_file():
            fail("BrokenChain", f"parent {reference['id']} is missing")
        try:
            parent = read_head(where.read_bytes(), where, pinned)
        except Verdict as verdict:
            fail("BrokenChain", f"parent {reference['id']} fails: {verdict}")
        depth = parent.manifest["parent"]["depth"] if parent.manifest["parent"] else 0
        if hashlib.sha256(parent.member).hexdigest() != reference["manifest_sha256"] \
                or parent.manifest["id"] != reference["id"] or depth != reference["depth"] - 1:
            fail("BrokenChain", f"parent {reference['id']} is not the archive named")
        links.insert(0, parent)
        child = parent.manifest
    return links


def _tree(newest: Archive, links: list[Archive]) -> dict:
    tree = {}
    by_id = {link.manifest["id"]: link for link in links}
    for position, r in enumerate(newest.records):
        if r["target"] is None or r.get("generated"):
            continue                    # made as parents, and poppoarc's own document (§5.4)
        if r["type"] in ("symlink", "hardlink"):
            tree[r["path"]] = (r["type"], r["link"])
        elif r["type"] == "dir":
            tree[r["path"]] = ("dir", r["mode"])
        elif "stored_in" in r:
            tree[r["path"]] = ("file", r["mode"], _held(r, by_id))
        elif "delta" in r:
            tree[r["path"]] = ("file", r["mode"], _rebuilt(r, newest, links))
        elif position in newest.contents:
            tree[r["path"]] = ("file", r["mode"], newest.contents[position])
    for record in newest.records:       # §7 step 10, the restoring reader's check
        entry = tree.get(record["path"])
        if record.get("sqlite") and entry is not None:
            _database_check(record["path"], entry[2])
    return tree


def _held(r: dict, by_id: dict) -> bytes:
    """§12.3: the holder's record of the same path and target, with the same content facts."""
    holder = by_id.get(r["stored_in"])
    if holder is None:
        fail("CorruptArchive", f"{r['path']}: stored_in names no ancestor")
    for position, h in enumerate(holder.records):
        if h["path"] == r["path"] and h["target"] == r["target"] and h["type"] == "file" \
                and "stored_in" not in h and "delta" not in h and all(
                    h.get(k) == r.get(k) for k in ("size", "sha256", "hmac_sha256")):
            return holder.contents[position]
    fail("CorruptArchive", f"{r['path']}: {r['stored_in']} does not hold it")


def _rebuilt(r: dict, newest: Archive, links: list[Archive]) -> bytes:
    """§12.5 step 3: whole, then each link's blocks; a link without the path restarts."""
    current, previous = None, None
    for link in [*links, newest]:
        verdict = "CorruptArchive" if link is newest else "BrokenChain"
        found = [(p, x) for p, x in enumerate(link.records) if x["path"] == r["path"]]
        if not found:
            current = previous = None
            continue
        position, record = found[0]
        content = link.contents[position]
        if "delta" not in record:
            current = bytearray(content)
        else:
            size = record["blocks"]["size"]
            if previous is None or not previous.get("sqlite") or "blocks" not in previous \
                    or previous["blocks"]["size"] != size:
                fail(verdict, f"{r['path']}: a delta without a base in its parent link")
            before, after = (base64.b64decode(x["blocks"]["digests"]) for x in (previous, record))
            for n in range(len(after) // 16):
                if n not in record["delta"] and before[16 * n:16 * n + 16] != after[16 * n:16 * n + 16]:
                    fail(verdict, f"{r['path']}: block {n} neither stored nor the parent's")
            at = 0
            for n in record["delta"]:
                length = min(size, record["size"] - n * size)
                current[n * size:n * size + length] = content[at:at + length]
                at += length
            del current[record["size"]:]
        previous = record
    whole = bytes(current)
    if ("sha256" in r and hashlib.sha256(whole).hexdigest() != r["sha256"]) or (
            "hmac_sha256" in r and sealed.mac(newest.data_key, newest.manifest["id"], whole)
            != r["hmac_sha256"]) or len(whole) != r["size"]:
        fail("CorruptArchive", f"{r['path']}: the rebuilt database does not match its digest")
    return whole


def _database_check(path: str, content: bytes) -> None:
    if content[18:20] == b"\x02\x02":     # §4.3: a WAL-mode snapshot has nothing in a -wal;
        content = content[:18] + b"\x01\x01" + content[20:]   # checked as a rollback one
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(content)
        result = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        result = [(str(exc),)]
    finally:
        connection.close()
    if result != [("ok",)]:
        fail("CorruptArchive", f"{path}: the database fails its check")
