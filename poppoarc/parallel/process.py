"""A helper process: a fresh interpreter that runs one module's ``run(spec)``.

The helpers (a target's share of a pack, a directory walked apart, the last part of a
large index, the KDF with a boot of its own that imports only Argon2id) are started so:
``python -I`` (no environment, no user site, no current directory on the path: the helper
imports this installation's poppoarc, from the ``sys.path`` of the process that starts
it), the spec as one JSON line on its stdin, the temporary files it reads and writes
inherited by descriptor.  Its answer is its stdout: the JSON of what ``run`` returned (a
hex key for the KDF's).  A ``run`` that is a generator reports once first (what it
yields, one JSON line) and is then told its share on its stdin (``tell``); what it
returns is its answer.

This is a hand-made protocol rather than ``multiprocessing``: a spawned or forkserver
child imports the main module again (``poppoarc.__main__``, hence the whole command
line), which more than doubles a helper's start and adds to its memory (measured: the
commit that made this module); the cost models of the helpers count a start as a few
thousand records, and the KDF's helper exists to import nothing but Argon2id.
"""

from __future__ import annotations

import json
import subprocess
import sys

BOOT = r"""
import importlib, json, sys
spec = json.loads(sys.stdin.buffer.readline())
sys.path[:] = spec["path"]
work = importlib.import_module(spec["module"]).run(spec)
if hasattr(work, "send"):           # reports, then is told its share (or nothing)
    sys.stdout.write(json.dumps(next(work)) + "\n")
    sys.stdout.flush()
    line = sys.stdin.buffer.readline()
    try:
        work.send(json.loads(line) if line else None)
        raise RuntimeError("a helper reports once")
    except StopIteration as done:
        work = done.value
sys.stdout.write(json.dumps(work))
"""


def start(module: str, spec: dict, files: list = (), payload: bytes = b"",
          boot: str | None = None, keep_stdin: bool = False) -> subprocess.Popen:
    """``module.run(spec)`` in a helper process that inherits ``files`` (open files, whose
    descriptors the spec names); ``payload`` follows the spec line on its stdin.  ``boot``
    replaces ``BOOT`` for a helper that must not import poppoarc (the KDF's).
    ``keep_stdin``: its stdin stays open for a later message (``tell``).  Raises
    OSError or ValueError when it cannot start, with nothing left running."""
    if not sys.executable:
        raise OSError("no interpreter to start a helper with")
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", BOOT if boot is None else boot], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        pass_fds=[each.fileno() for each in files])
    try:
        process.stdin.write(json.dumps({**spec, "path": sys.path, "module": module}).encode()
                            + b"\n" + payload)
        if keep_stdin:
            process.stdin.flush()
            return process
        process.stdin.close()
    except BaseException:
        process.kill()
        process.wait()
        raise
    process.stdin = None        # written and closed: communicate() must not touch it
    return process


class ProcessHelper:
    """A helper running in its own process (``Parallelism.helper`` in two-process mode)."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def report(self) -> dict | None:
        """Wait for its report: the object, or None if it ended or wrote garbage."""
        try:
            line = self.process.stdout.readline()
            summary = json.loads(line)
        except (OSError, ValueError):
            return None
        return summary if isinstance(summary, dict) else None

    def tell(self, message: dict) -> bool:
        """Its second and last message (one JSON line, then end of input); False if it can
        no longer read it."""
        return tell(self.process, message)

    def answer(self) -> dict | None:
        """Wait for it: its answer, or None if it failed in any way."""
        return answer(self.process)

    def stop(self) -> None:
        stop(self.process)


def tell(process: subprocess.Popen, message: dict) -> bool:
    try:
        process.stdin.write(json.dumps(message).encode() + b"\n")
        process.stdin.close()
    except OSError:         # it ended: its answer says how
        return False
    finally:
        process.stdin = None
    return True


def answer(process: subprocess.Popen) -> dict | None:
    """Wait for a helper: its answer, or None if it failed in any way."""
    out, _ = process.communicate()
    try:
        summary = json.loads(out) if process.returncode == 0 else None
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def stop(process: subprocess.Popen | None) -> None:
    """End a helper whose answer is no longer wanted (or reap one that ended)."""
    if process is None:
        return
    if process.stdin is not None:       # (a helper that never got its second message)
        try:
            process.stdin.close()
        except OSError:
            pass
        process.stdin = None
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:      # (already closed if ``answer`` read it)
        process.stdout.close()
