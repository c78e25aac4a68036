"""``verify``: every byte of an archive checked, as a restore would read it.

The signature, the framing, the index (and the confinement rule for each record), the
body checksum, every digest a record carries (large files, databases, sealed files) and
every database's ``integrity_check``; an incremental archive with its whole chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import EXIT_OK, ArchiveError, CorruptArchive, UnsafeArchiveEntry
from ..format import reader
from ..format.entry import IndexEntry
from ..i18n import N_
from ..restore.refusals import unsafe_hint
from ..snapshot.sqlite import BackgroundChecks
from ..store import SUFFIX, Store, leftovers, verified
from . import chain
from .opening import open_archive, open_sealer, pinned_keys, read_checked_index


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
            view = memoryview(chunk)
            while view:     # a short write (the disk filling) is not the end of the copy
                view = view[os.write(self._fd, view):]

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
    # sealed and no key here: only the signature, the framing and the signed checksum of
    # the archive's ``archive_size`` bytes were checked
    structure_only: bool = False
    archive_size: int = 0
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"path": str(self.path), "id": self.id, "ok": True, "signer": self.signer,
                "entries": self.entries, "files": self.files, "bytes": self.bytes,
                "databases_checked": self.databases, "encryption": self.encryption,
                "not_checked": self.not_checked, "recorded": self.recorded,
                "chain": self.chain, "changed_while_packed": self.changed,
                "structure_only": self.structure_only}


def _id_of(path) -> str:
    name = str(path).rsplit("/", 1)[-1]
    return name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name


def record_location(settings: Settings) -> Path:
    """Where verifications of the configured store are recorded (``store.verified``)."""
    if settings.storage.get("type") == "s3":
        return verified.remote_record_path(settings.key_dir, settings.store_url)
    return verified.record_path(settings.store)


def in_configured_store(settings: Settings, store: Store, path) -> bool:
    """The archive at ``path`` (found in ``store``) is one of the configured store's."""
    if settings.storage.get("type") == "s3":
        return str(store).rstrip("/") == settings.store_url.rstrip("/")
    return isinstance(path, Path) and path.parent.resolve() == Path(settings.store).resolve()


def verify(settings: Settings, reference: str, progress=None, record: bool = True) -> VerifyResult:
    """Check signature, framing, index, the body checksum, every digest a record carries
    (large files, databases, sealed files) and every database."""
    with open_archive(settings, reference) as (store, source, path):
        try:
            result = verify_source(settings, source, path, progress, store=store)
        except ArchiveError as exc:
            # an archive once verified no longer counts as verified, for doctor (a refusal
            # otherwise changes nothing: verify --all is what records failures)
            location = record_location(settings)
            if record and in_configured_store(settings, store, path) \
                    and "checksum" in verified.load(settings.store, location).get(_id_of(path), {}):
                verified.record_many(location, {}, {a.id for a in store.catalog()},
                                     failed={_id_of(path): str(exc)})
            raise
    if record and not result.not_checked and in_configured_store(settings, store, path):
        # only a complete check of an archive in the configured store counts for doctor
        result.recorded = verified.record_many(record_location(settings),
                                               {result.id: result.checksum},
                                               {a.id for a in store.catalog()})
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
    try:
        index = read_checked_index(settings, source, head, path, sealer)
    except UnsafeArchiveEntry as exc:
        raise unsafe_hint(exc, head.manifest["id"], verifying=True) from None
    result = VerifyResult(path, head.manifest["id"], head.signer, head.manifest["layout"]["entries"],
                          head.manifest["files"], 0, 0, scope, checksum=head.manifest["checksum"])
    if index.entries is None:
        total = head.manifest["size"]
        reader.check_body_without_key(source, head, path, progress=(
            lambda done, name: progress(done, total, name)) if progress else None)
        result.structure_only, result.archive_size = True, total
        result.not_checked = [N_("file contents and their digests"), N_("databases"),
                              N_("the entry index (encrypted; no key available)")]
        if links:
            result.not_checked.append(N_("the bodies of the chain's archives"))
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
                    result.not_checked.append(N_("its parent archives and the files they hold"))
            sink.finish()
        finally:
            sink.close()    # before the temporary directory goes
    if unchecked:
        result.not_checked.append(N_(f"{unchecked} sealed secret file(s): no key available"))
    result.bytes, result.databases = total, sink.databases_checked
    result.changed = sink.changed
    return result
