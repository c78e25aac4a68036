"""This machine's own X25519 identity: secrets are always kept.

A secret file (``.env``, ``*.token``) is archived only sealed.  When no passphrase or
recipient is configured, pack does not leave secrets out any more: it seals them (and,
when the configuration asks for encrypted archives, whole archives) to an identity it
creates in the key directory on first use, as it creates the signing key.  Such an
archive opens only with that identity, so it must be copied off the machine:
``keygen --export=FILE`` writes a copy and records that it did (``EXPORT_RECORD``, which
names the identity by key id, so a new identity is not taken for an exported one).
Until then, doctor reports it, and every pack that seals a whole archive to it alone says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import KeyFileError
from ..fs import read_small_file, write_file_durably
from .recipients import IDENTITY_NAME, generate_identity, load_identity

EXPORT_RECORD = "encryption.key.exported"


def public_of(identity: X25519PrivateKey) -> bytes:
    return identity.public_key().public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw)


def key_id(identity: X25519PrivateKey) -> str:
    """The id a recipient stanza names the identity by (spec §11.2)."""
    return hashlib.sha256(public_of(identity)).hexdigest()[:16]


def ensure(key_dir: Path) -> tuple[X25519PrivateKey, bool]:
    """The identity of the key directory, created if there is none: (identity, created)."""
    path = key_dir / IDENTITY_NAME
    if not path.exists():
        try:
            generate_identity(key_dir)
        except KeyFileError:        # another process created it meanwhile: use that one
            return load_identity(path), False
        return load_identity(path), True
    return load_identity(path), False


def export_record(key_dir: Path) -> dict | None:
    """When and where the key directory's identity was exported, or None (never, or an
    earlier identity was)."""
    path = key_dir / IDENTITY_NAME
    try:
        record = json.loads(read_small_file(key_dir / EXPORT_RECORD, 1 << 16))
        current = key_id(load_identity(path))
    except (OSError, ValueError, KeyFileError):
        return None
    if not isinstance(record, dict) or record.get("key_id") != current:
        return None
    return record


def only_here(key_dir: Path) -> bool:
    """The key directory holds an identity that was never exported."""
    return (key_dir / IDENTITY_NAME).exists() and export_record(key_dir) is None


def sealed_only_here(key_dir: Path, secrets) -> bool:
    """What ``secrets`` seal to opens only with the key directory's identity, which was
    never exported (no passphrase, no other recipient)."""
    if secrets.passphrase is not None or not only_here(key_dir):
        return False
    try:
        own = public_of(load_identity(key_dir / IDENTITY_NAME))
    except KeyFileError:
        return False
    return set(secrets.recipients) == {own}


def export(key_dir: Path, destination: Path, *, force: bool = False) -> dict:
    """Copy the key directory's identity to ``destination`` (mode 0600; an existing file
    only with ``force``) and record the export; returns the record."""
    source = key_dir / IDENTITY_NAME
    if not source.exists():
        raise KeyFileError("there is no encryption identity to export (poppoarc keygen "
                           "--encryption creates one; pack does when it needs one)", path=source)
    identity = load_identity(source)
    data = source.read_bytes()
    destination = Path(destination).absolute()
    if destination.resolve() == source.resolve():
        raise KeyFileError("that is the identity itself: export it to another place, off "
                           "this machine", path=destination)
    try:
        mode = os.lstat(destination).st_mode
    except OSError:
        mode = None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        # --force as root renamed the copy over /dev/full: the device gone, nothing exported
        raise KeyFileError("not a regular file (a device, a FIFO, a directory): the copy "
                           "goes to a file, which --force may replace", path=destination)
    if destination.exists() and not force:
        raise KeyFileError("the file exists (use --force to replace it)", path=destination)
    try:
        write_file_durably(destination, data, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot write the copy: {exc.strerror}", path=destination) from None
    record = {"key_id": key_id(identity), "to": str(destination),
              "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_file_durably(key_dir / EXPORT_RECORD, (json.dumps(record) + "\n").encode(), 0o600)
    return record
