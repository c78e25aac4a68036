"""The one exception tree of poppoarc, and collected warnings.

Every error a user can cause or meet derives from PoppoarcError and carries a
stable ``exit_code``; the CLI prints ``str(error)`` on one line and exits with
that code.  Ranges (after borg):

    0        success
    1        success with warnings
    2        usage error (bad command line)
    3-9      configuration and environment
    10-19    archive content (foreign, corrupt, truncated, tampered, ...)
    20-29    source installation and store
    30-39    restore
    40-49    cryptography and keys
    70       internal error: a bug (sysexits' EX_SOFTWARE); the traceback goes to a log
    130      interrupted (SIGINT)

Warnings are not raised: library code appends them to a ``Warnings`` list and
carries on; the caller decides how to show them.
"""

from __future__ import annotations

import errno
import resource     # loaded now: at the open-file limit, importing it would fail too
from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_USAGE = 2
EXIT_PROBLEMS = 7          # doctor: at least one check failed
EXIT_INTERNAL = 70         # an unexpected exception (ui/crash.py writes its traceback)
EXIT_INTERRUPTED = 130


class PoppoarcError(Exception):
    """Base class: an error poppoarc reports as one line and an exit code."""

    exit_code = 9

    def __init__(self, message: str, *, path: object = None, details=()):
        self.message = message          # without the path (a helper process passes both on)
        self.path = str(path) if path is not None else None
        # what an operator needs only to dig deeper (a checker's report, a library's own
        # words): shown with -v, never in the one line
        self.details = tuple(str(line) for line in details)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ResourceLimit(PoppoarcError):
    """A limit of this process or machine was reached (open files, memory, threads):
    nothing about the data; raise the limit named and run the command again."""

    exit_code = 9


class UsageError(PoppoarcError):
    """The command line asks for something that cannot be done as written."""

    exit_code = 2


# -- configuration and environment (3-9) ------------------------------------

class ConfigError(PoppoarcError):
    """The configuration file is unreadable, not JSON, or has a bad value."""

    exit_code = 3


class ArchiveNotFound(PoppoarcError):
    """No archive matches the given id, prefix or path."""

    exit_code = 4


class AmbiguousArchive(PoppoarcError):
    """An id prefix matches more than one archive."""

    exit_code = 5


class LockHeld(PoppoarcError):
    """Another poppoarc process holds the installation's lock."""

    exit_code = 6


class MissingDependency(PoppoarcError):
    """An optional package the requested feature needs is not installed."""

    exit_code = 8


# -- archive content (10-19) -------------------------------------------------

class ArchiveError(PoppoarcError):
    """Something is wrong with an archive file other than its content: not a regular file,
    or it cannot be opened or read."""

    exit_code = 10
    # True: this user or this machine could not open or read the file (permissions, the
    # open-file limit, an I/O error): a fact about here and now, not a verdict on the
    # archive's bytes, so retention never deletes it for that (list: "unreadable")
    unreadable = False


def unreadable_archive(message: str, path) -> ArchiveError:
    """The ArchiveError for an archive that could not be opened or read (``unreadable``)."""
    error = ArchiveError(message, path=path)
    error.unreadable = True
    return error


class ForeignArchive(ArchiveError):
    """The file is not a poppoarc archive (not zstd, or no poppoarc head)."""

    exit_code = 11


class UnsupportedFormat(ArchiveError):
    """A poppoarc archive of a format version this poppoarc cannot read."""

    exit_code = 12


class CorruptArchive(ArchiveError):
    """Bytes of the archive do not match what its signed manifest says, or a signed manifest
    or index breaks the format's rules."""

    exit_code = 13


class TruncatedArchive(CorruptArchive):
    """The archive ends before the length its manifest declares."""

    exit_code = 14


class TamperedArchive(ArchiveError):
    """The manifest signature does not verify, or the head was modified outside what it signs."""

    exit_code = 15


class UntrustedSigner(ArchiveError):
    """The signature is valid but made by a key that is not pinned."""

    exit_code = 16


class BrokenChain(ArchiveError):
    """An incremental archive's parent is missing, damaged (head or body), or not the one it
    was made from."""

    exit_code = 17


# -- source installation and store (20-29) ----------------------------------

class SourceError(PoppoarcError):
    """The installation root does not exist, or it or one of its files cannot be read."""

    exit_code = 20


class DatabaseSnapshotError(SourceError):
    """A SQLite database could not be captured consistently."""

    exit_code = 21
    # True: SQLite could not open or read it (permissions, a locked or unreadable WAL),
    # as opposed to a database that is damaged; pack skips such a one with a warning
    unopenable = False


class StoreError(PoppoarcError):
    """The backup store cannot be read or written."""

    exit_code = 22


class InsufficientSpace(StoreError):
    """Not enough free space for the work asked for."""

    exit_code = 23


class RemoteStoreError(StoreError):
    """A remote (S3) store refused or failed a request."""

    exit_code = 24


# -- restore (30-39) --------------------------------------------------------

class RestoreError(PoppoarcError):
    """A restore could not be carried out; the live tree is unchanged."""

    exit_code = 30


class UnsafeArchiveEntry(RestoreError):
    """An archive entry would write outside the installation or is not allowed."""

    exit_code = 31


class HookFailed(RestoreError):
    """The beforeRestore hook failed, so nothing was restored."""

    exit_code = 32


class HealthCheckFailed(RestoreError):
    """The health check failed after the swap; the old tree was put back."""

    exit_code = 33


class RestoreSwapError(RestoreError):
    """The atomic swap failed; the old tree was put back."""

    exit_code = 34


class RecoveryError(RestoreError):
    """An interrupted restore could not be recovered yet; the journal is kept."""

    exit_code = 35


class NotWritable(RestoreError):
    """The installation root cannot be written by this user."""

    exit_code = 36


# -- keys (40-49) -----------------------------------------------------------

class KeyFileError(PoppoarcError):
    """A key file is missing, unreadable, or malformed."""

    exit_code = 40


class WrongKey(KeyFileError):
    """The passphrase or identity given cannot open this encrypted archive."""

    exit_code = 41


class NoKey(KeyFileError):
    """The archive is encrypted and no key is available to open it."""

    exit_code = 42


# A full disk and an exhausted quota are one condition to an operator: exit 23.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def space_cause(exc: BaseException | None) -> OSError | None:
    """The OSError of a full disk or quota that ``exc`` is, or was raised from (its
    ``__cause__`` or ``__context__``, also after ``raise ... from None``); else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def write_error(error: type[PoppoarcError], exc: OSError, message: str,
                path: object = None) -> PoppoarcError:
    """``error(message: strerror)`` for a failed write, or InsufficientSpace when the disk
    or the quota is full: one exit code for "no space" wherever it happens."""
    cls = InsufficientSpace if exc.errno in NO_SPACE_ERRNOS else error
    return cls(f"{message}: {exc.strerror or exc}", path=path)


def as_space_error(exc: BaseException) -> InsufficientSpace | None:
    """``exc`` as InsufficientSpace when a full disk or quota caused it, else None.
    A command's last word on an error (pack's, and the command line's for every
    command); a RecoveryError stays one (an interrupted restore waits for recovery,
    whatever stopped it)."""
    if isinstance(exc, (InsufficientSpace, RecoveryError)):
        return None
    cause = space_cause(exc)
    if cause is None:
        return None
    if isinstance(exc, PoppoarcError):
        text = str(exc) if cause.strerror and cause.strerror in str(exc) \
            else f"{exc}: {cause.strerror}"
        return InsufficientSpace(text)
    if cause.filename is not None:
        return InsufficientSpace(cause.strerror or str(cause), path=cause.filename)
    import tempfile     # (rarely needed) a write to an open file: a spool or a copy
    return InsufficientSpace(f"{cause.strerror or cause} while writing a working file "
                             f"(in the store, or in the temporary directory "
                             f"{tempfile.gettempdir()})")


_TOO_MANY_FILES = {errno.EMFILE, errno.ENFILE}


def resource_limit(exc: BaseException | None) -> ResourceLimit | None:
    """``exc`` as ResourceLimit when a limit of this process or machine caused it (it or
    what it was raised from): too many open files, no memory, no thread could start;
    else None.  One line saying which limit and its value, for every command."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ResourceLimit):
            return exc
        if isinstance(exc, OSError) and exc.errno in _TOO_MANY_FILES:
            return too_many_open_files(exc.errno)
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError)
                                            and exc.errno == errno.ENOMEM) \
                or _library_out_of_memory(exc):
            limit = _limit("RLIMIT_AS", 1024)
            return ResourceLimit("out of memory: free memory" if limit == "unlimited" else
                                 f"out of memory: free memory or raise ulimit -v (now {limit})")
        if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
            return ResourceLimit(f"cannot start a thread: raise ulimit -u (now "
                                 f"{_limit('RLIMIT_NPROC')}) or ulimit -v (now "
                                 f"{_limit('RLIMIT_AS', 1024)})")
        exc = exc.__cause__ or exc.__context__
    return None


def _library_out_of_memory(exc: BaseException) -> bool:
    """zstd's "Allocation error : not enough memory", SQLite's "out of memory"."""
    text = str(exc).lower()
    return type(exc).__name__ in ("ZstdError", "OperationalError", "DatabaseError") \
        and ("not enough memory" in text or "out of memory" in text)


def too_many_open_files(code: int = errno.EMFILE) -> ResourceLimit:
    if code == errno.ENFILE:    # the system's table, not this process's
        return ResourceLimit("too many open files on this system (ENFILE): close programs "
                             "or raise fs.file-max")
    return ResourceLimit(f"too many open files: raise ulimit -n (now "
                         f"{_limit('RLIMIT_NOFILE')})")


def _limit(name: str, unit: int = 1) -> str:
    """The soft limit ``name`` (resource.RLIMIT_*) as ``ulimit`` shows it."""
    try:
        soft = resource.getrlimit(getattr(resource, name))[0]
    except (AttributeError, OSError, ValueError):
        return "unknown"
    return "unlimited" if soft == getattr(resource, "RLIM_INFINITY", -1) else str(soft // unit)


def all_error_classes() -> list[type[PoppoarcError]]:
    """Every error class, depth first, for the documented exit-code table."""
    found: list[type[PoppoarcError]] = []

    def walk(cls: type[PoppoarcError]) -> None:
        found.append(cls)
        for sub in sorted(cls.__subclasses__(), key=lambda c: c.exit_code):
            walk(sub)

    walk(PoppoarcError)
    return found


def one_line(error: BaseException | str) -> str:
    """An error as the one line an operator reads (a log, a notification's ``error``):
    its first line; what follows it is detail (``PoppoarcError.details``, ``-v``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else (type(error).__name__ if isinstance(error, BaseException)
                                   else "")


class Message(str):
    """An English message (the string itself) that a user interface can also show in the
    operator's language: its template (marked ``N_`` where it is written, so the catalog
    has it) and the fields it is formatted with; a field may be a Message too."""

    def __new__(cls, template: str, **fields):
        message = super().__new__(cls, template.format(**fields))
        message.template, message.fields = template, fields
        return message

    def translated(self, translate) -> str:
        return translate(self.template).format(**{
            k: v.translated(translate) if isinstance(v, Message) else v
            for k, v in self.fields.items()})


@dataclass
class Warnings:
    """Warnings collected during one operation, in the order they happened.

    ``skip`` is a warning about a path that was not archived although a selected
    target claims it (unreadable, gone, not representable): ``skipped`` lists those
    paths, so that a caller can tell what an archive lacks (a restore refuses to
    replace what its safety archive could not save).
    """

    items: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.items.append(message)

    def skip(self, path: str, why: str) -> None:
        """``path`` was not archived: ``why`` ends the warning that names it."""
        self.items.append(f"{path}: {why}")
        self.skipped.append(path)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
