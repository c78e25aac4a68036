"""A file that changes while pack reads it: read again whole when it is small, else
flagged ``changed`` in its index record, and verify, inspect and the restore plan name
it (issue 24, 6).  It used to be padded with zeros to its first size, restored so, with
only a warning at pack time."""

import os

import pytest

from poppoarc.format import writer as writer_module


def _path_of(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def rewrite_while_read(monkeypatch):
    """``rewrite_while_read(path, times)``: the application rewrites ``path`` (shorter,
    new content) just before each of pack's first ``times`` reads of it."""

    def arrange(path, times):
        real = writer_module._read_small
        seen = {"reads": 0}

        def reading(fd, size, offset):
            if _path_of(fd) == str(path) and seen["reads"] < times:
                seen["reads"] += 1
                with open(path, "r+b") as handle:
                    handle.truncate(0)
                    # each time a size other than the last fstat's: it never holds still
                    handle.write(b'{"rewritten": %d}' % 10 ** seen["reads"])
            return real(fd, size, offset)

        monkeypatch.setattr(writer_module, "_read_small", reading)
        return seen

    return arrange


def _entry(cli, archive, path):
    code, inspected = cli.json("inspect", archive, "--entries")
    assert code == 0
    return inspected, next(e for e in inspected["entries"] if e["path"] == path)


def test_a_small_file_rewritten_while_read_is_read_again_whole(cli, installation,
                                                               rewrite_while_read):
    path = installation / "state/running-tasks.json"
    seen = rewrite_while_read(path, 1)
    packed = cli.pack()
    assert seen["reads"] == 1
    inspected, entry = _entry(cli, packed["id"], "state/running-tasks.json")
    assert "changed" not in entry and inspected["changed_while_packed"] == []
    assert entry["size"] == len(b'{"rewritten": 10}') == path.stat().st_size
    assert entry["mtime_ns"] == path.stat().st_mtime_ns
    assert not any("changed while being read" in w for w in packed["warnings"])
    path.write_text("vandalized")
    code, result = cli.json("unpack", packed["id"], "--targets", "state", "--skip-backup")
    assert code in (0, 1) and path.read_bytes() == b'{"rewritten": 10}'


def test_a_file_that_never_holds_still_is_flagged_and_named(cli, installation,
                                                            rewrite_while_read):
    path = installation / "state/running-tasks.json"
    rewrite_while_read(path, 99)
    packed = cli.pack()
    assert "state/running-tasks.json: changed while being read; archived as read" \
        in packed["warnings"]
    inspected, entry = _entry(cli, packed["id"], "state/running-tasks.json")
    assert entry["changed"] is True
    assert inspected["changed_while_packed"] == ["state/running-tasks.json"]
    code, out, _ = cli("inspect", packed["id"])
    assert "1 file(s) changed while they were packed" in out and \
        "    state/running-tasks.json" in out
    code, verified = cli.json("verify", packed["id"])
    assert code == 0 and verified["changed_while_packed"] == ["state/running-tasks.json"]
    code, out, _ = cli("verify", packed["id"])
    assert "state/running-tasks.json" in out
    code, planned = cli.json("unpack", packed["id"], "--dry-run")
    assert planned["plan"]["changed_while_packed"] == ["state/running-tasks.json"]
    assert any("1 file(s) changed while they were packed and are restored as read" in w
               and "state/running-tasks.json" in w for w in planned["warnings"])


def test_a_large_file_that_shrinks_while_read_is_flagged(cli, installation, monkeypatch):
    """Read in 4 MiB calls, it is written as it streams: it cannot be read again."""
    path = installation / "state/big.bin"
    path.write_bytes(os.urandom(10 << 20))
    real = os.readv
    seen = {"calls": 0}

    def shrinking(fd, buffers):
        if _path_of(fd) == str(path):
            seen["calls"] += 1
            if seen["calls"] == 2:
                os.truncate(path, 5 << 20)
        return real(fd, buffers)

    monkeypatch.setattr(writer_module.os, "readv", shrinking)
    packed = cli.pack()
    inspected, entry = _entry(cli, packed["id"], "state/big.bin")
    assert entry["changed"] is True and entry["size"] == 10 << 20
    code, verified = cli.json("verify", packed["id"])
    assert code == 0 and verified["changed_while_packed"] == ["state/big.bin"]
    code, planned = cli.json("unpack", packed["id"], "--dry-run")
    assert planned["plan"]["changed_while_packed"] == ["state/big.bin"]
