"""Ed25519 signing keys, the signature document, and the trust decision.

The archive embeds the signer's public key for information only: trust comes
from keys pinned on this machine (the local key and ``backup.signing.
trustedKeys``), never from the archive itself (spec/FORMAT.md §6).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import KeyFileError, TamperedArchive, UntrustedSigner
from ..fs import publish_file
from . import retired

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"
PUBLIC_PREFIX = "ed25519:"


def key_id(public: bytes) -> str:
    """Short, stable name of a public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:16]


def format_public(public: bytes) -> str:
    return PUBLIC_PREFIX + base64.b64encode(public).decode("ascii")


def decode_prefixed(text: str, prefix: str, what: str, source: object = None) -> bytes:
    """Decode ``<prefix><base64 of 32 bytes>``, the text form of every poppoarc public key."""
    text = text.strip()
    if not text.startswith(prefix):
        raise KeyFileError(f"{what} must start with '{prefix}'", path=source)
    try:
        raw = base64.b64decode(text[len(prefix):], validate=True)
    except ValueError:
        raise KeyFileError(f"{what} is not valid base64", path=source) from None
    if len(raw) != 32:
        raise KeyFileError(f"{what} is not 32 bytes", path=source)
    return raw


def parse_public(text: str, source: object = None) -> bytes:
    """Decode ``ed25519:<base64>`` into 32 raw bytes."""
    return decode_prefixed(text, PUBLIC_PREFIX, "public key", source)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign_document(self, message: bytes) -> dict:
        """The signature document stored as ``.poppoarc/manifest.sig``."""
        return {
            "alg": "ed25519",
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public).decode("ascii"),
            "signature": base64.b64encode(self.private.sign(message)).decode("ascii"),
        }


def _public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


def generate(key_dir: Path, *, force: bool = False) -> SigningKey:
    """Create a new key pair in ``key_dir`` (0700) with the private key 0600.  With
    ``force`` (``keygen --rotate``), an existing pair is retired first (``retired.py``:
    kept, dated, its public key still trusted for the archives it signed)."""
    private_path = key_dir / PRIVATE_NAME
    if private_path.exists() or (key_dir / PUBLIC_NAME).exists():
        if not force:
            raise KeyFileError("a signing key already exists; 'poppoarc keygen --rotate' "
                               "replaces it and keeps it trusted for its archives",
                               path=private_path)
        retired.retire(key_dir, "signing", current_key_id(key_dir), PRIVATE_NAME, PUBLIC_NAME)
    try:
        key_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(key_dir, 0o700)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        if not publish_file(private_path, pem, 0o600):
            # another poppoarc created the key meanwhile (two packs on a new machine):
            # its key is the one, never this one (which nothing will trust)
            key = load(key_dir)
        else:
            key = SigningKey(private, _public_bytes(private))
        publish_file(key_dir / PUBLIC_NAME, (format_public(key.public) + "\n").encode("ascii"),
                     0o644)
    except OSError as exc:
        raise KeyFileError(f"cannot write key: {exc.strerror}", path=key_dir) from None
    return key


def load(key_dir: Path) -> SigningKey:
    """Load the private key; refuse one that others can read."""
    private_path = key_dir / PRIVATE_NAME
    try:
        mode = private_path.stat().st_mode
        pem = private_path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError("no signing key (run 'poppoarc keygen')", path=private_path) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key: {exc.strerror}", path=private_path) from None
    if mode & 0o077:
        raise KeyFileError(f"private key is readable by others (mode {mode & 0o777:04o}); "
                           "run: chmod 600 " + str(private_path), path=private_path)
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise KeyFileError("not an unencrypted PEM private key", path=private_path) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError("not an Ed25519 key", path=private_path)
    return SigningKey(private, _public_bytes(private))


def load_or_generate(key_dir: Path) -> tuple[SigningKey, bool]:
    """The local key, created on first use; the flag says it was just created.  A key
    whose ``signing.pub`` is another key's is refused: what it signs would not be trusted
    here (verify trusts the key in ``signing.pub``)."""
    if (key_dir / PRIVATE_NAME).exists():
        key = load(key_dir)
        check_public_file(key_dir, key)
        return key, False
    return generate(key_dir), True


def check_public_file(key_dir: Path, key: SigningKey, repair: bool = True) -> None:
    """KeyFileError when ``signing.pub`` is not ``key``'s public key; a missing one is
    written again (``repair``: doctor only looks)."""
    public_path = key_dir / PUBLIC_NAME
    try:
        text = public_path.read_text(encoding="ascii")
    except FileNotFoundError:
        if not repair:
            return
        try:
            publish_file(public_path, (format_public(key.public) + "\n").encode("ascii"), 0o644)
        except OSError as exc:
            raise KeyFileError(f"cannot write key: {exc.strerror}", path=public_path) from None
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key: {getattr(exc, 'strerror', None) or exc}",
                           path=public_path) from None
    if key_id(parse_public(text, public_path)) != key.key_id:
        raise KeyFileError(f"is the public key {key_id(parse_public(text, public_path))}, not "
                           f"that of {PRIVATE_NAME} (key {key.key_id}): what it signs would "
                           f"not be trusted; put back the matching {PUBLIC_NAME}, or delete it "
                           f"to have it written again", path=public_path)


def current_key_id(key_dir: Path) -> str:
    """The key id of the local pair (from its public key, else its private key)."""
    public_path = key_dir / PUBLIC_NAME
    if public_path.exists():
        return key_id(parse_public(public_path.read_text(encoding="ascii"), public_path))
    return load(key_dir).key_id


def trusted_keys(key_dir: Path, extra: list[str]) -> dict[str, bytes]:
    """Pinned public keys by key id: the local key plus configured ones."""
    return {key: public for key, (public, _) in key_roles(key_dir, extra).items()}


def key_roles(key_dir: Path, extra: list[str]) -> dict[str, tuple[bytes, str]]:
    """Pinned public keys by key id, with where each comes from: "local" (this
    machine's key), "retired" (a local key replaced by ``keygen --rotate``, trusted for
    the archives it signed) or "pinned" (``backup.signing.trustedKeys``)."""
    roles: dict[str, tuple[bytes, str]] = {}
    for old in retired.retired_keys(key_dir, "signing"):
        if old.public is not None:
            raw = parse_public(old.public.read_text(encoding="ascii"), old.public)
            roles[key_id(raw)] = (raw, "retired")
    public_path = key_dir / PUBLIC_NAME
    if public_path.exists():
        raw = parse_public(public_path.read_text(encoding="ascii"), public_path)
        roles[key_id(raw)] = (raw, "local")
    elif (key_dir / PRIVATE_NAME).exists():
        local = load(key_dir)
        roles[local.key_id] = (local.public, "local")
    for text in extra:
        raw = parse_public(text, "backup.signing.trustedKeys")
        roles.setdefault(key_id(raw), (raw, "pinned"))
    return roles


def verify_document(document: dict, message: bytes, pinned: dict[str, bytes],
                    path: object) -> str:
    """Check a signature document; return the signer's key id.

    Distinguishes a broken signature (TamperedArchive) from a good signature
    by a key that is not pinned here (UntrustedSigner).
    """
    if set(document) != {"alg", "key_id", "public_key", "signature"} or document["alg"] != "ed25519":
        raise TamperedArchive("signature document is malformed", path=path)
    try:
        public = base64.b64decode(document["public_key"], validate=True)
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, TypeError):
        raise TamperedArchive("signature document is not valid base64", path=path) from None
    # b64decode ignores the unused low bits of the last character, so two texts can
    # decode to the same bytes: accept only the canonical encoding (no malleability)
    if (base64.b64encode(public).decode() != document["public_key"]
            or base64.b64encode(signature).decode() != document["signature"]):
        raise TamperedArchive("signature document is not canonical base64", path=path)
    if len(public) != 32 or len(signature) != 64:
        raise TamperedArchive("signature document is malformed", path=path)
    # The key id is not signed: one that names another key than the one given could
    # mislead a reader that looks pinned keys up by id (§6)
    if key_id(public) != document["key_id"]:
        raise TamperedArchive(f"signature document names key {document['key_id']!r}, but its "
                              f"public key is {key_id(public)}", path=path)
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        raise TamperedArchive("manifest signature does not verify: the archive head was "
                              "modified or damaged", path=path) from None
    if pinned.get(document["key_id"]) != public:
        raise UntrustedSigner(f"signed by key {document['key_id']}, which is not trusted here "
                              f"(add {format_public(public)} to backup.signing.trustedKeys "
                              "if you trust it)", path=path)
    return document["key_id"]
