"""The read-ahead paths of a reader: frames decompressed on a thread of their own, and
database checks in the background.  Same bytes and same errors as the serial path, and
no thread left behind."""

import hashlib
import io
import os
import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyzstd import CParameter, compress

from poppoarc.errors import CorruptArchive, TruncatedArchive
from poppoarc.format.frames import READ_SIZE, FrameStream
from poppoarc.snapshot.sqlite import BackgroundChecks


def frames(*contents: bytes) -> bytes:
    """Frames as poppoarc writes them: with a content checksum (readers require it, §4.1)."""
    return b"".join(compress(c, {CParameter.checksumFlag: 1}) for c in contents)


def drain(stream: FrameStream, step: int) -> bytes:
    out = []
    while True:
        piece = stream.read_some(step)
        if not piece:
            return b"".join(out)
        out.append(bytes(piece))


def frame_readers() -> int:
    return sum(t.name == "frame-reader" for t in threading.enumerate())


@settings(max_examples=25, deadline=None)
@given(contents=st.lists(st.binary(max_size=3000), min_size=1, max_size=6),
       big=st.booleans(), step=st.integers(1, 5000))
def test_ahead_yields_the_same_bytes_and_hash_as_the_serial_stream(contents, big, step):
    if big:     # several decompressed pieces per frame
        contents = contents + [os.urandom(64) * (READ_SIZE // 32)]
    data = frames(*contents)
    results = []
    for ahead in (False, True):
        hasher = hashlib.sha256()
        with FrameStream(io.BytesIO(data), 0, len(data), "a", hasher, ahead=ahead) as stream:
            results.append((drain(stream, step), hasher.digest(), stream.at_end()))
    assert results[0] == results[1]
    assert results[0][0] == b"".join(contents)
    assert results[0][1] == hashlib.sha256(data).digest()


@pytest.mark.parametrize("damage, error", [
    (lambda d: d[:-7], CorruptArchive),     # a frame cut by its range: the layout is wrong
    (lambda d: d[:4] + b"\xff" + d[5:], CorruptArchive),          # reserved header bit
    (lambda d: d + b"junk", CorruptArchive),                    # not a zstd frame
])
def test_ahead_raises_the_serial_streams_error_with_its_type(damage, error):
    data = damage(frames(os.urandom(200_000), b"tail" * 1000))
    for ahead in (False, True):
        with pytest.raises(error) as caught:
            with FrameStream(io.BytesIO(data), 0, len(data), "a", ahead=ahead) as stream:
                drain(stream, 4096)
        assert type(caught.value) is error
    assert frame_readers() == 0


@pytest.mark.parametrize("ahead", [False, True])
def test_a_file_shorter_than_its_range_is_truncated(ahead):
    """Only a file that ends before the signed range is truncated (§7.1)."""
    data = frames(os.urandom(200_000), b"tail" * 1000)
    with pytest.raises(TruncatedArchive):
        with FrameStream(io.BytesIO(data[:-7]), 0, len(data), "a", ahead=ahead) as stream:
            drain(stream, 4096)


def test_closing_half_way_stops_the_reading_thread():
    data = frames(*[os.urandom(1 << 20) for _ in range(8)])   # far more than fits ahead
    with FrameStream(io.BytesIO(data), 0, len(data), "a", ahead=True) as stream:
        assert len(stream.read_some(10)) == 10
        assert frame_readers() == 1
    assert frame_readers() == 0


def make_db(path, broken=False):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE)")
    conn.executemany("INSERT INTO t (b) VALUES (?)", [(f"row {n}",) for n in range(2000)])
    conn.commit()
    if broken:      # the unique index loses its rows: integrity_check reports it
        conn.execute("PRAGMA writable_schema=ON")
        page = conn.execute("SELECT rootpage FROM sqlite_master WHERE type='index'").fetchone()[0]
        conn.commit()
        conn.close()
        size = 4096
        with open(path, "r+b") as f:
            f.seek((page - 1) * size)
            f.write(b"\x0d" + bytes(size - 1))
        return
    conn.close()


def test_background_checks_report_each_failing_database_by_label(tmp_path):
    good, bad = tmp_path / "good.db", tmp_path / "bad.db"
    make_db(good)
    make_db(bad, broken=True)
    checks = BackgroundChecks(quick=False)
    checks.submit("data/good.db", good)
    checks.submit("data/bad.db", bad)
    failures = checks.failures()
    checks.close()
    assert [label for label, _ in failures] == ["data/bad.db"]
    assert failures[0][1]
    assert good.exists() and bad.exists()


def test_background_checks_remove_checked_files_and_bound_the_backlog(tmp_path, monkeypatch):
    running, seen = threading.Event(), []
    release = threading.Event()

    def slow(path, quick, private=False):
        seen.append(os.path.basename(path))
        running.set()
        release.wait(5)
        return []

    monkeypatch.setattr("poppoarc.snapshot.sqlite.integrity_errors", slow)
    checks = BackgroundChecks(quick=True, max_bytes=100, remove=True)
    files = []
    for n in range(3):
        files.append(tmp_path / f"{n}.db")
        files[-1].write_bytes(b"x")
    checks.submit("0", files[0], 60)
    running.wait(5)
    checks.submit("1", files[1], 30)    # 90 bytes waiting: fits
    assert len(checks._pending) == 2
    release.set()
    checks.submit("2", files[2], 30)    # 120 would not: the oldest is waited for first
    assert not files[0].exists()
    assert checks.failures() == []
    checks.close()
    assert seen == ["0.db", "1.db", "2.db"]
    assert not any(f.exists() for f in files)


@pytest.mark.parametrize("ahead", [False, True])
def test_a_frame_without_a_content_checksum_is_refused(ahead):
    """§4.1: the stock zstd decoder accepts it; a poppoarc reader must not."""
    data = frames(b"checked") + compress(b"unchecked", {CParameter.checksumFlag: 0})
    with FrameStream(io.BytesIO(data), 0, len(data), "a", ahead=ahead) as stream:
        with pytest.raises(CorruptArchive, match="no content checksum"):
            drain(stream, 1 << 20)
