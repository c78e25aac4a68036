"""``list``: every archive of a store, newest first, from heads alone.

A head is bounded (spec/FORMAT.md §3.3), so listing reads little even from S3 (ranged
GETs, several at once).  It never fails because one archive is damaged: that row is
marked instead, and every command that lists (pack's parent search, prune, doctor) goes on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..crypto import signing
from ..errors import (ArchiveError, PoppoarcError, StoreError, UnsupportedFormat,
                      UntrustedSigner)
from ..format import reader
from ..format.entry import ID_PATTERN
from ..format.fields import MAX_TEXT, TIMESTAMP_PATTERN
from ..store import Store, StoredArchive, open_store

LIST_WORKERS = 8        # heads fetched at once from a remote store


@dataclass
class ListRow:
    id: str
    path: Path | str
    size: int
    timestamp: str | None = None
    type: str | None = None
    name: str | None = None
    incremental: bool = False
    parent: str | None = None     # id of the archive an incremental builds on
    signer: str | None = None
    status: str = "ok"    # ok | untrusted | damaged | newer (a later format) | unreadable (here)
    problem: str | None = None
    checksum: str | None = None   # the manifest's body checksum ("sha256:...")
    encrypted: bool = False
    protected: bool = False       # a protection mark beside it in the store
    encryption: str | None = None     # what is sealed: "archive" | "secrets" | None
    # whose key signed it: "local" (this machine's), "retired" (one keygen --rotate
    # replaced), "pinned" (backup.signing.trustedKeys); None: not a trusted key
    signer_key: str | None = None
    # the databases its manifest lists; None when sealed (or no head): for doctor only
    databases: list[str] | None = field(default=None, repr=False)
    # what is sealed ("archive", "secrets", None) and who opens it ("passphrase", the key
    # ids of x25519 recipients): for doctor only
    sealed: str | None = field(default=None, repr=False)
    openers: tuple[str, ...] = field(default=(), repr=False)
    # files per target its manifest counts (pack: a target emptied since); None: no head
    target_files: dict[str, int] | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"id": self.id, "path": str(self.path), "size": self.size,
                "timestamp": self.timestamp, "type": self.type, "name": self.name,
                "incremental": self.incremental, "parent": self.parent, "signer": self.signer,
                "status": self.status, "problem": self.problem, "checksum": self.checksum,
                "encrypted": self.encrypted, "encryption": self.encryption,
                "signer_key": self.signer_key, "protected": self.protected}


def list_archives(settings: Settings, store: Store | None = None) -> list[ListRow]:
    """Every archive in the store, newest first, from heads alone."""
    roles = signing.key_roles(settings.key_dir, settings.trusted_keys)
    pinned = {key: public for key, (public, _) in roles.items()}
    store = store or open_store(settings)
    archives = store.catalog()
    if store.local_dir is not None or len(archives) < 2:
        rows = [_list_row(store, a, pinned) for a in archives]
    else:   # remote: fetch heads concurrently, latency is the cost
        with ThreadPoolExecutor(max_workers=LIST_WORKERS, thread_name_prefix="list") as pool:
            rows = list(pool.map(lambda a: _list_row(store, a, pinned), archives))
    marks = store.protected()
    for row in rows:
        row.protected = row.id in marks
    rows.sort(key=lambda r: (r.timestamp or "", r.id), reverse=True)
    for row in rows:
        if row.signer is not None and row.status == "ok":
            row.signer_key = roles[row.signer][1]
    return rows


def _claimed(manifest: dict) -> dict:
    """What an unauthenticated head says about itself, for a row of ``list`` (an untrusted
    or damaged archive is still listed): only values of the right type and shape."""
    def text(key: str, pattern=None) -> str | None:
        value = manifest.get(key)
        if not isinstance(value, str) or len(value) > MAX_TEXT \
                or (pattern is not None and not pattern.match(value)):
            return None
        return value

    parent = manifest.get("parent")
    parent_id = parent.get("id") if isinstance(parent, dict) else None
    return {"timestamp": text("timestamp", TIMESTAMP_PATTERN), "type": text("type"),
            "name": text("name"),
            "incremental": manifest.get("incremental") is True,
            "parent": parent_id if isinstance(parent_id, str) and ID_PATTERN.match(parent_id)
            else None,
            "checksum": text("checksum"), "encrypted": manifest.get("encryption") is not None,
            "encryption": _scope(manifest),
            "databases": _claimed_databases(manifest), "target_files": _claimed_files(manifest),
            **_claimed_sealing(manifest)}


def _claimed_files(manifest: dict) -> dict[str, int] | None:
    targets = manifest.get("targets")
    if not isinstance(targets, dict):
        return None
    return {name: facts["files"] for name, facts in targets.items()
            if isinstance(name, str) and isinstance(facts, dict)
            and type(facts.get("files")) is int}


def _claimed_sealing(manifest: dict) -> dict:
    encryption = manifest.get("encryption")
    if not isinstance(encryption, dict) or encryption.get("scope") not in ("archive", "secrets"):
        return {}
    stanzas = encryption.get("recipients")
    openers = tuple(("passphrase" if s.get("type") == "argon2id" else str(s.get("key_id")))
                    for s in (stanzas if isinstance(stanzas, list) else ())
                    if isinstance(s, dict))
    return {"sealed": encryption["scope"], "openers": openers}


def _scope(manifest: dict) -> str | None:
    encryption = manifest.get("encryption")
    scope = encryption.get("scope") if isinstance(encryption, dict) else None
    return scope if scope in ("archive", "secrets") else None


def _claimed_databases(manifest: dict) -> list[str] | None:
    """The database paths a head lists (for doctor); None when it is sealed or has none."""
    targets, databases = manifest.get("targets"), manifest.get("databases")
    sealed = isinstance(manifest.get("encryption"), dict) \
        and manifest["encryption"].get("scope") == "archive"
    if not (isinstance(targets, dict) and "database" in targets and not sealed
            and isinstance(databases, list)):
        return None
    return [d["path"] for d in databases if isinstance(d, dict) and isinstance(d.get("path"), str)]


def _status(exc: BaseException) -> str:
    """The row status an error while reading a head stands for.  Only the archive's own
    bytes make it ``damaged``; what this user or this machine could not do (open it: EACCES,
    EMFILE; read it: EIO, a store that did not answer; the memory to hold it) makes it
    ``unreadable``, which no retention ever deletes: another user, or this one after the
    cause is gone, reads it.  A name that leads nowhere (a dangling symlink) is junk:
    damaged."""
    if isinstance(exc, UnsupportedFormat):      # a newer poppoarc's (spec §15): not ours
        return "newer"
    if isinstance(exc, UntrustedSigner):
        return "untrusted"
    if isinstance(exc, (OSError, StoreError, MemoryError)) \
            or getattr(exc, "unreadable", False):
        return "unreadable"
    return "damaged"


def _list_row(store: Store, archive: StoredArchive, pinned: dict[str, bytes]) -> ListRow:
    """One archive's row from its head alone.  Never raises: whatever a file in the store
    holds, it is a row marked damaged (or unreadable, when the fault is not the file's), and
    the listing (and every command that lists: pack's parent search, prune, doctor) goes on."""
    path = archive.where
    try:
        with store.open(archive) as source:
            raw = reader.read_head(source, path)
            manifest = raw.manifest
            row = ListRow(archive.id, path, source.size(), **_claimed(manifest))
            try:
                head = reader.authenticate(raw, pinned, path)
                row.signer = head.signer
                reader.check_length(source, manifest, path)
            except (ArchiveError, OSError, StoreError) as exc:
                row.status, row.problem = _status(exc), str(exc)
            if manifest.get("id") != archive.id and row.status == "ok":
                row.status, row.problem = "damaged", f"file name does not match archive id {manifest.get('id')}"
            return row
    except (PoppoarcError, OSError, MemoryError) as exc:
        return ListRow(archive.id, path, archive.size or 0, status=_status(exc),
                       problem=str(exc) if not isinstance(exc, MemoryError)
                       else f"{path}: cannot read head: out of memory")
    except Exception as exc:    # a bug met on a hostile file: named in the row, not fatal
        return ListRow(archive.id, path, archive.size or 0, status="damaged",
                       problem=f"{path}: cannot read head (internal error {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]})")
