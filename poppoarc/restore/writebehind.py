"""Write-behind: a restore's file system work on a thread of its own.

Writing the staged tree (open, write, fchmod, utime, close: system calls that
release the GIL) can overlap reading the archive (decompress, hash).
``WriteBehind`` wraps the staged tree's ``MemberSink`` and runs its calls, in
order, on one thread, while the reader goes on with the next chunk.  The overlap pays
where the kernel's writes are slow and the files large; with many small files the two
threads mostly trade the GIL (bench/RESULTS.md has the measurements).  In serial mode
(``behind``) the calls are made in place.

Calls are handed over in batches (a list append each, a queue operation per
batch) because a restore of 100,000 small files makes 300,000 of them.  The
bytes in flight are bounded, so memory stays flat.  A failure on the writing
thread is raised on the reading thread at its next hand-over or at
``flush``, with its own exception type; the staging area is discarded then,
as for any failure, so nothing half-written survives.
"""

from __future__ import annotations

import queue
import threading

from ..format.reader import MemberSink
from ..parallel import Parallelism

BATCH_BYTES = 1 << 20       # hand over at least this much content ...
BATCH_CALLS = 512           # ... or this many calls (small files)
MAX_IN_FLIGHT = 8 << 20     # what is handed over and not yet written costs at most this:
CALL_COST = 1 << 10         # its content, and this much per call for the record it holds


def behind(sink: MemberSink, parallel: Parallelism) -> MemberSink:
    """``sink`` written behind (two-process), or in place (serial); either way with the
    ``flush`` and ``close`` of ``WriteBehind``."""
    return WriteBehind(sink) if parallel.processes else InPlace(sink)


class InPlace(MemberSink):
    """``WriteBehind``'s interface over calls made on the reading thread."""

    def __init__(self, sink: MemberSink):
        self.sink = sink
        self.begin, self.data, self.end = sink.begin, sink.data, sink.end

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class WriteBehind(MemberSink):
    """Runs ``sink``'s begin/data/end calls in order on a writing thread."""

    def __init__(self, sink: MemberSink):
        self.sink = sink
        self._batch: list = []
        self._bytes = 0
        self._queue: queue.Queue = queue.Queue()
        self._room = threading.Condition()
        self._in_flight = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    # -- the reading side ----------------------------------------------------------
    def begin(self, entry) -> None:
        self._batch.append((self.sink.begin, entry))

    def data(self, entry, chunk: bytes) -> None:
        self._batch.append((self.sink.data, entry, chunk))
        self._bytes += len(chunk)
        if self._bytes >= BATCH_BYTES:
            self._hand_over()

    def end(self, entry) -> None:
        self._batch.append((self.sink.end, entry))
        if len(self._batch) >= BATCH_CALLS:
            self._hand_over()

    def flush(self) -> None:
        """Wait until every call so far has run; raise the writing thread's failure."""
        self._hand_over()
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._raise()

    def close(self) -> None:
        """Stop the writing thread (after a failure too); calls not yet run are dropped."""
        if self._thread.is_alive():
            self._batch = []
            self._error = self._error or _Stopped()
            while True:     # drop what waits: the stop marker is next
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(None)
            self._thread.join()

    # -- internals -----------------------------------------------------------------
    def _hand_over(self) -> None:
        self._raise()
        if self._batch:
            cost = self._bytes + CALL_COST * len(self._batch)
            with self._room:        # wait for the writing thread to catch up
                while self._in_flight and self._in_flight + cost > MAX_IN_FLIGHT:
                    self._room.wait()
                self._in_flight += cost
            batch, self._batch, self._bytes = self._batch, [], 0
            self._queue.put((batch, cost))

    def _raise(self) -> None:
        if self._error is not None and not isinstance(self._error, _Stopped):
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):   # flush(): everything before it ran
                item.set()
                continue
            batch, cost = item
            try:
                if self._error is None:             # after a failure: drop the rest
                    for call in batch:
                        call[0](*call[1:])
            except BaseException as exc:            # raised on the reading thread
                self._error = exc
            finally:
                with self._room:
                    self._in_flight -= cost
                    self._room.notify()


class _Stopped(Exception):
    """close() was called: the writing thread drops what is left."""
