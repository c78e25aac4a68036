"""Keys replaced by ``keygen --rotate``: kept, dated, and still used for what they made.

Replacing the signing key pair must not make every existing archive untrusted, and
replacing an encryption identity must not make every archive sealed to it unreadable: the
old pair is moved (never deleted) into ``KEY_DIR/retired/`` as
``<kind>-<UTC time>-<key id>.key`` and ``.pub``.  A retired signing public key stays
trusted for verifying (``signing.trusted_keys``); a retired identity still opens the
archives sealed to it (``recipients.load_secrets``), but nothing new is signed with, or
sealed to, a retired key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import KeyFileError
from ..fs import fsync_dir

DIRECTORY = "retired"
NAME = re.compile(r"^(?P<kind>signing|encryption)-(?P<when>\d{8}T\d{6}Z)-(?P<key_id>[0-9a-f]{16})"
                  r"\.(?P<part>key|pub)$")


@dataclass(frozen=True)
class RetiredKey:
    kind: str                   # signing | encryption
    key_id: str
    retired_at: str             # UTC, 20261207T175522Z
    private: Path | None
    public: Path | None


def retire(key_dir: Path, kind: str, key_id: str, private_name: str, public_name: str,
           now: datetime | None = None) -> RetiredKey:
    """Move the current pair of ``kind`` into ``KEY_DIR/retired/``, dated; the caller then
    writes the new pair.  The private key moves first: a crash between the two leaves
    no current private key (the next ``pack`` or ``keygen`` makes one), never a lost one."""
    when = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    directory = key_dir / DIRECTORY
    moved: dict[str, Path | None] = {"key": None, "pub": None}
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        for part, name in (("key", private_name), ("pub", public_name)):
            source = key_dir / name
            if not source.exists():
                continue
            target = directory / f"{kind}-{when}-{key_id}.{part}"
            if target.exists():
                raise KeyFileError("a retired key of this name already exists; try again "
                                   "in a second", path=target)
            os.rename(source, target)
            moved[part] = target
        fsync_dir(directory)
        fsync_dir(key_dir)
    except OSError as exc:
        raise KeyFileError(f"cannot keep the old key aside: {exc.strerror}",
                           path=directory) from None
    return RetiredKey(kind, key_id, when, moved["key"], moved["pub"])


def retired_keys(key_dir: Path, kind: str) -> list[RetiredKey]:
    """The retired keys of ``kind``, oldest first."""
    directory = key_dir / DIRECTORY
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyFileError(f"cannot read retired keys: {exc.strerror}", path=directory) from None
    found: dict[tuple[str, str], dict] = {}
    for name in names:
        match = NAME.match(name)
        if match is None or match["kind"] != kind:
            continue
        entry = found.setdefault((match["when"], match["key_id"]), {"key": None, "pub": None})
        entry[match["part"]] = directory / name
    return [RetiredKey(kind, key_id, when, parts["key"], parts["pub"])
            for (when, key_id), parts in sorted(found.items())]
