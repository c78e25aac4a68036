"""Argon2id for passphrase stanzas, derived in a helper process.

With the writer's parameters (t = 3, m = 64 MiB) Argon2id costs about 0.3 s
of CPU and 64 MiB of memory, and the binding holds the GIL while it runs.
It runs in a short-lived child process that imports nothing but the KDF, so
its 64 MiB are not added to the peak of the process that holds the whole
program (pack, verify, unpack stay under 100 MiB).  ``pack`` starts it as
soon as it knows a passphrase is configured, so it runs beside the walk of
the installation; the salt is drawn here, before the child starts.  Readers
derive a stanza's key the same way (``derive_apart``).  If the helper cannot
run or fails, the same key is derived in-process.
"""

from __future__ import annotations

import os
import subprocess

from .. import helper_process

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

    def __init__(self, passphrase: bytes, params: dict, derive, salt: bytes | None = None):
        self.salt = os.urandom(16) if salt is None else salt
        self.params = dict(params)
        self._passphrase, self._derive = passphrase, derive
        self._claimed = False
        self._process: subprocess.Popen | None = None
        try:
            self._process = helper_process.start(__name__, {"salt": self.salt.hex(), **self.params},
                                                 payload=passphrase, boot=_HELPER)
        except (OSError, ValueError):
            return

    def claim(self) -> bool:
        """True the first time only."""
        claimed, self._claimed = self._claimed, True
        return not claimed

    def result(self) -> bytes:
        process, self._process = self._process, None
        if process is not None:
            try:
                out, _ = process.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                out = b""
            if process.returncode == 0 and len(out) == 64:
                try:
                    return bytes.fromhex(out.decode("ascii"))
                except ValueError:
                    pass
        return self._derive(self._passphrase, self.salt, self.params)

    def close(self) -> None:
        """Stop an unused helper."""
        process, self._process = self._process, None
        helper_process.stop(process)

    def __del__(self):
        self.close()


def derive_apart(passphrase: bytes, salt: bytes, params: dict, derive) -> bytes:
    """The key of an existing stanza (its salt and parameters), derived in the helper;
    ``derive`` is the in-process fallback."""
    pending = PendingKek(passphrase, {k: params[k] for k in ("time_cost", "memory_kib", "lanes")},
                         derive, salt=salt)
    try:
        return pending.result()
    finally:
        pending.close()
