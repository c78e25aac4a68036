"""``dump``: one file's content, to standard output or ``-o FILE``, verified whole before
any byte of it is handed on (``archives.extraction``); a database comes out as its
consistent snapshot, rebuilt through the page deltas of an incremental chain."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import fs
from ..archives import chain
from ..archives.contents import opened
from ..archives.extraction import Extracted, extract, find_record
from ..config import Settings
from ..errors import EXIT_OK, InsufficientSpace, UsageError, write_error
from ..i18n import N_
from ..options import DumpOptions
from ..snapshot.selection import normalized
from ..store import leftovers

SUMMARY = N_("Write one file of an archive, verified.")
ARGUMENTS = """\
  MEMBER           One file of the archive, by its path (state/pending-tasks.json).
"""
USAGE = ("dump ARCHIVE MEMBER [--output=FILE] [--json]",)
OPTIONS = """\
  -o --output=FILE  With dump: write the file there (replaced whole, once
                   verified) instead of to standard output.
"""
STRICT_CONFIG = False
PROGRESS = False
STREAM_CHUNK = 1 << 20


@dataclass
class DumpResult:
    extracted: Extracted
    output: str | None              # the file written; None: the content is ``stream()``ed
    _content: object = None         # the temporary directory holding it (standard output)
    exit_code: int = EXIT_OK

    def stream(self):
        """The verified content, in pieces, for standard output (then the copy goes)."""
        try:
            with open(Path(self._content.name) / "content", "rb") as handle:
                while chunk := handle.read(STREAM_CHUNK):
                    yield chunk
        finally:
            self._content.cleanup()

    def to_json(self) -> dict:
        e = self.extracted
        return {"archive_id": e.archive_id, "path": e.entry.path, "output": self.output,
                "size": e.size, "sha256": e.sha256, "verified_by": e.verified_by,
                "held_by": e.held_by, "database": e.entry.sqlite,
                "mode": e.entry.mode, "mtime_ns": e.entry.mtime_ns, "bytes_read": e.read}


def matches(args: dict) -> bool:
    return bool(args["dump"])


def options(args: dict) -> DumpOptions:
    if args["--json"] and not args["--output"]:
        raise UsageError("dump --json needs -o FILE: the content itself goes to standard output")
    return DumpOptions(args["ARCHIVE"], normalized(args["MEMBER"], "MEMBER"), args["--output"])


def run(settings: Settings, options: DumpOptions, progress=None) -> DumpResult:
    chosen = lambda entry: entry.path == options.path  # noqa: E731  (confinement judges it)
    destination = _destination(options.output) if options.output is not None else None
    with opened(settings, options.reference, chosen) as archive:
        entry = find_record(archive, options.path)
        with leftovers.temporary_directory(leftovers.VERIFY_PREFIX) as workdir:
            if entry.delta is not None:     # a database rebuilt there first
                _room_for(entry, Path(workdir))
            if destination is None:
                content = leftovers.temporary_directory(leftovers.VERIFY_PREFIX)
                try:
                    _room_for(entry, Path(content.name))
                    fd = os.open(Path(content.name) / "content",
                                 os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    try:
                        extracted = extract(archive, entry, fd, Path(workdir),
                                            chain.ancestor_reader(settings))
                    finally:
                        os.close(fd)
                except BaseException:
                    content.cleanup()
                    raise
                return DumpResult(extracted, None, content)
            return DumpResult(_to_file(archive, entry, destination, Path(workdir), settings),
                              options.output)


def _destination(output: str) -> Path:
    """``-o FILE``, checked before anything is read: a regular file (replaced whole) or a
    new name in an existing directory.  A symbolic link there is replaced by the file, never
    written through (it may point anywhere); a device, FIFO or socket is refused (as root,
    ``-o /dev/null`` would otherwise replace the device node itself)."""
    destination = Path(output)
    try:
        found = destination.lstat()
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise UsageError(f"-o {output}: {exc.strerror}") from None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise UsageError(f"-o {output}: is a directory")
    if found is not None and not (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
        raise UsageError(f"-o {output}: not a regular file (dump without -o writes the "
                         "content to standard output)")
    directory = destination.parent
    if not directory.is_dir():
        raise UsageError(f"-o {output}: no such directory {str(directory)!r}")
    return destination


def _room_for(entry, directory: Path) -> None:
    """Refuse before writing when ``directory``'s file system cannot hold the content: the
    size is the signed record's, and the reader never writes more than that."""
    free = shutil.disk_usage(directory).free
    if entry.size > free:
        raise InsufficientSpace(f"{entry.path} is {entry.size} bytes; {directory} has "
                                f"{free} bytes free", path=directory)


def _to_file(archive, entry, destination: Path, workdir: Path, settings) -> Extracted:
    """``-o FILE``: a temporary file beside it, renamed over it once verified and synced."""
    directory = destination.parent
    _room_for(entry, directory)
    try:
        fd, temporary = tempfile.mkstemp(dir=directory,
                                         prefix=f"{destination.name}.{fs.owner_tag()}-",
                                         suffix=".tmp")
    except OSError as exc:
        raise write_error(UsageError, exc, f"-o {destination}: cannot write there",
                          path=directory) from None
    try:
        extracted = extract(archive, entry, fd, workdir, chain.ancestor_reader(settings))
        os.fchmod(fd, entry.mode & 0o777)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(temporary, destination)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    fs.fsync_dir(directory)
    return extracted
