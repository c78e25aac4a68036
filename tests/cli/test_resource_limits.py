"""A limit of this process or machine (open files, memory, threads) ends in exit 9 with one
line naming the limit, never in exit 70 "please report it", and leaves nothing half-written
(follow-up F11)."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys

import pytest

from poppoarc import errors
from poppoarc.errors import ResourceLimit, resource_limit
from poppoarc.store.local import SUFFIX


def _with_open_files(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
    return apply


def _run(cli, *args, limit):
    return subprocess.run([sys.executable, "-m", "poppoarc", "--root", str(cli.root),
                           "--store", str(cli.store), *args], capture_output=True, text=True,
                          env={**os.environ, "POPPOARC_PROGRESS": "none"},
                          preexec_fn=_with_open_files(limit))


def _temporaries(store):
    return [n for n in os.listdir(store) if n.startswith(".") and not n.endswith(".json")
            and not n.endswith(".lock")]


def test_too_many_open_files_is_exit_9_naming_the_limit(cli):
    archive = cli.pack()["id"]
    failed = 0
    for limit in (12, 16, 20, 24):      # each dies at another place (qa: 20 for unpack)
        for args in (("pack",), ("unpack", archive)):
            done = _run(cli, *args, limit=limit)
            if done.returncode in (0, 1):
                continue                # enough at this limit
            assert done.returncode == 9, (limit, args, done.stderr)
            failed += 1
            lines = done.stderr.strip().splitlines()
            assert lines[-1] == f"poppoarc: error: too many open files: raise ulimit -n " \
                                f"(now {limit})", done.stderr
            assert "internal error" not in done.stderr
            assert _temporaries(cli.store) == []
    assert failed >= 2          # the limits above do stop pack and unpack
    assert _run(cli, "verify", archive, limit=1024).returncode == 0


def test_out_of_memory_and_a_thread_that_cannot_start_are_exit_9(cli, monkeypatch, capsys):
    cli.pack()
    from poppoarc.pack import steps

    for failure, words in ((MemoryError(), "out of memory"),
                           (RuntimeError("can't start new thread"), "cannot start a thread")):
        def fail(run, failure=failure):
            raise failure
        monkeypatch.setattr(steps, "_write_body", fail)
        code, out, err = cli("pack")
        assert code == 9 and words in err and "internal error" not in err, err
        assert _temporaries(cli.store) == []
        assert len(list(cli.store.glob("*" + SUFFIX))) == 1


def test_what_is_a_limit_and_what_is_not():
    assert resource_limit(OSError(errno.EMFILE, "Too many open files")).exit_code == 9
    assert "system" in str(resource_limit(OSError(errno.ENFILE, "x")))
    wrapped = errors.ArchiveError("cannot open archive")
    wrapped.__context__ = OSError(errno.EMFILE, "Too many open files")
    assert isinstance(resource_limit(wrapped), ResourceLimit)
    assert "ulimit -v" in str(resource_limit(MemoryError())) or \
        str(resource_limit(MemoryError())) == "out of memory: free memory"
    assert resource_limit(RuntimeError("something else")) is None
    assert resource_limit(OSError(errno.EACCES, "Permission denied")) is None
    assert resource_limit(ValueError("not enough memory")) is None


def test_a_drill_that_runs_out_of_open_files_is_recorded_as_that(cli):
    """A drill at ulimit -n 20 failed reading its own scratch root's restore journal: it was
    recorded, and shown by doctor, as 'unreadable restore journal' (with 'verify ID names
    what is damaged' as the fix), as if an archive were damaged.  The limit is named."""
    import json

    cli.pack()
    stopped = 0
    for limit in (16, 20, 24):
        done = _run(cli, "drill", limit=limit)
        if done.returncode in (0, 1):
            continue
        stopped += 1
        assert done.returncode == 9, (limit, done.stderr)
        code, report = cli.json("doctor")
        check = next(c for c in report["checks"] if c["id"] == "drill")
        assert check["status"] == "fail"
        assert "too many open files" in check["message"], check
        assert "journal" not in check["message"], check
    assert stopped
