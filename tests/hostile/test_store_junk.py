"""A file dropped into the store by someone without any key stops nothing (spec §14).

Whoever can write to the store (a shared folder, a bucket) can put anything there under an
archive's name.  Every command that reads the store must go on: ``list`` shows the file as
damaged, a (scheduled, incremental) ``pack`` makes its archive and names the file,
``prune --dry-run`` and ``doctor`` name it, and ``verify`` of it fails with an archive error
class, one line, never a traceback or the internal-error code."""

from __future__ import annotations

import json
import os

import pytest

from poppoarc.crypto import signing
from poppoarc.format import head as headfmt

from tests.helpers.craft import craft, entry

JUNK_ID = "backup-2099-01-01T00-00-00-000Z-junk00"
SIGNATURE = b'{"alg":"ed25519","key_id":"0000000000000000","public_key":"","signature":""}'


def head_of(manifest: bytes, signature: bytes = SIGNATURE, key=None) -> bytes:
    """A head frame around any manifest bytes; signed by ``key`` if given."""
    size = 65536
    member = headfmt.pad_manifest(manifest, size)
    if key is not None:
        signature = headfmt.canonical_json(key.sign_document(headfmt.signed_message(member)))
    return headfmt.encode_head(member, signature, size, 0)


WRONG_TYPES = json.dumps({
    "format": "poppoarc/1", "id": JUNK_ID, "timestamp": 5, "type": ["manual"], "name": {"a": 1},
    "incremental": "yes", "parent": {"id": 7}, "targets": "all", "databases": {"path": 1},
    "encryption": 5, "checksum": ["x"], "size": -1}, sort_keys=True,
    separators=(",", ":")).encode()


def _junk(kind: str, store, key_home):
    path = store / f"{JUNK_ID}.poppo.tar.zst"
    if kind == "deep-nesting":
        path.write_bytes(head_of(b"[" * 30000 + b"]" * 30000))
    elif kind == "deep-signature":
        path.write_bytes(head_of(b"{}", b"{" * 200 + b"}" * 200))
    elif kind == "random":
        path.write_bytes(os.urandom(70000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "dangling-symlink":
        path.symlink_to(store / "nothing-here")
    elif kind == "wrong-types":
        path.write_bytes(head_of(WRONG_TYPES))
    elif kind == "not-an-object":
        path.write_bytes(head_of(b"[]", b"7"))
    elif kind == "huge-numbers":
        path.write_bytes(head_of(b'{"format":"poppoarc/1","size":' + b"9" * 4000 + b"}"))
    elif kind == "truncated-head":
        path.write_bytes(head_of(b"{}")[:30000])
    elif kind == "untrusted-signer":
        other = signing.SigningKey(*_other_key())
        path.write_bytes(head_of(WRONG_TYPES, key=other))
    elif kind == "trusted-signer-wrong-types":
        key, _ = signing.load_or_generate(key_home)
        path.write_bytes(head_of(WRONG_TYPES, key=key))
    return path


def _other_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    private = Ed25519PrivateKey.generate()
    return private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


KINDS = ["deep-nesting", "deep-signature", "random", "empty", "fifo", "directory", "device",
         "dangling-symlink", "wrong-types", "not-an-object", "huge-numbers", "truncated-head",
         "untrusted-signer", "trusted-signer-wrong-types"]


@pytest.mark.parametrize("kind", KINDS)
def test_junk_in_the_store_stops_nothing_and_is_named(kind, cli, installation, key_home):
    cli.pack()                                  # a good archive, the parent to be
    _junk(kind, cli.store, key_home)
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["incremental"] = {"enabled": True}
    config.write_text(json.dumps(document))

    code, out, err = cli("pack")                # incremental: it searches the store
    assert code in (0, 1) and "Traceback" not in err, err
    assert JUNK_ID in err, err                  # named as what it is, not used
    code, listing = cli.json("list")
    assert code == 0, listing
    rows = {row["id"]: row for row in listing["archives"]}
    assert rows[JUNK_ID]["status"] in ("damaged", "untrusted") and rows[JUNK_ID]["problem"]
    assert sum(row["status"] == "ok" for row in rows.values()) == 2
    code, out, err = cli("list")
    assert code == 0 and JUNK_ID in out and JUNK_ID in err
    code, out, err = cli("prune", "--dry-run")
    assert code in (0, 1) and JUNK_ID in out and "Traceback" not in err, (out, err)
    code, out, err = cli("doctor")
    assert code in (1, 7) and JUNK_ID in out + err and "Traceback" not in err, out
    code, _, err = cli("verify", JUNK_ID)
    assert 4 <= code <= 24 and err.count("\n") == 1 and "Traceback" not in err, (code, err)


def test_junk_records_of_the_store_do_not_stop_doctor_or_the_scheduler(cli, installation):
    """The store's own files (the verification record, the schedule state) replaced by
    something hostile: marks are lost, nothing stops."""
    packed = cli.pack()
    assert cli("verify", packed["id"])[0] == 0
    (cli.store / ".poppoarc-verified.json").write_bytes(b"[" * 100000 + b"]" * 100000)
    (cli.store / ".poppoarc-schedule.json").write_bytes(b"{" * 100000)
    code, out, err = cli("doctor")
    assert code in (0, 1, 7) and "Traceback" not in err, err
    assert "never verified" in out
    code, out, err = cli("schedule", "--next")
    assert code in (0, 3) and "Traceback" not in err, err
    code, out, err = cli("pack")
    assert code in (0, 1) and "Traceback" not in err, err


def test_a_hostile_config_restored_from_an_archive_does_not_stop_backups(cli, installation,
                                                                         key_home):
    """The app's own .poppo/config.json is content a signed archive may restore: nested
    100,000 deep, the next pack (which reads its version) still runs."""
    archive = craft(cli.store, key_home, [
        entry(".poppo", "dir", target="config"),
        entry(".poppo/config.json", data=b"[" * 100000 + b"]" * 100000, target="config")])
    code, _, err = cli("unpack", str(archive), "--skip-backup")
    assert code in (0, 1), err
    code, _, err = cli("pack")
    assert code in (0, 1) and "Traceback" not in err, err
