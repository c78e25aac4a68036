"""A second reader of poppoarc archives, written from spec/FORMAT.md alone.

It imports nothing from ``poppoarc``: only the standard library, ``pyzstd`` (zstd
frames) and ``cryptography`` (Ed25519, X25519, AES-GCM, HKDF, Argon2id).  Every
rule it applies cites the section it comes from.  ``tests/test_independent_reader.py``
runs it beside poppoarc on every vector and on fresh archives: the same verdicts and
the same trees show that the spec says enough to read the format without its code.

It is small on purpose and reads whole archives into memory: a test tool, not a
second implementation to ship.
"""
