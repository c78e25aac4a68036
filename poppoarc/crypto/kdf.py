"""Argon2id for passphrase stanzas, derived in a helper process.

With the writer's parameters (t = 3, m = 64 MiB) Argon2id takes a noticeable part of a
second of CPU and 64 MiB of memory, and the binding holds the GIL while it runs.  It
runs in a short-lived child process that imports nothing but the KDF, so its 64 MiB are
not added to the peak of the process that holds the whole program.  ``pack`` starts it
as soon as it knows a passphrase is configured, so it runs beside the walk of the
installation; the salt is drawn here, before the child starts.  Readers derive a
stanza's key the same way (``derive_apart``).  In serial mode (``Parallelism.apart``),
or if the helper cannot run or fails, the same key is derived in-process.
"""

from __future__ import annotations

import os
import subprocess

from ..parallel import Parallelism, process

TIMEOUT = 300       # seconds; the bounded parameters take well under one

_HELPER = r"""
import json, sys
spec = json.loads(sys.stdin.buffer.readline())
sys.path[:] = spec["path"]
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
key = Argon2id(salt=bytes.fromhex(spec["salt"]), length=32, iterations=spec["time_cost"],
               lanes=spec["lanes"], memory_cost=spec["memory_kib"]).derive(sys.stdin.buffer.read())
sys.stdout.write(key.hex())
"""


class PendingKek:
    """One passphrase key-encryption key with a fresh salt, being derived meanwhile.

    ``derive(passphrase, salt, params)`` is the in-process fallback.  A
    pending key is used at most once (``claim``): a salt is never reused.
    """

    def __init__(self, passphrase: bytes, params: dict, derive, salt: bytes | None = None,
                 parallel: Parallelism | None = None):
        self.salt = os.urandom(16) if salt is None else salt
        self.params = dict(params)
        self._passphrase, self._derive = passphrase, derive
        self._claimed = False
        self._process: subprocess.Popen | None = (parallel or Parallelism()).apart(
            __name__, {"salt": self.salt.hex(), **self.params}, payload=passphrase, boot=_HELPER)

    def claim(self) -> bool:
        """True the first time only."""
        claimed, self._claimed = self._claimed, True
        return not claimed

    def result(self) -> bytes:
        helper, self._process = self._process, None
        if helper is not None:
            try:
                out, _ = helper.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.communicate()
                out = b""
            if helper.returncode == 0 and len(out) == 64:
                try:
                    return bytes.fromhex(out.decode("ascii"))
                except ValueError:
                    pass
        return self._derive(self._passphrase, self.salt, self.params)

    def close(self) -> None:
        """Stop an unused helper."""
        pending, self._process = self._process, None
        process.stop(pending)

    def __del__(self):
        self.close()


def derive_apart(passphrase: bytes, salt: bytes, params: dict, derive,
                 parallel: Parallelism | None = None) -> bytes:
    """The key of an existing stanza (its salt and parameters), derived in the helper;
    ``derive`` is the in-process fallback."""
    pending = PendingKek(passphrase, {k: params[k] for k in ("time_cost", "memory_kib", "lanes")},
                         derive, salt=salt, parallel=parallel)
    try:
        return pending.result()
    finally:
        pending.close()
