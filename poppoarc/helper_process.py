"""Starting a helper process: a fresh interpreter that runs one module's ``run(spec)``.

The pack's helpers (``pack_helper``, ``pack_subtree``), the index's
(``format/index_helper``) and the KDF's (``crypto/kdf``, with a boot of its own that
imports only Argon2id) are started so: ``python -I`` (no environment, no user site, no
current directory on the path: the helper imports this installation's poppoarc, from the
``sys.path`` of the process that starts it), the spec as one JSON line on its stdin, the
temporary files it reads and writes inherited by descriptor.  Its answer is its stdout: a
JSON object (``reply``, ``answer``) for those that run poppoarc's code, a hex key for the
KDF's.  ``pack_subtree``'s helper also reports once before its answer (``report``,
``read_report``) and is then told its share on its stdin (``tell``).
"""

from __future__ import annotations

import json
import subprocess
import sys

BOOT = r"""
import importlib, json, sys
spec = json.loads(sys.stdin.buffer.readline())
sys.path[:] = spec["path"]
sys.exit(importlib.import_module(spec["module"]).run(spec))
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


def tell(process: subprocess.Popen, message: dict) -> bool:
    """Send a helper started with ``keep_stdin`` its second and last message (one JSON
    line, then end of input); False if it can no longer read it."""
    try:
        process.stdin.write(json.dumps(message).encode() + b"\n")
        process.stdin.close()
    except OSError:         # it ended: its answer says how
        return False
    finally:
        process.stdin = None
    return True


def report(summary: dict) -> None:
    """In a helper: a first answer, before its last (one JSON line on stdout)."""
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()


def read_report(process: subprocess.Popen) -> dict | None:
    """Wait for a helper's ``report``: the object, or None if it ended or wrote garbage."""
    try:
        line = process.stdout.readline()
        summary = json.loads(line)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def reply(summary: dict) -> int:
    """In the helper: its answer, as one JSON object on stdout; the exit status."""
    sys.stdout.write(json.dumps(summary))
    return 0


def answer(process: subprocess.Popen) -> dict | None:
    """Wait for the helper: its ``reply``, or None if it failed in any way."""
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
