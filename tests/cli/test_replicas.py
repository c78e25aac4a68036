"""Off-site replicas (backup.storage.replicas, issue 31): after every pack the new archive
and whatever a replica lacks are copied there and verified; a replica that fails is a
warning naming it (exit 1), doctor shows it behind, and the next pack completes it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from tests.helpers import CLI  # noqa: E402
from tests.cli.test_s3 import objects, s3, s3_server  # noqa: E402,F401 (fixtures)

SUFFIX = ".poppo.tar.zst"


def configure(root: Path, replicas: list[str]) -> None:
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document["backup"].setdefault("storage", {})["replicas"] = replicas
    path.write_text(json.dumps(document))


def held(directory: Path) -> set[str]:
    return {p.name[:-len(SUFFIX)] for p in directory.glob("*" + SUFFIX)} if directory.is_dir() else set()


def doctor(cli) -> dict:
    _, report = cli.json("doctor")
    return {c["id"]: c for c in report["checks"]}


def test_local_and_s3_replica_survive_an_s3_outage(cli, installation, tmp_path, s3, monkeypatch):
    local = tmp_path / "offsite"
    url = f"s3://{s3.bucket}/dr"
    configure(installation, [str(local), url])

    first = cli.pack("--no-prune")
    assert [r["ok"] for r in first["replicas"]] == [True, True], first["replicas"]
    assert held(local) == {first["id"]}
    assert objects(s3, "dr/") == [f"dr/{first['id']}{SUFFIX}"]
    assert first["replicas"][1]["verified"] == [first["id"]]
    assert doctor(cli)["replicas"]["status"] == "ok"

    # the S3 server cannot be reached: the pack stands, the local replica has it
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, second = cli.json("pack", "--no-prune")
    assert code == 1, second
    failed = [r for r in second["replicas"] if not r["ok"]]
    assert [r["replica"] for r in failed] == [url] and failed[0]["missing"] == [second["id"]]
    assert any(w.startswith(f"replica {url}: not up to date (1 archives missing")
               for w in second["warnings"]), second["warnings"]
    assert held(local) == {first["id"], second["id"]}
    assert (tmp_path / "store" / f"{second['id']}{SUFFIX}").exists()
    code, out, _ = cli("pack", "--no-prune", "--no-replicate")
    assert code == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    found = doctor(cli)["replicas"]
    assert found["status"] == "warn"
    assert any(d.startswith(f"{url}: behind, 2 archives missing (oldest {second['id']})")
               for d in found["details"]), found
    code, text, _ = cli("metrics")
    assert f'poppoarc_replica_lag_archives{{store="{url}",role="replica"}} 2' in text, text
    assert f'poppoarc_replica_lag_archives{{store="{local}",role="replica"}} 1' in text, text

    # S3 is back: the next pack copies everything missing, oldest first, verified
    third = cli.pack("--no-prune")
    assert all(r["ok"] for r in third["replicas"]), third["replicas"]
    assert len(third["replicas"][1]["copied"]) == 3 and third["replicas"][1]["copied"][-1] == third["id"]
    assert len(held(local)) == 4
    assert len(objects(s3, "dr/")) == 4
    assert doctor(cli)["replicas"]["status"] == "ok"
    code, text, _ = cli("metrics")
    assert f'poppoarc_replica_lag_archives{{store="{url}",role="replica"}} 0' in text, text
    code, out, _ = CLI(installation, url, cli.capsys)("list")
    assert code == 0 and third["id"] in out and second["id"] in out


def test_no_replicate_and_config_errors(cli, installation, tmp_path):
    configure(installation, [str(tmp_path / "store")])
    code, out, err = cli("pack")
    assert code == 3 and "is the primary store itself" in err and len(err.strip().splitlines()) == 1
    configure(installation, [str(installation / "offsite")])
    code, out, err = cli("pack")
    assert code == 3 and "inside the installation root" in err
    configure(installation, [str(tmp_path / "offsite")])
    packed = cli.pack("--no-replicate")
    assert packed["replicas"] == [] and held(tmp_path / "offsite") == set()
    assert doctor(cli)["replicas"]["status"] == "warn"


def test_an_unwritable_local_replica_is_a_warning(cli, installation, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    where = tmp_path / "ro"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1024k", "tmpfs", str(where)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        configure(installation, [str(where)])
        code, packed = cli.json("pack")
        assert code == 1 and not packed["replicas"][0]["ok"]
        assert any(w.startswith(f"replica {where}:") for w in packed["warnings"])
        assert (tmp_path / "store" / f"{packed['id']}{SUFFIX}").exists()
    finally:
        subprocess.run(["umount", str(where)])


def test_a_tampered_copy_on_the_replica_is_reported(cli, installation, tmp_path):
    """Decision: a copy at the replica that fails verification is reported (warning naming
    the replica, doctor shows it behind), never replaced behind the operator's back."""
    local = tmp_path / "offsite"
    configure(installation, [str(local)])
    first = cli.pack("--no-prune", "--full")
    copy = local / f"{first['id']}{SUFFIX}"
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    code, second = cli.json("pack", "--no-prune", "--incremental")
    assert code == 1
    assert not second["replicas"][0]["ok"] and second["replicas"][0]["missing"] == [second["id"]]
    assert any(w.startswith(f"replica {local}:") for w in second["warnings"])
    assert held(local) == {first["id"]}         # the new archive was deleted again
    assert doctor(cli)["replicas"]["status"] == "warn"
