"""verify --all (issue 26): every archive of the store, chains included, each verified
once and recorded for doctor, local and S3; one damaged archive is named, the command
exits 10 and the rest are recorded."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from poppoarc.format import reader
from poppoarc.store.local import SUFFIX
from tests.helpers import CLI
from tests.helpers.vectors import VECTORS

SCHEMAS = Path(__file__).resolve().parents[2] / "spec" / "json"


@pytest.fixture
def chain(cli, installation):
    """A full archive, two incrementals on it, and a second full one."""
    archives = [cli.pack("--full")]
    for text in ("one", "two"):
        (installation / "state/changed.txt").write_text(text)
        archives.append(cli.pack("--incremental"))
    archives.append(cli.pack("--full"))
    return archives


@pytest.fixture
def bodies(monkeypatch):
    """How many times each archive's body is read."""
    counts = Counter()
    real = reader.read_body

    def counting(handle, head, *args, **kwargs):
        counts[head.manifest["id"]] += 1
        return real(handle, head, *args, **kwargs)
    monkeypatch.setattr(reader, "read_body", counting)
    return counts


def doctor_verified(cli) -> dict:
    code, report = cli.json("doctor")
    return next(c for c in report["checks"] if c["id"] == "verified")


def test_every_archive_verified_once_as_verify_alone_would_and_recorded(cli, chain, bodies):
    assert doctor_verified(cli)["status"] == "warn"
    code, document = cli.json("verify", "--all")
    assert code == 0, document
    assert [a["id"] for a in document["archives"]] == [a["id"] for a in chain]
    assert document["ok"] == 4 and document["failed"] == 0 and document["recorded"] == 4
    # each body read once, where verifying each archive alone reads 1 + 2 + 3 + 1
    assert dict(bodies) == {a["id"]: 1 for a in chain} and document["bodies_read"] == 4
    for archive, verdict in zip(chain, document["archives"]):
        code, alone = cli.json("verify", archive["id"])
        assert code == 0
        for key in ("entries", "files", "bytes", "databases_checked", "chain", "not_checked",
                    "encryption", "changed_while_packed"):
            assert verdict["verified"][key] == alone[key], (key, archive["id"])
    assert doctor_verified(cli)["status"] == "ok"
    code, out, err = cli("verify", "--all")
    assert code == 0 and out.splitlines()[-1].startswith("4 verified, 0 failed, 0 skipped; "
                                                         "4 recorded for doctor in ")
    assert f"  ok       {chain[2]['id']}  " in out and "(with its 2 earlier archive(s))" in out


def test_one_damaged_archive_is_named_exits_10_and_the_rest_are_recorded(cli, chain):
    middle = Path(chain[1]["path"])
    data = bytearray(middle.read_bytes())
    data[-2000] ^= 0x40                # the index frame: only the checksums see it
    middle.write_bytes(bytes(data))
    junk = cli.store / ("backup-2020-01-01T00-00-00-000Z-junk00" + SUFFIX)
    junk.write_bytes(b"not an archive at all")
    (cli.store / "notes.txt").write_text("an operator's note: not an archive")
    code, out, err = cli("verify", "--all")
    assert code == 10, err
    assert f"  FAILED   {chain[1]['id']}  " in out and "(exit 13)" in out
    assert f"  FAILED   {chain[2]['id']}  " in out and "(exit 17)" in out   # its child
    assert f"  FAILED   {junk.name[:-len(SUFFIX)]}  " in out
    assert f"{chain[1]['id']} fails verification" in err
    assert "notes.txt" not in out
    code, document = cli.json("verify", "--all")
    assert code == 10
    status = {a["id"]: (a["status"], a["error"] and a["error"]["type"])
              for a in document["archives"]}
    assert status[chain[0]["id"]] == ("ok", None) and status[chain[3]["id"]] == ("ok", None)
    assert status[chain[1]["id"]] == ("failed", "CorruptArchive")
    assert status[chain[2]["id"]] == ("failed", "BrokenChain")
    assert status[junk.name[:-len(SUFFIX)]][0] == "failed"
    assert document["recorded"] == 2
    # the same verdicts as verify of each alone
    for archive in chain[1:3]:
        code, _, _ = cli("verify", archive["id"])
        assert code == {chain[1]["id"]: 13, chain[2]["id"]: 17}[archive["id"]]
    record = json.loads((cli.store / ".poppoarc-verified.json").read_text())["archives"]
    assert sorted(k for k, v in record.items() if "checksum" in v) == sorted(
        [chain[0]["id"], chain[3]["id"]])
    assert sorted(k for k, v in record.items() if "failed" in v) == sorted(
        [chain[1]["id"], chain[2]["id"], junk.name[:-len(SUFFIX)]])
    found = doctor_verified(cli)
    assert found["status"] == "fail", found
    assert found["message"] == "2 of 4 archive(s) failed their last verification"


def test_an_archive_only_a_newer_poppoarc_reads_is_skipped_not_failed(cli, chain):
    newer = "backup-2025-06-19T12-00-00-000Z-abc123"      # the future-format vector's id
    shutil.copyfile(VECTORS / "future-format.poppo.tar.zst", cli.store / (newer + SUFFIX))
    code, document = cli.json("verify", "--all")
    assert code == 1 and document["skipped"] == 1 and document["failed"] == 0
    skipped = next(a for a in document["archives"] if a["id"] == newer)
    assert skipped["status"] == "skipped" and "newer poppoarc" in skipped["reason"]


def test_an_empty_store_verifies_nothing_successfully(cli):
    code, document = cli.json("verify", "--all")
    assert code == 0 and document["archives"] == [] and document["ok"] == 0


def test_verify_all_json_matches_its_schema(cli, chain):
    from jsonschema import Draft202012Validator
    Path(chain[3]["path"]).write_bytes(b"junk")
    code, document = cli.json("verify", "--all")
    assert code == 10
    schema = json.loads((SCHEMAS / "verify-all.schema.json").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(document))
    assert not errors, errors[:3]
