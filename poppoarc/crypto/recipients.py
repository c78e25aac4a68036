"""Who can open an encrypted archive: the data key wrapped per recipient.

Each archive has a random 32-byte data key.  It is wrapped once per
recipient into a *stanza* stored in the signed manifest:

- ``argon2id``: a passphrase.  KEK = Argon2id(passphrase, salt16, t, m, p);
  the parameters are in the stanza and bounded on read, so a hostile archive
  cannot demand gigabytes or hours before the key is even tried.
- ``x25519``: a public key from ``poppoarc keygen --encryption``, so a server
  can write archives only the holder of an offline private key can read.
  wrap key = HKDF-SHA256(X25519(ephemeral, recipient), salt = eph || recipient).

``wrapped = AES-256-GCM(KEK, nonce = 0x00*12, data key, aad = context || archive id)``;
a zero nonce is safe because every KEK is used exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import CorruptArchive, KeyFileError, Message, NoKey, WrongKey
from ..fs import publish_file, write_file_durably
from ..i18n import N_
from ..parallel import Parallelism
from . import retired
from .kdf import PendingKek, derive_apart
from .signing import decode_prefixed

ARGON2 = {"time_cost": 3, "memory_kib": 65536, "lanes": 4}       # RFC 9106 second choice
# What a reader accepts before it derives anything (spec §11.2): a hostile stanza at the
# ceilings costs 256 MiB (in the KDF's own process, kdf.py) and 8 passes, not 1 GiB and
# 16 passes; the writer's choice sits well inside.
ARGON2_BOUNDS = {"time_cost": (2, 8), "memory_kib": (19 * 1024, 256 * 1024), "lanes": (1, 8)}
X25519_PREFIX = "x25519:"
IDENTITY_NAME = "encryption.key"
RECIPIENT_NAME = "encryption.pub"
ZERO_NONCE = bytes(12)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, length: int, what: str, path: object) -> bytes:
    try:
        raw = base64.b64decode(str(text), validate=True)
    except ValueError:
        raise CorruptArchive(f"encryption header: {what} is not base64", path=path) from None
    if len(raw) != length:
        raise CorruptArchive(f"encryption header: {what} must be {length} bytes", path=path)
    return raw


def new_data_key() -> bytes:
    return os.urandom(32)


@dataclass(frozen=True)
class Secrets:
    """What this machine can use to open archives (and to write them)."""

    passphrase: bytes | None = None
    identities: tuple[X25519PrivateKey, ...] = ()
    recipients: tuple[bytes, ...] = ()          # X25519 public keys to encrypt to
    pending: PendingKek | None = field(default=None, compare=False, repr=False)
    # where the passphrase's KDF runs (crypto/kdf.py); None: the default two-process
    parallel: Parallelism | None = field(default=None, compare=False, repr=False)
    # identities keygen --rotate replaced: they open what was sealed to them, nothing more
    retired: tuple[X25519PrivateKey, ...] = field(default=(), repr=False)

    @property
    def can_encrypt(self) -> bool:
        return self.passphrase is not None or bool(self.recipients)


def sealing_to_identities(secrets: Secrets) -> Secrets:
    """``secrets`` that can encrypt: with no passphrase and no recipients, the public
    halves of its identities become its recipients (whoever opens with those can open)."""
    if secrets.can_encrypt or not secrets.identities:
        return secrets
    return replace(secrets, recipients=tuple(_public(i) for i in secrets.identities))


def start_passphrase_kdf(secrets: Secrets) -> Secrets:
    """Begin deriving the passphrase stanza's key for the next ``wrap`` (``kdf.py``)."""
    if secrets.passphrase is None or secrets.pending is not None:
        return secrets
    return replace(secrets, pending=PendingKek(secrets.passphrase, ARGON2, _argon2,
                                               parallel=secrets.parallel))


def _argon2(passphrase: bytes, salt: bytes, params: dict) -> bytes:
    return Argon2id(salt=salt, length=32, iterations=params["time_cost"], lanes=params["lanes"],
                    memory_cost=params["memory_kib"]).derive(passphrase)


def _x25519_wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    if shared == bytes(32):
        raise ValueError("all-zero X25519 shared secret")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=b"poppoarc/1 x25519").derive(shared)


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def wrap(data_key: bytes, archive_id: str, secrets: Secrets, argon2: dict | None = None) -> list[dict]:
    """Recipient stanzas for the manifest's ``encryption.recipients``."""
    aad = archive_id.encode("ascii")
    stanzas = []
    if secrets.passphrase is not None:
        params = dict(argon2 or ARGON2)
        pending = secrets.pending
        if pending is not None and pending.params == params and pending.claim():
            salt, kek = pending.salt, pending.result()
        else:
            salt = os.urandom(16)
            kek = _argon2(secrets.passphrase, salt, params)
        stanzas.append({"type": "argon2id", "salt": _b64(salt), **params,
                        "wrapped": _b64(AESGCM(kek).encrypt(ZERO_NONCE, data_key,
                                                            b"poppoarc/1 argon2id" + aad))})
    for recipient in secrets.recipients:
        ephemeral = X25519PrivateKey.generate()
        eph_public = _public(ephemeral)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
        kek = _x25519_wrap_key(shared, eph_public, recipient)
        stanzas.append({"type": "x25519", "key_id": hashlib.sha256(recipient).hexdigest()[:16],
                        "ephemeral": _b64(eph_public),
                        "wrapped": _b64(AESGCM(kek).encrypt(ZERO_NONCE, data_key,
                                                            b"poppoarc/1 x25519" + aad))})
    return stanzas


def check_stanzas(stanzas: object, path: object) -> None:
    """Structural rules readers apply before running any KDF."""
    if not isinstance(stanzas, list) or not stanzas:
        raise CorruptArchive("encryption header has no recipients", path=path)
    passphrases = 0
    for stanza in stanzas:
        kind = stanza.get("type") if isinstance(stanza, dict) else None
        if kind == "argon2id":
            passphrases += 1
            if set(stanza) != {"type", "salt", "wrapped", *ARGON2}:
                raise CorruptArchive("argon2id stanza has unexpected fields", path=path)
            for name, (low, high) in ARGON2_BOUNDS.items():
                value = stanza[name]
                if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                    raise CorruptArchive(f"argon2id {name}={value!r} outside [{low}, {high}]", path=path)
            _unb64(stanza["salt"], 16, "argon2id salt", path)
            _unb64(stanza["wrapped"], 48, "argon2id wrapped key", path)
        elif kind == "x25519":
            if set(stanza) != {"type", "key_id", "ephemeral", "wrapped"}:
                raise CorruptArchive("x25519 stanza has unexpected fields", path=path)
            if not (isinstance(stanza["key_id"], str) and len(stanza["key_id"]) == 16
                    and all(c in "0123456789abcdef" for c in stanza["key_id"])):
                raise CorruptArchive("x25519 stanza key_id is not 16 hex digits", path=path)
            _unb64(stanza["ephemeral"], 32, "x25519 ephemeral key", path)
            _unb64(stanza["wrapped"], 48, "x25519 wrapped key", path)
        else:
            raise CorruptArchive(f"unknown recipient type {kind!r}", path=path)
    if passphrases > 1:
        raise CorruptArchive("more than one passphrase stanza", path=path)


def unwrap(stanzas: list[dict], archive_id: str, secrets: Secrets, path: object) -> bytes:
    """The data key, from the first stanza this machine's secrets open."""
    aad = archive_id.encode("ascii")
    tried = []
    for stanza in stanzas:
        if stanza["type"] == "argon2id" and secrets.passphrase is not None:
            tried.append(Message(N_("the passphrase")))
            kek = derive_apart(secrets.passphrase, _unb64(stanza["salt"], 16, "salt", path),
                               stanza, _argon2, secrets.parallel)
            try:
                return AESGCM(kek).decrypt(ZERO_NONCE, _unb64(stanza["wrapped"], 48, "key", path),
                                           b"poppoarc/1 argon2id" + aad)
            except InvalidTag:
                continue
        if stanza["type"] == "x25519":
            ephemeral = _unb64(stanza["ephemeral"], 32, "ephemeral", path)
            for identity in secrets.identities + secrets.retired:
                public = _public(identity)
                if hashlib.sha256(public).hexdigest()[:16] != stanza["key_id"]:
                    continue
                tried.append(Message(N_("the x25519 key {key_id}"), key_id=stanza["key_id"]))
                try:
                    shared = identity.exchange(X25519PublicKey.from_public_bytes(ephemeral))
                    kek = _x25519_wrap_key(shared, ephemeral, public)
                except ValueError:
                    # a low-order ephemeral key: the shared secret is all zero, the same
                    # for every identity, so the stanza is a forgery whoever signed it
                    raise CorruptArchive("x25519 stanza: the ephemeral key gives an all-zero "
                                         "shared secret", path=path) from None
                try:
                    return AESGCM(kek).decrypt(ZERO_NONCE, _unb64(stanza["wrapped"], 48, "key", path),
                                               b"poppoarc/1 x25519" + aad)
                except InvalidTag:
                    continue
    if tried:
        raise WrongKey(Message(N_("{keys} cannot open this archive"),
                               keys=_listed(tried, N_("{first} and {rest}"))), path=path)
    accepts = _accepted(stanzas)
    if secrets.passphrase is not None or secrets.identities:
        # a key is here, only not one this archive was sealed for: the wrong key (41)
        have = ([Message(N_("the passphrase"))] if secrets.passphrase is not None else []) + [
            Message(N_("the x25519 key {key_id}"),
                    key_id=hashlib.sha256(_public(i)).hexdigest()[:16])
            for i in secrets.identities]
        raise WrongKey(Message(N_("this archive is sealed for {accepts}, not for {have} "
                                  "configured here"), accepts=accepts,
                               have=_listed(have, N_("{first} or {rest}"))), path=path)
    raise NoKey(Message(N_("archive is encrypted (for {accepts}) and no key is available here; "
                           "set POPPO_BACKUP_KEY or configure an identity"), accepts=accepts),
                path=path)


def _accepted(stanzas: list[dict]) -> Message:
    """What opens an archive, as its stanzas say: "a passphrase or x25519 key 0123..."."""
    kinds = {(N_("a passphrase"), "") if s["type"] == "argon2id"
             else (N_("x25519 key {key_id}"), s["key_id"]): None for s in stanzas}
    return _listed([Message(template, key_id=key) for template, key in kinds],
                   N_("{first} or {rest}"))


def _listed(items: list[Message], conjunction: str) -> Message:
    """``a or b or c`` (``conjunction``: "{first} or {rest}") as a Message, each item and
    each conjunction shown in the operator's language."""
    message = items[-1]
    for item in reversed(items[:-1]):
        message = Message(conjunction, first=item, rest=message)
    return message


# -- key material on this machine ----------------------------------------------

def generate_identity(key_dir: Path, *, force: bool = False) -> bytes:
    """Create an X25519 identity (private 0600) and return its public key.  With
    ``force`` (``keygen --encryption --rotate``) an existing one is retired first
    (``retired.py``: kept, dated, still opening the archives sealed to it)."""
    private_path = key_dir / IDENTITY_NAME
    if private_path.exists():
        if not force:
            raise KeyFileError("an encryption identity already exists; 'poppoarc keygen "
                               "--encryption --rotate' replaces it and keeps it for the "
                               "archives sealed to it", path=private_path)
        old = _public(load_identity(private_path))
        retired.retire(key_dir, "encryption", hashlib.sha256(old).hexdigest()[:16],
                       IDENTITY_NAME, RECIPIENT_NAME)
    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    identity = X25519PrivateKey.generate()
    pem = identity.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    try:        # (without --force, never replaces one another process made meanwhile)
        write_file_durably(private_path, pem, 0o600, replace=force)
    except FileExistsError:
        raise KeyFileError("an encryption identity already exists (use --force to replace "
                           "it)", path=private_path) from None
    public = _public(identity)
    recipient = key_dir / RECIPIENT_NAME
    if not publish_file(recipient, (X25519_PREFIX + _b64(public) + "\n").encode("ascii"),
                        0o644) and parse_recipient(recipient.read_text(encoding="ascii"),
                                                   recipient) != public:
        write_file_durably(recipient, (X25519_PREFIX + _b64(public) + "\n").encode("ascii"),
                           0o644)
    return public


def parse_recipient(text: str, source: object) -> bytes:
    return decode_prefixed(text, X25519_PREFIX, "recipient", source)


def load_identity(path: Path) -> X25519PrivateKey:
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(X25519_PREFIX))
    except OSError as exc:
        raise KeyFileError(f"cannot read identity: {exc.strerror}", path=path) from None
    if start in (X25519_PREFIX.encode(), b"ed25519"):
        # a recipient (or a signing public key) where the private identity belongs
        raise KeyFileError(f"this is a public key, not an identity: give the private identity "
                           f"file (the {IDENTITY_NAME} beside the {RECIPIENT_NAME} keygen "
                           f"wrote)", path=path)
    try:
        if path.stat().st_mode & 0o077:
            raise KeyFileError("identity is readable by others; run: chmod 600 " + str(path), path=path)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"cannot read identity: {exc.strerror}", path=path) from None
    except ValueError:
        raise KeyFileError("not an unencrypted PEM private key", path=path) from None
    if not isinstance(key, X25519PrivateKey):
        raise KeyFileError("not an X25519 key", path=path)
    return key


UPSTREAM_KEY_VARIABLE = "BACKUP_ENCRYPTION_KEY"


def upstream_key(text: str) -> bytes:
    """The key of ``BACKUP_ENCRYPTION_KEY``: hex (case and surrounding blanks aside), as
    PoppoBuilder Suite's backup manager reads it; its bytes are the passphrase."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise KeyFileError(f"${UPSTREAM_KEY_VARIABLE} must be a key in hex of at least 16 "
                           "bytes (32 hex digits), as PoppoBuilder Suite reads it")
    return key


def load_secrets(backup: dict, key_dir: Path, environ, warnings,
                 parallel: Parallelism | None = None) -> Secrets:
    """Passphrase, identities and recipients from the environment and config.

    The passphrase comes from ``POPPO_BACKUP_KEY``, else ``BACKUP_ENCRYPTION_KEY`` (the
    PoppoBuilder Suite's own variable: a key in hex, whose bytes are the passphrase),
    else the file named by ``backup.storage.keyFile``; ``backup.storage.encryptionKey``
    (PoppoBuilder's key in the config file) still works but is warned about.
    """
    storage = backup.get("storage", {})
    passphrase = None
    if environ.get("POPPO_BACKUP_KEY"):
        # the bytes as received (spec §11.2): os.environ decoded them with surrogateescape,
        # so bytes that are not UTF-8 come back as they were instead of failing to encode
        passphrase = os.fsencode(environ["POPPO_BACKUP_KEY"])
    elif environ.get(UPSTREAM_KEY_VARIABLE):
        passphrase = upstream_key(environ[UPSTREAM_KEY_VARIABLE])
    elif storage.get("keyFile"):
        key_file = Path(storage["keyFile"]).expanduser()
        try:
            passphrase = key_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise KeyFileError(f"cannot read key file: {exc.strerror}", path=key_file) from None
        if not passphrase:
            raise KeyFileError("key file is empty", path=key_file)
    elif storage.get("encryptionKey"):
        warnings.add("backup.storage.encryptionKey keeps the passphrase in the config file; "
                     "move it to POPPO_BACKUP_KEY or backup.storage.keyFile")
        passphrase = str(storage["encryptionKey"]).encode("utf-8")
    identities = []
    for candidate in (key_dir / IDENTITY_NAME, environ.get("POPPO_BACKUP_IDENTITY"),
                      storage.get("identityFile")):
        if candidate and Path(candidate).expanduser().exists():
            identities.append(load_identity(Path(candidate).expanduser()))
        elif candidate and candidate != key_dir / IDENTITY_NAME:
            raise KeyFileError("identity file does not exist", path=candidate)
    recipients = tuple(parse_recipient(r, "backup.storage.recipients")
                       for r in storage.get("recipients", []))
    former = tuple(load_identity(old.private)
                   for old in retired.retired_keys(key_dir, "encryption") if old.private)
    return Secrets(passphrase, tuple(identities), recipients, parallel=parallel,
                   retired=former)
