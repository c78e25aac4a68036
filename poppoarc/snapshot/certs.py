"""Certificates and private keys, recorded by reference only.

The archive never holds their bytes; it records where they were, a SHA-256
fingerprint of the file, and for certificates the subject and expiry, so an
operator restoring on a new machine knows exactly which files to bring.
"""

from __future__ import annotations

import hashlib
import os
import stat

MAX_REFERENCE_BYTES = 1024 * 1024


def describe_reference(path: str, relpath: str) -> dict:
    """A manifest record for one certificate-like file or symlink."""
    record: dict = {"path": relpath}
    if os.path.islink(path):
        record["link"] = os.readlink(path)
    try:
        # non-blocking: a FIFO named like a certificate would stop the pack forever
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(0, "not a regular file")
            data = handle.read(MAX_REFERENCE_BYTES + 1)
    except OSError as exc:
        record["kind"] = "unreadable"
        record["error"] = exc.strerror or str(exc)
        return record
    record["sha256"] = hashlib.sha256(data).hexdigest()
    if b"PRIVATE KEY-----" in data:
        record["kind"] = "private-key"
        return record
    # imported here, by the one pack step that parses a certificate: restore and verify
    # processes do without its memory
    from cryptography import x509

    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN CERTIFICATE" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        record["kind"] = "unknown"
        return record
    record["kind"] = "certificate"
    record["subject"] = cert.subject.rfc4514_string()
    record["not_after"] = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return record
