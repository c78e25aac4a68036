"""Hand-made archives for hostile-input tests, signed with the test's local key.

They go through the real writer (BodyWriter, finish_archive), so they are
well-formed except for exactly what each test breaks.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

from poppoarc.crypto import signing
from poppoarc.format import tarheader
from poppoarc.format.entry import IndexEntry
from poppoarc.format.manifest import new_archive_id
from poppoarc.format.note import note_member
from poppoarc.format.reader import expected_header
from poppoarc.format.writer import BodyWriter, finish_archive

T = 1750334400 * 10**9


def entry(path, kind="file", data=b"", target="state", mode=None, link=None) -> tuple:
    mode = mode if mode is not None else {"dir": 0o755, "symlink": 0o777}.get(kind, 0o644)
    size = len(data) if kind in ("file", "hardlink") else 0
    digest = hashlib.sha256(data).hexdigest() if kind in ("file", "hardlink") else None
    return IndexEntry(path, target, kind, mode, os.getuid(), os.getgid(), T, size, digest, link), data


def target_counts(records) -> dict[str, dict]:
    """Per target, what a manifest says of the index (spec §5.2): records, files (and hard
    links), content bytes of files; the generated environment document is not a file."""
    counts: dict[str, dict] = {}
    for record in records:
        if record.target is None:
            continue
        facts = counts.setdefault(record.target, {"files": 0, "size": 0, "entries": 0})
        facts["entries"] += 1
        if record.type in ("file", "hardlink") and not record.generated:
            facts["files"] += 1
            facts["size"] += record.size if record.type == "file" else 0
    return counts


def craft(store: Path, key_dir: Path, members: list[tuple], *, extra_body: bytes = b"",
          header_hook=None, now: datetime | None = None, note: bytes | None = None,
          **manifest) -> Path:
    """An archive of ``members`` [(IndexEntry, data)], the manifest's targets and counts
    made to agree with them (a forger who holds the key makes them agree too).

    ``extra_body`` is fed after the members (smuggled bytes); ``header_hook``
    may replace a member's header bytes; ``now`` sets the creation time and
    ``manifest`` overrides manifest fields (type, incremental, parent, ...); ``note``
    replaces the member an incremental's body opens with (§12.8; ``b""``: none).
    """
    key, _ = signing.load_or_generate(key_dir)
    now = now or datetime.now(timezone.utc)
    archive_id = new_archive_id(now)
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{archive_id}.poppo.tar.zst"
    with open(path, "w+b") as handle:
        writer = BodyWriter(handle, 8192, threads=0)
        if note is None and manifest.get("incremental"):    # its body opens with it (§12.8)
            note = note_member(archive_id, {"depth": 1, **manifest["parent"]},
                               int(now.timestamp()))
        writer.add_member(note or b"")
        for record, data in members:
            header = _header(record)
            if header_hook:
                header = header_hook(record, header)
            writer._feed(header)
            if record.type == "file":
                writer._feed(data)
                writer._feed(bytes(tarheader.padding(len(data))))
        writer._feed(extra_body)
        offset, length = writer.end_frame()
        counts = target_counts(r for r, _ in members)
        fields = {"version": "1.0.0", "tool": {"name": "poppoarc", "version": "test"},
                  "type": "manual", "name": "crafted", "incremental": False, "parent": None,
                  "host": "test", "root": "/test", "encryption": None,
                  "databases": [{"path": r.path, "size": r.size, "sha256": r.sha256,
                                 "page_size": 4096, "user_version": 0, "tables": {},
                                 "check": "quick_check"} for r, _ in members if r.sqlite],
                  "certificates": [], "files": sum(c["files"] for c in counts.values()),
                  "duration": 0,
                  "targets": {name: {**facts, "stored": [offset, length]}
                              for name, facts in (counts or {"state": {
                                  "files": 0, "size": 0, "entries": 0}}).items()}}
        fields.update(manifest)
        finish_archive(handle, writer, archive_id=archive_id, now=now,
                       entries=[r for r, _ in members], fields=fields, warnings=[], key=key,
                       head_size=8192)
    return path


def _header(record: IndexEntry) -> bytes:
    return expected_header(record)
