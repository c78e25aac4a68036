"""``keygen``: create this machine's Ed25519 signing key, or (``--encryption``) an X25519
encryption identity whose recipient other machines seal archives to."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..crypto import identity, recipients, retired, signing
from ..crypto.retired import RetiredKey
from ..errors import EXIT_OK
from ..i18n import N_
from ..options import KeygenOptions

SUMMARY = N_("Create the signing key pair or an X25519 encryption identity (--rotate: "
               "replace one, keeping the old), or export the identity.")
USAGE = ("keygen [--encryption] [--rotate | --force] [--json]",
         "keygen --export=FILE [--force] [--json]")
OPTIONS = """\
  --encryption     With keygen: create an X25519 encryption identity instead.
  --rotate         With keygen: replace the key; the old one is kept (dated) and
                   stays trusted for, or opens, the archives it made.
  --export=FILE    With keygen: copy this machine's encryption identity to FILE (to keep
                   off the machine) and note that it was exported.
  --force          With pack, unpack, schedule: accept a root that is not an installation;
                   with keygen: replace an existing key (or the FILE of --export).
"""
STRICT_CONFIG = True
PROGRESS = False


@dataclass
class KeygenResult:
    kind: str                   # signing | encryption | export
    key_id: str
    public_key: str             # "ed25519:..." or the X25519 recipient ("x25519:...")
    path: Path                  # the private key or identity file
    key_dir: Path
    retired: RetiredKey | None = None     # the key --rotate replaced, where it is kept
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        old = self.retired
        return {"kind": self.kind, "key_id": self.key_id, "public_key": self.public_key,
                "path": str(self.path),
                "retired": None if old is None else {
                    "key_id": old.key_id, "retired_at": old.retired_at,
                    "path": str(old.private) if old.private else None,
                    "public_path": str(old.public) if old.public else None}}


def matches(args: dict) -> bool:
    return bool(args["keygen"])


def options(args: dict) -> KeygenOptions:
    return KeygenOptions(encryption=bool(args["--encryption"]), force=bool(args["--rotate"] or args["--force"]),
                         export=args["--export"])


def run(settings: Settings, options: KeygenOptions, progress=None) -> KeygenResult:
    if options.export is not None:
        record = identity.export(settings.key_dir, Path(options.export), force=options.force)
        public = identity.public_of(recipients.load_identity(
            settings.key_dir / recipients.IDENTITY_NAME))
        return KeygenResult("export", record["key_id"],
                            recipients.X25519_PREFIX + base64.b64encode(public).decode("ascii"),
                            Path(record["to"]), settings.key_dir)
    kind = "encryption" if options.encryption else "signing"
    before = {k.key_id for k in retired.retired_keys(settings.key_dir, kind)}
    if options.encryption:
        public = recipients.generate_identity(settings.key_dir, force=options.force)
        result = KeygenResult("encryption", hashlib.sha256(public).hexdigest()[:16],
                              recipients.X25519_PREFIX + base64.b64encode(public).decode("ascii"),
                              settings.key_dir / recipients.IDENTITY_NAME, settings.key_dir)
    else:
        key = signing.generate(settings.key_dir, force=options.force)
        result = KeygenResult("signing", key.key_id, signing.format_public(key.public),
                              settings.key_dir / signing.PRIVATE_NAME, settings.key_dir)
    new = [k for k in retired.retired_keys(settings.key_dir, kind) if k.key_id not in before]
    result.retired = new[-1] if new else None
    return result
