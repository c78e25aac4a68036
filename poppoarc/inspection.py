"""Read-only commands: list, inspect, verify.

``list`` reads only each archive's head (bounded, spec/FORMAT.md §3.3) and
never fails because one archive is damaged: it marks that row instead.
``verify`` checks every byte; ``inspect`` shows the signed manifest.  All of
them work on any store (``poppoarc.store``): a local directory, or S3 through
ranged GETs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings
from .crypto import recipients, signing
from .crypto.sealer import Sealer
from .errors import (ArchiveError, CorruptArchive, PoppoarcError, UnsupportedFormat,
                     UntrustedSigner, Warnings)
from .format import reader
from .format.entry import ID_PATTERN, IndexEntry
from .format.fields import MAX_TEXT, TIMESTAMP_PATTERN
from .restore import chain
from .restore.safety import Confinement
from .snapshot.sqlite import BackgroundChecks
from .store import Store, StoredArchive, leftovers, open_store, verified
from .store import locate as locate_in_store
from .streamed import StreamedArray

LIST_WORKERS = 8        # heads fetched at once from a remote store


def pinned_keys(settings: Settings) -> dict[str, bytes]:
    return signing.trusted_keys(settings.key_dir, settings.trusted_keys)


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
    status: str = "ok"            # ok | untrusted | damaged | newer (a format to read later)
    problem: str | None = None
    checksum: str | None = None   # the manifest's body checksum ("sha256:...")
    encrypted: bool = False
    # the databases its manifest lists; None when sealed (or no head): for doctor only
    databases: list[str] | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"id": self.id, "path": str(self.path), "size": self.size,
                "timestamp": self.timestamp, "type": self.type, "name": self.name,
                "incremental": self.incremental, "parent": self.parent, "signer": self.signer,
                "status": self.status, "problem": self.problem, "checksum": self.checksum,
                "encrypted": self.encrypted}


def list_archives(settings: Settings, store: Store | None = None) -> list[ListRow]:
    """Every archive in the store, newest first, from heads alone."""
    pinned = pinned_keys(settings)
    store = store or open_store(settings)
    archives = store.catalog()
    if store.local_dir is not None or len(archives) < 2:
        rows = [_list_row(store, a, pinned) for a in archives]
    else:   # remote: fetch heads concurrently, latency is the cost
        with ThreadPoolExecutor(max_workers=LIST_WORKERS, thread_name_prefix="list") as pool:
            rows = list(pool.map(lambda a: _list_row(store, a, pinned), archives))
    rows.sort(key=lambda r: (r.timestamp or "", r.id), reverse=True)
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
            "databases": _claimed_databases(manifest)}


def _claimed_databases(manifest: dict) -> list[str] | None:
    """The database paths a head lists (for doctor); None when it is sealed or has none."""
    targets, databases = manifest.get("targets"), manifest.get("databases")
    sealed = isinstance(manifest.get("encryption"), dict) \
        and manifest["encryption"].get("scope") == "archive"
    if not (isinstance(targets, dict) and "database" in targets and not sealed
            and isinstance(databases, list)):
        return None
    return [d["path"] for d in databases if isinstance(d, dict) and isinstance(d.get("path"), str)]


def _list_row(store: Store, archive: StoredArchive, pinned: dict[str, bytes]) -> ListRow:
    """One archive's row from its head alone.  Never raises: whatever a file in the store
    holds, it is a row marked damaged, and the listing (and every command that lists:
    pack's parent search, prune, doctor) goes on."""
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
            except ArchiveError as exc:
                row.status = "untrusted" if isinstance(exc, UntrustedSigner) else "damaged"
                row.problem = str(exc)
            if manifest.get("id") != archive.id and row.status == "ok":
                row.status, row.problem = "damaged", f"file name does not match archive id {manifest.get('id')}"
            return row
    except UnsupportedFormat as exc:    # a newer poppoarc's (spec §15): not damaged, not ours
        return ListRow(archive.id, path, archive.size or 0, status="newer", problem=str(exc))
    except (PoppoarcError, OSError) as exc:
        return ListRow(archive.id, path, archive.size or 0, status="damaged", problem=str(exc))
    except Exception as exc:    # a bug met on a hostile file: named in the row, not fatal
        return ListRow(archive.id, path, archive.size or 0, status="damaged",
                       problem=f"{path}: cannot read head (internal error {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]})")


def find_archive(settings: Settings, reference: str) -> tuple[Store, StoredArchive]:
    """The store holding the referenced archive, and the archive."""
    return locate_in_store(open_store(settings), reference, settings.storage)


def locate(settings: Settings, reference: str) -> Path | str:
    """Where the referenced archive is: a local path, or an s3:// URL."""
    _, archive = find_archive(settings, reference)
    return archive.where


@contextmanager
def open_archive(settings: Settings, reference: str):
    """Yields (store, source, display path) for a referenced archive."""
    store, archive = find_archive(settings, reference)
    with store.open(archive) as source:
        yield store, source, archive.where


def open_sealer(settings: Settings, head: reader.TrustedHead, path: Path,
                environ=None) -> Sealer | None:
    """The archive's sealer when it is encrypted and a key here opens it.

    None when the archive is not encrypted, or when no key is configured at
    all; a configured key that does not fit raises WrongKey before any
    content is read.
    """
    encryption = head.manifest["encryption"]
    if encryption is None:
        return None
    secrets = recipients.load_secrets(settings.backup, settings.key_dir,
                                      os.environ if environ is None else environ, Warnings())
    if secrets.passphrase is None and not secrets.identities:
        return None
    data_key = recipients.unwrap(encryption["recipients"], head.manifest["id"], secrets, path)
    return Sealer(data_key, head.manifest["id"])


def read_checked_index(settings: Settings, source, head: reader.TrustedHead, path,
                       sealer: Sealer | None = None) -> reader.Index:
    """The index, every record judged by the confinement rule (restore/safety.py) as it is
    read: what verify, inspect and unpack read, so that they refuse the same archives with
    the same errors, before a restore writes anything (its safety archive included)."""
    rules = Confinement.for_settings(settings, head.manifest, path)
    try:
        index = reader.read_index(source, head, path, sealer, visit=rules.visit)
        if index.entries is not None:
            rules.finish()
    finally:
        rules.close()
    return index


def full_manifest(head: reader.TrustedHead, index: reader.Index) -> dict:
    """The head manifest with the fields an encrypted archive seals into its index."""
    manifest = dict(head.manifest)
    if index.sealed_manifest:
        manifest.update(index.sealed_manifest)
    return manifest


@dataclass
class InspectResult:
    path: Path | str
    manifest: dict
    signer: str
    entries: list[IndexEntry] = field(default_factory=list)
    sealed: bool = False          # encrypted and no key here: only the public head is shown
    changed: list[str] = field(default_factory=list)    # files that changed while packed

    def to_json(self, with_entries: bool = False) -> dict:
        data = {"path": str(self.path), "signer": self.signer, "manifest": self.manifest,
                "sealed": self.sealed, "changed_while_packed": self.changed}
        if with_entries:     # made while written: 100,000 entries as dicts took 300 MB
            data["entries"] = StreamedArray(lambda: (e.to_json() for e in self.entries))
        return data


def inspect(settings: Settings, reference: str, with_entries: bool = False) -> InspectResult:
    with open_archive(settings, reference) as (_, source, path):
        head = reader.open_trusted(source, pinned_keys(settings), path)
        sealer = open_sealer(settings, head, path)
        index = read_checked_index(settings, source, head, path, sealer)
    sealed = index.entries is None
    changed = [e.path for e in index.entries or () if e.changed]
    return InspectResult(path, full_manifest(head, index), head.signer,
                         (index.entries or []) if with_entries else [], sealed, changed)


# Databases written to the temporary directory and not yet checked: at most this many
# bytes, or one database however large (the disk a verify needs stays bounded).
CHECK_BACKLOG = 512 << 20


class _VerifySink(reader.MemberSink):
    """Discards content, except SQLite members: written to temp files and checked on a
    thread of their own while the archive streams on."""

    def __init__(self, workdir: str, path: Path | str):
        self.workdir, self.path = workdir, path
        self._fd: int | None = None
        self._temp = ""
        self.databases_checked = 0
        self.changed: list[str] = []    # records flagged: the file changed while packed
        self.checks = BackgroundChecks(quick=False, max_bytes=CHECK_BACKLOG, remove=True)

    def begin(self, entry: IndexEntry) -> None:
        if entry.changed:
            self.changed.append(entry.path)
        if entry.sqlite and entry.delta is None:    # a delta alone is no database (§12.4)
            self._temp = os.path.join(self.workdir, f"check-{self.databases_checked}.db")
            self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def data(self, entry: IndexEntry, chunk: bytes) -> None:
        if self._fd is not None:
            os.write(self._fd, chunk)

    def end(self, entry: IndexEntry) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        self.checks.submit(entry.path, self._temp, entry.size)
        self.databases_checked += 1

    def finish(self) -> None:
        """Wait for the database checks; the first failure is raised."""
        for member, errors in self.checks.failures():
            raise CorruptArchive(f"member {member}: database fails integrity_check: "
                                 f"{'; '.join(errors[:2])}", path=self.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.checks.close()


@dataclass
class VerifyResult:
    path: Path | str
    id: str
    signer: str
    entries: int
    files: int
    bytes: int
    databases: int
    encryption: str | None = None
    not_checked: list[str] = field(default_factory=list)   # what needed a key we lack
    recorded: bool = False        # noted in the store's verification record
    checksum: str = ""            # the archive's signed checksum (for the record)
    chain: list[str] = field(default_factory=list)   # ancestors checked, oldest first
    changed: list[str] = field(default_factory=list)   # files that changed while packed

    def to_json(self) -> dict:
        return {"path": str(self.path), "id": self.id, "ok": True, "signer": self.signer,
                "entries": self.entries, "files": self.files, "bytes": self.bytes,
                "databases_checked": self.databases, "encryption": self.encryption,
                "not_checked": self.not_checked, "recorded": self.recorded,
                "chain": self.chain, "changed_while_packed": self.changed}


def verify(settings: Settings, reference: str, progress=None, record: bool = True) -> VerifyResult:
    """Check signature, framing, index, the body checksum, every digest a record carries
    (large files, databases, sealed files) and every database."""
    with open_archive(settings, reference) as (store, source, path):
        result = verify_source(settings, source, path, progress, store=store)
    if record and not result.not_checked and isinstance(path, Path) \
            and path.parent.resolve() == Path(settings.store).resolve():
        # only a complete check of an archive in the local store counts for doctor
        result.recorded = verified.record(settings.store, result.id, result.checksum)
    return result


def verify_source(settings: Settings, source, path, progress=None,
                  store: Store | None = None) -> VerifyResult:
    """``verify`` of an open archive source (local file or remote object).

    An incremental archive's chain is resolved in ``store`` and every link is
    verified with it; without a store only the archive itself is checked.
    """
    pinned = pinned_keys(settings)
    head = reader.open_trusted(source, pinned, path)
    sealer = open_sealer(settings, head, path)      # a wrong key fails first, as in unpack (§7)
    links = chain.resolve(store, head, pinned) if store is not None else []
    scope = reader.scope(head.manifest)
    index = read_checked_index(settings, source, head, path, sealer)
    result = VerifyResult(path, head.manifest["id"], head.signer, head.manifest["layout"]["entries"],
                          head.manifest["files"], 0, 0, scope, checksum=head.manifest["checksum"])
    if index.entries is None:
        total = head.manifest["size"]
        reader.check_body_without_key(source, head, path, progress=(
            lambda done, name: progress(done, total, name)) if progress else None)
        result.not_checked = ["file contents and their digests", "databases",
                              "the entry index (encrypted; no key available)"]
        if links:
            result.not_checked.append("the bodies of the chain's archives")
        result.chain = [link.id for link in links]
        return result
    entries = index.entries
    total = sum(e.payload_size() for e in entries if e.type == "file")
    report = (lambda done, name: progress(done, total, name)) if progress else None
    with leftovers.temporary_directory(leftovers.VERIFY_PREFIX) as workdir:
        sink = _VerifySink(workdir, path)
        try:
            if head.manifest["incremental"] and store is not None:
                total = sum(e.size for e in entries if e.type == "file")
                unchecked = chain.read_chain(links, store, (source, head, entries, path, sealer),
                                             sink, Path(workdir), chain.ancestor_reader(settings),
                                             report)
                result.chain = [link.id for link in links]
            else:
                unchecked = reader.read_body(source, head, entries, path, sink, sealer=sealer,
                                             progress=report)
                if head.manifest["incremental"]:
                    result.not_checked.append("its parent archives and the files they hold")
            sink.finish()
        finally:
            sink.close()    # before the temporary directory goes
    if unchecked:
        result.not_checked.append(f"{unchecked} sealed secret file(s): no key available")
    result.bytes, result.databases = total, sink.databases_checked
    result.changed = sink.changed
    return result
