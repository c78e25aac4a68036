"""Starting a helper process: a fresh interpreter that runs one module's ``run(spec)``.

The pack's helper (``pack_helper``), the index's (``format/index_helper``) and the KDF's
(``crypto/kdf``, with a boot of its own that imports only Argon2id) are started so:
``python -I`` (no environment, no user site, no current directory on the path: the
helper imports this installation's poppoarc, from the ``sys.path`` of the process that
starts it), the spec as one JSON line on its stdin, the temporary files it reads and
writes inherited by descriptor.  Its answer is its stdout.
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
          boot: str | None = None) -> subprocess.Popen:
    """``module.run(spec)`` in a helper process that inherits ``files`` (open files, whose
    descriptors the spec names); ``payload`` follows the spec line on its stdin.  ``boot``
    replaces ``BOOT`` for a helper that must not import poppoarc (the KDF's).  Raises
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
        process.stdin.close()
    except BaseException:
        process.kill()
        process.wait()
        raise
    process.stdin = None        # written and closed: communicate() must not touch it
    return process
