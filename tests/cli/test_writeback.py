"""Early writeback: large restored files and a growing archive are handed to the disk as
they are written, so the final syncfs or fsync has little left to wait for.  The hint
changes no byte: durability still comes from that final call."""

import os
import sys
from pathlib import Path

import pytest

from poppoarc import fs
from poppoarc.restore import stage
from poppoarc.store import local

from tests.helpers import CLI

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="sync_file_range(2) and /proc/self/fd are Linux's")


@pytest.fixture
def calls(monkeypatch):
    """Every start_writeback call, as (file path, offset, length), still made for real."""
    seen = []
    real = fs.start_writeback

    def spy(fd, offset=0, length=0):
        seen.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(stage.fs, "start_writeback", spy)
    monkeypatch.setattr(local, "start_writeback", spy)
    return seen


@linux_only
def test_start_writeback_is_the_kernel_call_and_changes_no_byte(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(3 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        fs.start_writeback(fd)
        fs.start_writeback(fd, 1 << 20, 4096)
        fs.start_writeback(fd, 10 << 20, 4096)     # past the end: nothing to write
    finally:
        os.close(fd)
    assert fs._sync_file_range[0] is not None
    assert path.read_bytes() == data


def test_without_the_call_nothing_happens(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "_sync_file_range", [])
    monkeypatch.setattr(fs.sys, "platform", "darwin")
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        fs.start_writeback(fd)
    finally:
        os.close(fd)
    assert fs._sync_file_range == [None]
    assert path.read_bytes() == b"x" * 10


@linux_only
def test_an_archive_goes_to_the_disk_in_contiguous_ranges_as_it_grows(cli, installation, calls):
    # random bytes do not compress: the archive grows past two writeback steps
    (installation / "state" / "big.bin").write_bytes(os.urandom(3 * local.WRITEBACK_EVERY))
    packed = cli.pack()
    ranges = [(offset, length) for path, offset, length in calls if ".tmp-" in path]
    assert len(ranges) >= 2
    assert all(length >= local.WRITEBACK_EVERY for _, length in ranges)
    for (offset, length), (following, _) in zip(ranges, ranges[1:]):
        assert following == offset + length     # each byte handed over once, in order
    assert ranges[-1][0] + ranges[-1][1] <= packed["size"]
    assert cli("verify", packed["id"], "-q")[0] == 0


@linux_only
def test_a_restore_hands_over_large_files_only_and_restores_them_whole(
        cli, installation, tmp_path, capsys, calls):
    big = os.urandom(stage.WRITEBACK_AT)
    (installation / "state" / "big.bin").write_bytes(big)
    (installation / "state" / "almost.bin").write_bytes(big[:-1])
    packed = cli.pack()
    calls.clear()
    fresh = tmp_path / "new-machine"
    fresh.mkdir()
    code, _ = CLI(fresh, cli.store, capsys).json("unpack", packed["path"])
    assert code in (0, 1)
    handed = [Path(path).relative_to(Path(path).parents[1]).as_posix()
              for path, _, _ in calls if "/state/" in path]
    assert handed == ["state/big.bin"]
    assert all((offset, length) == (0, 0) for _, offset, length in calls)
    assert (fresh / "state" / "big.bin").read_bytes() == big
    assert (fresh / "state" / "almost.bin").read_bytes() == big[:-1]
