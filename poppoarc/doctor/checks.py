"""The checks of ``doctor``, in the order they are shown.

Every check takes the shared ``Context`` (which reads the store and the
installation once) and returns one Finding; none of them writes anything.
"""

from __future__ import annotations

import os
import shutil
import stat
from datetime import datetime
from functools import cached_property
from pathlib import Path

from ..config_schema import parse_size
from ..crypto import identity, recipients, signing
from ..errors import PoppoarcError, Warnings
from ..archives.listing import ListRow, list_archives
from ..archives.verification import record_location
from ..lock import probe
from ..fs import process_is_alive
from ..restore.journal import JournalError, read_journal
from ..snapshot import sqlite as sqlite_snapshot
from ..snapshot.catalogue import SQLITE, TARGETS, build_catalogue
from ..snapshot.root import look_at_root, root_problem
from ..snapshot.scan import DATABASE, scan
from ..store import verified
from ..i18n import N_
from ..text import human_size
from . import Finding

KEY_ENV = "POPPO_BACKUP_KEY"
_DETAILS = 20


class Context:
    def __init__(self, settings, now: datetime, environ, free_bytes):
        self.settings, self.now = settings, now
        self.environ = os.environ if environ is None else environ
        self.free_bytes = free_bytes or (lambda path: shutil.disk_usage(path).free)
        self.backup = settings.backup

    @cached_property
    def rows(self) -> list[ListRow] | PoppoarcError:
        try:
            return list_archives(self.settings)
        except PoppoarcError as exc:
            return exc

    @property
    def good_rows(self) -> list[ListRow]:
        return [r for r in self.rows if r.status == "ok"] if isinstance(self.rows, list) else []

    @cached_property
    def record(self) -> dict[str, dict]:
        return verified.load(self.settings.store, record_location(self.settings))

    def is_verified(self, row: ListRow) -> bool:
        seen = self.record.get(row.id)
        return bool(seen) and seen.get("checksum") == row.checksum

    @cached_property
    def live(self):
        """Every entry of every target, and the targets pack would take."""
        settings = self.settings
        catalogue = build_catalogue(self.backup.get("targets", {}), TARGETS,
                                    self.backup.get("exclude", ()))
        self.walk_warnings = Warnings()
        entries = scan(settings.root, catalogue, self.walk_warnings,
                       skip=(settings.store, settings.key_dir)).entries
        enabled = build_catalogue(self.backup.get("targets", {}), None).selected
        return entries, enabled

    @property
    def unreadable_databases(self) -> dict[str, str]:
        """Paths that may be databases and cannot be read: the walk's warning of each."""
        self.live       # noqa: B018 (walks once)
        catalogue = build_catalogue(self.backup.get("targets", {}), TARGETS,
                                    self.backup.get("exclude", ()))
        found = {}
        for path in self.walk_warnings.skipped:
            if any(rule.action == SQLITE for rule in catalogue.claim(path)):
                found[path] = next(m for m in self.walk_warnings if m.startswith(path + ": "))
        return found

    @cached_property
    def lock(self):
        return probe(self.settings.root)


def _f(check_id, title, status, message, fix=None, details=None, **params) -> Finding:
    return Finding(check_id, title, status, message, fix, params, list(details or [])[:_DETAILS])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_root(ctx: Context) -> Finding:
    settings = ctx.settings
    facts = look_at_root(settings.root, (settings.store, settings.key_dir))
    problem = root_problem(facts)
    if problem:
        return _f("root", N_("Installation root"), "fail", N_("{root} {problem}"),
                  N_("check --root or $POPPO_ROOT (a cron line's typo, a disk not mounted); "
                     "pack, schedule and unpack refuse this root without --force"),
                  root=facts.path, problem=problem)
    return _f("root", N_("Installation root"), "ok", N_("{root} has {markers}"),
              root=facts.path, markers=", ".join(facts.markers))


def check_config(ctx: Context) -> Finding:
    title, path = N_("Configuration"), str(ctx.settings.config_path)
    problem = ctx.settings.config_problem
    if problem:
        where = problem.split(": ", 1)[0]
        if "invalid JSON" in problem or "not UTF-8" in problem:
            fix = N_("correct the JSON syntax at {where}")
        else:
            fix = N_("correct the key at {where}; every key is listed in "
                     "docs/configuration.md")
        return _f("config", title, "fail", N_("{problem}"), fix, problem=problem, where=where)
    if not ctx.settings.config_path.exists():
        return _f("config", title, "ok", N_("no configuration file at {path}; defaults apply"),
                  path=path)
    legacy = ctx.settings.legacy
    if legacy:
        problems = [m for m in legacy if m.problem]
        return _f("config", title, "warn" if problems else "info",
                  N_("{path} has the backup section PoppoBuilder ships: {count} legacy key(s) "
                     "read as the documented ones"),
                  N_("poppoarc config --upgrade --write puts the section into the documented "
                     "shape; each key's meaning is listed above"),
                  details=[m.describe() for m in problems + [m for m in legacy if not m.problem]],
                  path=path, count=len(legacy))
    return _f("config", title, "ok", N_("{path} is valid"), path=path)


def check_restore(ctx: Context) -> Finding:
    title = N_("Interrupted restore")
    try:
        journal = read_journal(ctx.settings.root)
    except JournalError as exc:
        return _f("restore", title, "fail", N_("the restore journal is unreadable: {error}"),
                  N_("keep the journal and the .poppoarc-* directories; see the journal's "
                     "items to put entries back by hand"), error=str(exc))
    if journal is None:
        return _f("restore", title, "ok", N_("none"))
    params = dict(restore=journal.restore_id, archive=journal.archive_id, phase=journal.phase,
                  pid=journal.pid)
    if process_is_alive(journal.pid, journal.pid_start):
        return _f("restore", title, "info",
                  N_("restore {restore} of {archive} is running (pid {pid}, phase {phase})"),
                  **params)
    return _f("restore", title, "fail",
              N_("restore {restore} of {archive} was interrupted in phase {phase} and waits "
                 "for recovery"),
              N_("poppoarc unpack --recover (every other command also recovers first)"),
              **params)


def check_lock(ctx: Context) -> Finding:
    title = N_("Installation lock")
    state = ctx.lock
    if not state.exists:
        return _f("lock", title, "ok", N_("free"))
    if state.held:
        return _f("lock", title, "info", N_("in use by {holder}"), holder=state.holder or "?")
    if state.pid is not None and not state.pid_alive:
        return _f("lock", title, "warn",
                  N_("stale but harmless: {path} names {holder}, which is no longer running "
                     "(the kernel released the lock)"),
                  N_("nothing blocks; look for stale temporary files below, then clear the note: "
                     ": > {path}"), path=str(state.path), holder=state.holder)
    return _f("lock", title, "ok", N_("free"))


def check_space(ctx: Context) -> Finding:
    title, store = N_("Free space"), ctx.settings.store
    probe_at = store
    while not probe_at.exists() and probe_at != probe_at.parent:
        probe_at = probe_at.parent
    free = ctx.free_bytes(probe_at)
    rows = ctx.good_rows
    if rows:                            # partial and safety archives are small: take the
        estimate = max(r.size for r in rows[:5])    # largest of the five newest
        basis = N_("the recent archives")
    else:
        entries, enabled = ctx.live
        estimate = sum(e.size for e in entries if e.target in enabled)
        basis = N_("the installation's size, uncompressed")
    storage = ctx.backup.get("storage", {})
    reserve = parse_size(storage.get("minFree", 0))
    params = dict(free=human_size(free), estimate=human_size(estimate),
                  reserve=human_size(reserve), store=str(store), basis=basis)
    if free < estimate + reserve:
        return _f("space", title, "fail",
                  N_("{free} free where the store is; the next archive needs about {estimate} "
                     "(estimated from {basis}) plus the {reserve} reserve"),
                  N_("free space there (df -h {store}), delete old archives, or move the store "
                     "(backup.storage.path)"), **params)
    if free < 2 * estimate + reserve:
        return _f("space", title, "warn",
                  N_("{free} free: room for only one more archive of about "
                     "{estimate}"),
                  N_("free space there (df -h {store}) or delete old archives"), **params)
    return _f("space", title, "ok",
              N_("{free} free; the next archive needs about {estimate}"),
              **params)


def check_store(ctx: Context) -> Finding:
    title, store = N_("Store permissions"), ctx.settings.store
    if not store.is_dir():
        return _f("store", title, "info",
                  N_("{store} does not exist yet; the first pack creates it (mode 0700)"),
                  store=str(store))
    mode = _mode(store)
    params = dict(store=str(store), mode=f"{mode:04o}")
    if not os.access(store, os.W_OK | os.X_OK):
        return _f("store", title, "fail", N_("{store} is not writable by this user"),
                  N_("give this user write access to {store} (chown or chmod 700)"), **params)
    if mode & 0o077:
        return _f("store", title, "warn",
                  N_("{store} has mode {mode}: other users can list the backups"),
                  N_("chmod 700 {store}"), **params)
    return _f("store", title, "ok", N_("{store} has mode {mode}"), **params)


def check_archive_modes(ctx: Context) -> Finding:
    title, store = N_("Archive permissions"), ctx.settings.store
    files = [p for p in (store.glob("*.poppo.tar.zst") if store.is_dir() else [])]
    files += [p for p in (store / verified.RECORD_NAME,) if p.exists()]
    loose = [f"{p.name} ({_mode(p):04o})" for p in files if _mode(p) & 0o077]
    if loose:
        return _f("archive-modes", title, "warn",
                  N_("{count} file(s) in the store are readable by other users"),
                  N_("chmod 600 {store}/*.poppo.tar.zst"), loose, count=len(loose),
                  store=str(store))
    count = len(files) - (1 if (store / verified.RECORD_NAME).exists() else 0)
    if not count:
        return _f("archive-modes", title, "n/a", N_("no archives yet"))
    return _f("archive-modes", title, "ok", N_("{count} archive(s), all mode 0600"), count=count)


def check_signing_key(ctx: Context) -> Finding:
    title, key_dir = N_("Signing key"), ctx.settings.key_dir
    private = key_dir / signing.PRIVATE_NAME
    params = dict(key=str(private), dir=str(key_dir))
    if not private.exists():
        return _f("signing-key", title, "info",
                  N_("no signing key in {dir} yet; the first pack creates one"), **params)
    mode = _mode(private)
    if mode & 0o077:
        return _f("signing-key", title, "fail",
                  N_("{key} has mode {mode:04o}: readable by others, so pack refuses it"),
                  N_("chmod 600 {key}"), mode=mode, **params)
    try:
        key = signing.load(key_dir)
    except PoppoarcError as exc:
        return _f("signing-key", title, "fail", N_("{error}"),
                  N_("replace it with: poppoarc keygen --rotate (the old key is kept and "
                     "stays trusted for its archives)"), error=str(exc), **params)
    try:
        signing.check_public_file(key_dir, key, repair=False)
    except PoppoarcError as exc:
        return _f("signing-key", title, "fail", N_("{error}"),
                  N_("put back the signing.pub of {key}, or delete it: the next pack writes "
                     "it again"), error=str(exc), **params)
    if _mode(key_dir) & 0o077:
        return _f("signing-key", title, "warn", N_("{dir} has mode {mode:04o}"),
                  N_("chmod 700 {dir}"), mode=_mode(key_dir), **params)
    return _f("signing-key", title, "ok", N_("key {id} in {key}, mode 0600"), id=key.key_id,
              **params)


def check_encryption_key(ctx: Context) -> Finding:
    title = N_("Encryption key")
    storage = ctx.backup.get("storage", {})
    encrypted = [r.id for r in ctx.good_rows if r.encrypted]
    own = ctx.settings.key_dir / recipients.IDENTITY_NAME
    wanted = bool(storage.get("encrypt")) or bool(encrypted)
    if not wanted and not own.exists():
        return _f("encryption-key", title, "n/a", N_("encryption is off"))
    params = dict(env=KEY_ENV, count=len(encrypted))
    if ctx.environ.get(KEY_ENV):
        return _f("encryption-key", title, "ok", N_("key available from ${env}"), **params)
    if ctx.environ.get(recipients.UPSTREAM_KEY_VARIABLE):
        try:
            recipients.upstream_key(ctx.environ[recipients.UPSTREAM_KEY_VARIABLE])
        except PoppoarcError as exc:
            return _f("encryption-key", title, "fail", N_("{error}"),
                      N_("set ${var} to the key in hex"), error=str(exc),
                      var=recipients.UPSTREAM_KEY_VARIABLE)
        return _f("encryption-key", title, "ok", N_("key available from ${env}"),
                  **{**params, "env": recipients.UPSTREAM_KEY_VARIABLE})
    key_file = storage.get("keyFile")
    if key_file:
        path = Path(key_file)
        if not path.is_absolute():
            path = ctx.settings.root / path
        params["file"] = str(path)
        if not path.is_file() or not os.access(path, os.R_OK):
            return _f("encryption-key", title, "fail",
                      N_("backup.storage.keyFile {file} is missing or unreadable"),
                      N_("restore the key file {file} (or set ${env})"), encrypted, **params)
        if _mode(path) & 0o077:
            return _f("encryption-key", title, "warn", N_("{file} is readable by other users"),
                      N_("chmod 600 {file}"), **params)
        return _f("encryption-key", title, "ok", N_("key available from {file}"), **params)
    if storage.get("encryptionKey"):
        return _f("encryption-key", title, "warn",
                  N_("the key is written in the configuration file, which is itself backed up"),
                  N_("move it to ${env} or a file named by backup.storage.keyFile"), **params)
    if storage.get("recipients") or own.exists():
        return _identity_finding(ctx, title, own, encrypted)
    return _f("encryption-key", title, "fail",
              N_("encryption is on ({count} encrypted archive(s)) but no key is available"),
              N_("set ${env} or backup.storage.keyFile"), encrypted, **params)


def _identity_finding(ctx: Context, title: str, own: Path, encrypted: list[str]) -> Finding:
    """Archives sealed to X25519 recipients: fine while the identity that opens them is
    kept elsewhere too; a failure while it exists only here (losing the machine loses
    what it sealed: every archive, when whole archives are sealed)."""
    params = dict(path=str(own), count=len(encrypted))
    if ctx.backup.get("storage", {}).get("recipients") or not own.exists():
        return _f("encryption-key", title, "ok",
                  N_("archives are sealed to backup.storage.recipients"), **params)
    record = identity.export_record(ctx.settings.key_dir)
    if record is not None:
        return _f("encryption-key", title, "ok",
                  N_("archives are sealed to the identity {path}, exported on {when} to "
                     "{to}"), when=record.get("exported_at", "?"), to=record.get("to", "?"),
                  **params)
    try:
        mine = identity.key_id(recipients.load_identity(own))
    except PoppoarcError as exc:
        return _f("encryption-key", title, "fail", N_("{error}"),
                  N_("restore the identity file {path} from its copy"), error=str(exc),
                  **params)
    whole = [r.id for r in ctx.good_rows if r.sealed == "archive" and r.openers == (mine,)]
    secrets = [r.id for r in ctx.good_rows if r.sealed == "secrets" and r.openers == (mine,)]
    fix = N_("copy it off this machine: poppoarc keygen --export=FILE")
    if whole or ctx.backup.get("storage", {}).get("encrypt"):
        return _f("encryption-key", title, "fail",
                  N_("{whole} archive(s) open only with the identity {path}, which exists "
                     "only on this machine: losing the machine loses every backup"),
                  fix, whole, whole=len(whole), **params)
    if not secrets:         # nothing of this store yet: what pack will seal to it
        return _f("encryption-key", title, "warn",
                  N_("the identity {path}, which pack seals secret files to, exists only on "
                     "this machine (never exported)"), fix, **params)
    return _f("encryption-key", title, "warn",
              N_("the secret files of {secrets} archive(s) open only with the identity "
                 "{path}, which exists only on this machine"), fix, secrets,
              secrets=len(secrets), **params)


def check_databases(ctx: Context) -> Finding:
    """Every live database passes quick_check, can be read (a backup would leave out
    one it cannot read), and every database the newest archive holds is still there."""
    title = N_("Databases")
    entries, _enabled = ctx.live
    databases = [e.path for e in entries if e.kind == DATABASE]
    unreadable = ctx.unreadable_databases
    broken = []
    for rel in databases:
        errors = sqlite_snapshot.integrity_errors(ctx.settings.root / rel, quick=True)
        if errors:
            broken.append(f"{rel}: {errors[0]}")
    previous = next((r for r in ctx.good_rows
                     if r.type != "pre-restore" and r.databases is not None), None)
    missing = [] if previous is None else sorted(
        set(previous.databases) - set(databases) - set(unreadable))
    params = dict(total=len(databases), count=len(broken), unreadable=len(unreadable),
                  missing=len(missing), previous=previous.id if previous else "",
                  archived=len(previous.databases) if previous else 0)
    if unreadable:
        return _f("databases", title, "fail",
                  N_("{unreadable} database file(s) cannot be read by this user: a backup "
                     "leaves them out"),
                  N_("give the user that runs poppoarc read access to them (and write "
                     "access to their directory, for SQLite's -shm file)"),
                  list(unreadable.values()) + broken, **params)
    if broken:
        good = [r for r in ctx.good_rows if ctx.is_verified(r)] or ctx.good_rows
        archive = good[0].id if good else "ARCHIVE"
        return _f("databases", title, "fail",
                  N_("{count} of {total} database(s) fail PRAGMA quick_check"),
                  N_("stop PoppoBuilder, then restore them: poppoarc unpack {archive} "
                     "--targets database"), broken, archive=archive, **params)
    if missing:
        return _f("databases", title, "warn",
                  N_("{total} database(s) found, but {missing} of the {archived} in "
                     "{previous} are not: moved, deleted, or no longer SQLite files"),
                  N_("if they were lost, restore them: poppoarc unpack {previous} "
                     "--targets database"), missing, **params)
    if previous is not None:
        return _f("databases", title, "ok",
                  N_("{total} database(s) pass PRAGMA quick_check; all {archived} of "
                     "{previous} are there"), **params)
    return _f("databases", title, "ok", N_("{total} database(s) pass PRAGMA quick_check"),
              **params)
