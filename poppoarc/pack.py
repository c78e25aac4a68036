"""``pack``: capture an installation into one signed archive.

Order of work: lock the installation, walk it (a directory of many files in
a helper process, ``pack_subtree``), then stream every selected target into
the store's upload (databases through the backup API), write the index, sign
the manifest into the reserved head, and commit: fsync and rename in a local
store, complete the multipart upload in S3.  Until the commit nothing exists
under the archive's final name.
"""

from __future__ import annotations

import os
import stat
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .config import Settings
from .crypto import recipients, signing
from .crypto.sealer import Sealer
from .errors import EXIT_OK, EXIT_WARNING, NoKey, Warnings, as_space_error
from .format import head as headfmt
from .format.entry import CHUNK_SIZE
from .format.manifest import (ENCRYPTION_SCHEME, MAX_WARNING_CHARS, MAX_WARNINGS_IN_HEAD,
                              new_archive_id)
from .format.note import note_member
from .format.writer import DEFAULT_LEVEL, BodyWriter, finish_archive
from .lock import InstallationLock
from .options import PackOptions
from .pack_databases import SnapshotSession
from .pack_job import PackJob
from .pack_subtree import SubtreeHelper, walk_installation
from .snapshot import sqlite as sqlite_snapshot
from .snapshot.catalogue import build_catalogue
from .snapshot.certs import describe_reference
from .snapshot.environment import dotenv_names, environment_document
from .snapshot.version import installation_version
from .archives.parent import find_parent
from .snapshot.scan import FILE, SourceEntry, database_candidates, path_of
from .store import leftovers, open_store

MAX_REFERENCES = 500
# An incremental pack reads its parent's index during the walk; the index helper then
# takes most of it (this process's part competes with the walk for the interpreter).
PARENT_HELPER_SHARE = 0.75


@dataclass
class PackResult:
    id: str
    path: Path | str
    size: int
    files: int
    targets: dict
    warnings: list[str]
    duration_ms: int
    signer: str
    key_created: bool
    databases: list = field(default_factory=list)
    encryption: str | None = None          # None, "secrets" or "archive"
    cleaned: list[str] = field(default_factory=list)   # stale temps/uploads removed first
    parent: str | None = None              # an incremental's parent id
    reused: int = 0                        # files whose content stays in an ancestor
    skipped: list[str] = field(default_factory=list)   # paths not archived (each warned)

    @property
    def exit_code(self) -> int:
        return EXIT_WARNING if self.warnings else EXIT_OK

    def to_json(self) -> dict:
        return {"id": self.id, "path": str(self.path), "size": self.size, "files": self.files,
                "targets": self.targets, "warnings": self.warnings,
                "duration_ms": self.duration_ms, "signer": self.signer,
                "key_created": self.key_created, "encryption": self.encryption,
                "cleaned": self.cleaned, "incremental": self.parent is not None,
                "parent": self.parent, "reused": self.reused, "skipped": self.skipped,
                "databases": [{"path": d["path"], "tables": d["tables"]} for d in self.databases]}


def compression_threads() -> int:
    configured = os.environ.get("POPPOARC_THREADS")
    if configured:
        return int(configured)
    return min(os.cpu_count() or 1, 2)


def pack(settings: Settings, options: PackOptions = PackOptions(), progress=None,
         environ=None) -> PackResult:
    """Pack under the installation lock (one writer per installation)."""
    with InstallationLock(settings.root, "pack"):
        return pack_locked(settings, options, progress, environ)


def incremental_settings(settings: Settings) -> tuple[bool, int]:
    """(incremental by default, maxIncrementals) from ``backup.incremental``."""
    section = settings.backup.get("incremental", {})
    return bool(section.get("enabled", False)), int(section.get("maxIncrementals", 7))


def _schedules_incrementals(settings: Settings) -> bool:
    """True when a ``backup.schedule`` entry makes incrementals (its fulls are their parents)."""
    from .config_schema import INCREMENTAL
    from .policy.schedule import parse_schedule
    schedule = parse_schedule(settings.backup)
    return schedule is not None and any(e.type == INCREMENTAL for e in schedule.entries)


def pack_locked(settings: Settings, options: PackOptions, progress=None,
                environ=None) -> PackResult:
    """Pack; the caller holds the installation lock (restore does, for its safety archive).

    ``options.incremental``: True stores only what changed since the newest good
    archive (a full archive when there is none or the chain is at its
    maximum), False makes a full archive, None follows the configuration.
    """
    targets, name, archive_type = options.targets, options.name, options.archive_type
    encrypt, incremental = options.encrypt, options.incremental
    check_content = options.check_content
    started = time.monotonic()
    now = datetime.now(timezone.utc)
    warnings = Warnings()
    environ = os.environ if environ is None else environ
    secrets = recipients.load_secrets(settings.backup, settings.key_dir, environ, warnings)
    if archive_type == "pre-restore":
        # A machine that opens archives with an X25519 identity alone seals the secrets of
        # its safety archive to that identity: else it could not save them (and a restore
        # that replaces them would not start).
        secrets = recipients.sealing_to_identities(secrets)
    encrypt = encrypt or bool(settings.backup.get("storage", {}).get("encrypt"))
    if encrypt and not secrets.can_encrypt:
        raise NoKey("encryption is on but no key is configured: set POPPO_BACKUP_KEY, "
                    "backup.storage.keyFile or backup.storage.recipients")
    secrets = recipients.start_passphrase_kdf(secrets)     # runs beside the walk
    catalogue = build_catalogue(settings.backup.get("targets", {}), targets)
    key, key_created = signing.load_or_generate(settings.key_dir)
    store = open_store(settings)
    store.ensure()
    cleaned = leftovers.clean(store)
    by_default, max_incrementals = incremental_settings(settings)
    # a safety archive is never incremental (readers reject one: spec §12.1)
    chained = (by_default if incremental is None else incremental) \
        and archive_type != "pre-restore"
    archive_id = new_archive_id(now)
    upload = store.begin(archive_id)
    job = snapshots = subtree = None
    parent_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parent")
    try:
        parent_warnings = Warnings()

        def read_parent(helper_share):
            return find_parent(settings, store, sealed_whole=encrypt, warnings=parent_warnings,
                               max_incrementals=max_incrementals, helper_share=helper_share)

        # The parent is read beside the walk: its index mostly by a helper process, on the
        # other core.  Not with a passphrase: its Argon2id would run beside the pack's own.
        beside_walk = chained and secrets.passphrase is None
        parent_read = parent_reader.submit(read_parent, PARENT_HELPER_SHARE) \
            if beside_walk else None
        # Each database's snapshot copy starts as soon as the walk finds it; the body takes it.
        snapshots = SnapshotSession(settings.root, store.local_dir,
                                    settings.backup.get("databaseCheck") == "full")
        skip = (settings.store, settings.key_dir)
        threads = compression_threads()
        # A directory of many files is walked by a helper process beside this walk; not
        # beside an incremental's parent reading (its own helper has that core).  Beside a
        # passphrase's Argon2id it still saves time: 100,000 files, encrypted, 1.84-1.91 s
        # -> 1.72-1.79 s (summed PSS 113 -> 126 MiB while the KDF runs; no process > 84).
        if threads > 1 and not chained:
            subtree = SubtreeHelper.start(settings.root, catalogue, skip, store.local_dir)
        for path in database_candidates(settings.root, catalogue, skip):
            snapshots.start(path)       # the largest first, before the walk gets there
        # Compact walk records: plain files as (path, target); pack takes their facts from fstat
        result, subtree = walk_installation(settings.root, catalogue, warnings, skip,
                                            snapshots.start, subtree)
        scope = ("archive" if encrypt else
                 "secrets" if secrets.can_encrypt and result.secrets else None)
        encryption = sealer = None
        if scope:
            data_key = recipients.new_data_key()
            encryption = {"scheme": ENCRYPTION_SCHEME, "scope": scope, "chunk_size": CHUNK_SIZE,
                          "recipients": recipients.wrap(data_key, archive_id, secrets)}
            sealer = Sealer(data_key, archive_id)
        # Chains in use: incrementals asked for (or --full, which starts one), configured or
        # scheduled.  Only then do database records carry the page digests a delta needs.
        in_chains = incremental is not None or by_default or _schedules_incrementals(settings)
        parent = parent_read.result() if beside_walk else read_parent(None) if chained else None
        for warning in parent_warnings:
            warnings.add(warning)
        if sealer is not None:
            added = _add_secrets(settings.root, result.entries, result.secrets, warnings)
            result.target_bytes["security"] = result.target_bytes.get("security", 0) + added
        else:
            for rel in result.secrets:
                warnings.skip(rel, "secret file not archived: secrets are stored only "
                                   "encrypted and no key is configured (POPPO_BACKUP_KEY or "
                                   "backup.storage.recipients)")
        # Sealed content is compressed before encryption; the outer frames then
        # only hold tar framing and ciphertext, where a fast level is enough.
        level = 1 if scope == "archive" else DEFAULT_LEVEL
        job = PackJob(settings.root, catalogue.selected, result.entries, warnings, progress,
                      snapshots, keep_damaged_databases=archive_type == "pre-restore",
                      sealer=sealer, seal_all=scope == "archive", secrets=set(result.secrets),
                      archive_mtime_ns=int(now.timestamp()) * 10**9, parent=parent,
                      check_content=check_content, total_bytes=result.total_bytes,
                      block_digests=in_chains and archive_type != "pre-restore",
                      target_bytes=result.target_bytes,
                      helper_level=level if threads > 1 else None,
                      scratch_dir=store.local_dir, subtree=subtree)
        references = [describe_reference(str(settings.root / rel), rel)
                      for rel in result.references[:MAX_REFERENCES]]
        if len(result.references) > MAX_REFERENCES:
            warnings.add(f"only the first {MAX_REFERENCES} certificate references recorded")
        dotenv = _dotenv_names(settings.root, result.secrets)
        env_doc = environment_document(os.environ if environ is None else environ,
                                       settings.env_prefixes, settings.mask_patterns, dotenv)
        head_size = _head_size(settings.root, result.databases, references)
        result.entries = None       # the job holds the walk's records now
        writer = BodyWriter(upload, head_size, level=level, threads=threads)
        note = note_member(archive_id, parent.reference(), int(now.timestamp())) \
            if parent is not None else None
        job.write_body(writer, env_doc, now, note)
        fields = {
            "version": installation_version(settings.root),
            "tool": {"name": "poppoarc", "version": __version__},
            "type": archive_type, "name": name, "incremental": parent is not None,
            "parent": parent.reference() if parent else None,
            "host": socket.gethostname(), "root": str(settings.root),
            "targets": job.targets, "databases": job.databases,
            "certificates": references, "encryption": None, "files": job.files,
            "duration": int((time.monotonic() - started) * 1000),
        }
        manifest = finish_archive(upload, writer, archive_id=archive_id, now=now,
                                  entries=job.index, fields=fields, warnings=list(warnings),
                                  key=key, head_size=head_size, level=level,
                                  encryption=encryption, sealer=sealer)
        stored = upload.commit()
    except BaseException as exc:
        try:
            upload.abort()
        except Exception:   # the original error matters; a later pack cleans up
            pass
        space = as_space_error(exc)     # wherever the disk filled: store, spool, snapshot
        if space is not None:
            raise space from exc
        raise
    finally:
        parent_reader.shutdown(wait=True)   # after a failure, what it read goes unused
        if subtree is not None:             # (the body has closed it, unless it failed first)
            subtree.close()
        if snapshots is not None:
            snapshots.close()
        if job is not None:
            job.index.close()
    final = stored.where
    return PackResult(archive_id, final, manifest["size"], job.files, job.targets,
                      list(warnings), manifest["duration"], key.key_id, key_created,
                      job.databases, scope, cleaned, parent.id if parent else None, job.reused,
                      list(warnings.skipped))


def _add_secrets(root: Path, groups, secrets: list[str], warnings: Warnings) -> int:
    """Secret files join the security target, to be stored sealed; returns their bytes."""
    added = []
    for rel in secrets:
        try:
            st = os.lstat(root / rel)
        except OSError as exc:
            warnings.skip(rel, f"cannot stat ({exc.strerror}); not archived")
            continue
        if stat.S_ISREG(st.st_mode):
            added.append(SourceEntry(rel, "security", FILE, stat.S_IMODE(st.st_mode), st.st_uid,
                                     st.st_gid, st.st_mtime_ns, st.st_size, st.st_dev, st.st_ino, 1,
                                     ctime_ns=st.st_ctime_ns))
    groups.add_sorted("security", added, key=path_of)
    return sum(entry.size for entry in added)


def _head_size(root: Path, databases: list[str], references: list[dict]) -> int:
    """Reserve room for the manifest before the body is written.

    The variable parts are the databases' table lists (estimated from each
    live schema now), certificate references and the capped warnings.
    """
    estimate = 8192 + MAX_WARNINGS_IN_HEAD * (MAX_WARNING_CHARS + 8)
    for path in databases:
        names = sqlite_snapshot.table_names(root / path)
        estimate += 512 + sum(len(n.encode()) + 32 for n in names) + 1024
    estimate += sum(len(headfmt.canonical_json(r)) + 8 for r in references)
    rounded = -(-estimate // 4096) * 4096
    return min(max(rounded, headfmt.MIN_HEAD_SIZE), headfmt.MAX_HEAD_SIZE)


def _dotenv_names(root: Path, secrets: list[str]) -> dict[str, list[str]]:
    names = {}
    for rel in secrets:
        if rel.startswith(".env"):
            try:
                names[rel] = dotenv_names((root / rel).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return names
