"""WriteBehind: the staged tree's calls run in order on their own thread; a failure there
is raised on the reading thread, with its own type."""

import threading

import pytest

from poppoarc.errors import UnsafeArchiveEntry
from poppoarc.restore.writebehind import BATCH_CALLS, WriteBehind


class Recorder:
    def __init__(self, fail_at=None):
        self.calls, self.threads, self.fail_at = [], set(), fail_at

    def _note(self, call):
        self.threads.add(threading.current_thread().name)
        if call == self.fail_at:
            raise UnsafeArchiveEntry(f"refused {call}")
        self.calls.append(call)

    def begin(self, entry):
        self._note(("begin", entry))

    def data(self, entry, chunk):
        self._note(("data", entry, chunk))

    def end(self, entry):
        self._note(("end", entry))


def feed(sink, count):
    for n in range(count):
        sink.begin(n)
        sink.data(n, bytes([n % 256]) * (n % 7))
        sink.end(n)


def test_calls_run_in_order_on_the_writing_thread():
    recorder = Recorder()
    sink = WriteBehind(recorder)
    feed(sink, 3 * BATCH_CALLS)
    sink.flush()
    expected = []
    for n in range(3 * BATCH_CALLS):
        expected += [("begin", n), ("data", n, bytes([n % 256]) * (n % 7)), ("end", n)]
    assert recorder.calls == expected
    assert recorder.threads == {"write-behind"}
    sink.close()


def test_a_failure_is_raised_on_the_reading_thread_and_the_rest_is_dropped():
    recorder = Recorder(fail_at=("begin", 5))
    sink = WriteBehind(recorder)
    with pytest.raises(UnsafeArchiveEntry, match="refused"):
        feed(sink, 4 * BATCH_CALLS)     # raised at a later hand-over ...
        sink.flush()                     # ... or at the latest here
    assert recorder.calls[-1] == ("end", 4)
    sink.close()
    assert not sink._thread.is_alive()


def test_close_without_flush_stops_the_thread():
    recorder = Recorder()
    sink = WriteBehind(recorder)
    feed(sink, 10 * BATCH_CALLS)
    sink.close()
    assert not sink._thread.is_alive()
    assert len(recorder.calls) <= 3 * 10 * BATCH_CALLS
