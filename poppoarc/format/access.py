"""Where archive bytes go to and come from: sinks (writing) and sources (reading).

The writer never needs a seekable file.  It talks to an ``ArchiveSink``:

* ``begin(body_offset)`` once, before any body byte: the head frame will take
  the first ``body_offset`` bytes of the archive;
* ``write(data)`` for body and index bytes, in file order from ``body_offset``;
* ``write_head(frame)`` once, at the end, with exactly ``body_offset`` bytes.

A local file implements it by seeking (``FileSink``); the S3 store keeps the
head's part in memory and uploads it last (``poppoarc.store.s3``).

Readers talk to an ``ArchiveSource``: ``read_at(offset, size)`` and
``size()``.  A local file implements it with seek and read (``FileSource``);
the S3 store with ranged GETs and a read-ahead buffer.
"""

from __future__ import annotations

import os

from ..errors import ArchiveError, unreadable_archive


class ArchiveSink:
    """Receives an archive's bytes: the body in order, then the head."""

    def begin(self, body_offset: int) -> None:
        raise NotImplementedError

    def write(self, data) -> None:
        raise NotImplementedError

    def write_head(self, frame: bytes) -> None:
        raise NotImplementedError


class FileSink(ArchiveSink):
    """A seekable, writable binary file: body at ``body_offset``, head at 0."""

    def __init__(self, handle):
        self.handle = handle

    def begin(self, body_offset: int) -> None:
        self.handle.seek(body_offset)

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            written = self.handle.write(view)
            if written is None:         # non-blocking file: not used by poppoarc
                raise OSError("write would block")
            view = view[written:]

    def write_head(self, frame: bytes) -> None:
        end = self.handle.tell()
        self.handle.seek(0)
        self.write(frame)
        self.handle.seek(end)


def as_sink(out) -> ArchiveSink:
    """``out`` itself if it is a sink, else a seekable file wrapped as one."""
    return out if isinstance(out, ArchiveSink) else FileSink(out)


class ArchiveSource:
    """Random access to an archive's bytes; a context manager that closes it."""

    name: object = None
    tally: object = None        # an object whose ``fetched`` counts the bytes read (a store)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; fewer only at the end."""
        raise NotImplementedError

    def size(self) -> int:
        raise NotImplementedError


class FileSource(ArchiveSource):
    """An open binary file.  Reads go through ``handle.read`` (never pread)."""

    def __init__(self, handle, name: object = None):
        self.handle = handle
        self.name = name if name is not None else getattr(handle, "name", None)

    def read_at(self, offset: int, size: int) -> bytes:
        try:
            self.handle.seek(offset)
            data = self.handle.read(size)
            while len(data) < size:
                more = self.handle.read(size - len(data))
                if not more:
                    break
                data += more
        except OSError as exc:      # a bad sector, a vanished network file system
            raise unreadable_archive(f"cannot read the archive: {exc.strerror or exc}",
                                     self.name) from None
        if self.tally is not None:
            self.tally.fetched += len(data)
        return data

    def close(self) -> None:
        self.handle.close()

    def size(self) -> int:
        try:
            return os.fstat(self.handle.fileno()).st_size
        except (AttributeError, OSError):
            return self.handle.seek(0, os.SEEK_END)


def as_source(handle) -> ArchiveSource:
    """``handle`` itself if it is a source, else an open file wrapped as one."""
    return handle if isinstance(handle, ArchiveSource) else FileSource(handle)
