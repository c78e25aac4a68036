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


def assert_behind(cli, replica: str, missing: int, oldest: str) -> str:
    """doctor's replicas check and the lag metric both say ``replica`` lacks ``missing``
    archives, the oldest ``oldest``; returns the metrics text."""
    found = doctor(cli)["replicas"]
    assert found["status"] == "warn"
    assert any(d.startswith(f"{replica}: behind, {missing} archives missing (oldest {oldest})")
               for d in found["details"]), found
    code, text, _ = cli("metrics")
    assert f'poppoarc_replica_lag_archives{{store="{replica}",role="replica"}} {missing}' in text, text
    return text


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
    text = assert_behind(cli, url, 2, second["id"])
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


def test_the_retention_after_a_pack_applies_to_the_replicas(cli, installation, tmp_path):
    """maxBackups 2 with a protected full archive: the replica is pruned by the same rules
    as the primary (the protection mark travelled with the copy)."""
    local = tmp_path / "offsite"
    configure(installation, [str(local)])
    path = installation / "config/config.json"
    document = json.loads(path.read_text())
    document["backup"].update(maxBackups=2)
    document["backup"].pop("retention", None)
    path.write_text(json.dumps(document))
    kept = cli.pack("--full", "--protect")
    packs = [cli.pack("--full") for _ in range(4)]
    assert all(p["replicas"][0]["ok"] for p in packs), packs
    expected = {kept["id"], packs[-2]["id"], packs[-1]["id"]}
    assert held(tmp_path / "store") == expected
    assert held(local) == expected
    pruned = [i for p in packs for i in p["replicas"][0]["pruned"]]
    assert pruned == [p["id"] for p in packs[:2]]
    assert [p["retention"]["deleted"] for p in packs] == [p["replicas"][0]["pruned"] for p in packs]
    assert doctor(cli)["replicas"]["status"] == "ok"


def test_a_scheduled_pack_replicates_and_notifies_a_failed_replica(installation, tmp_path):
    from datetime import timedelta

    from poppoarc.config import resolve
    from tests.cli.test_service import T0, FakeClock, scheduler

    store, good, bad = tmp_path / "store", tmp_path / "offsite", tmp_path / "not-a-directory"
    bad.write_text("a file where the replica should be\n")
    out = tmp_path / "notified.json"
    (installation / "config/config.json").write_text(json.dumps({"backup": {
        "schedule": "0 * * * *", "storage": {"replicas": [str(good), str(bad)]},
        "notifications": {"command": f"cat > {out}", "on": ["failure"]}}}))
    clock = FakeClock(T0)
    scheduler(installation, store, clock).run_once()
    clock.t = T0 + timedelta(hours=1)
    (record,) = scheduler(installation, store, clock).run_once()
    assert record.ok and record.archive_id
    assert held(good) == {record.archive_id} == held(store)
    assert [w for w in record.warnings if w.startswith(f"replica {bad}: not up to date")]
    document = json.loads(out.read_text())
    assert document["event"] == "failure" and document["kind"] == "replica"
    assert document["archive_id"] == record.archive_id and str(bad) in document["error"]
    settings = resolve(str(installation), store=str(store))
    from poppoarc.doctor import run as doctor_run
    found = {f.id: f for f in doctor_run(settings).findings}["replicas"]
    assert found.status == "warn" and any(d.startswith(f"{bad}:") for d in found.details)


def test_the_s3_replica_dies_mid_copy_and_the_next_pack_completes_it(
        cli, installation, tmp_path, s3, monkeypatch):
    """Issue 31's acceptance: the S3 endpoint goes away while a part of the replica's
    multipart upload is in flight (the connection is cut, then refused); the pack stands
    and names the replica, doctor shows the lag meanwhile, the next pack completes it."""
    import sys
    import time

    from tests.cli.test_s3 import random_file, uploads
    from tests.helpers.cutproxy import CutProxy

    proxy = CutProxy(int(s3.endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    local, url = tmp_path / "offsite", f"s3://{s3.bucket}/dr"
    configure(installation, [str(local), url])
    first = cli.pack("--no-prune", "--full")
    assert [r["ok"] for r in first["replicas"]] == [True, True], first["replicas"]

    random_file(installation / "state/blob.bin", 20 << 20)     # several parts of 8 MiB
    mark = s3.mark()
    s3.control("hold")      # the first part's answer is held: the upload is in flight
    try:
        writer = subprocess.Popen(
            [sys.executable, "-m", "poppoarc", "--root", str(installation), "--store",
             str(tmp_path / "store"), "pack", "--json", "--no-prune", "--full"],
            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not any(r["op"] == "UploadPart" and r["path"].startswith(f"/{s3.bucket}/dr/")
                      for r in s3.requests(mark)):
            assert time.monotonic() < deadline and writer.poll() is None, "no part went to the replica"
            time.sleep(0.05)
        proxy.cut()
    finally:
        s3.control("release")
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 1, (writer.returncode, err)
    second = json.loads(out)
    failed = [r for r in second["replicas"] if not r["ok"]]
    assert [r["replica"] for r in failed] == [url] and failed[0]["missing"] == [second["id"]]
    assert held(local) == {first["id"], second["id"]}
    assert held(tmp_path / "store") == {first["id"], second["id"]}
    assert objects(s3, "dr/") == [f"dr/{first['id']}{SUFFIX}"]    # nothing half-written

    proxy.restore()         # the endpoint is back, the replica one archive behind
    assert_behind(cli, url, 1, second["id"])

    third = cli.pack("--no-prune")
    assert all(r["ok"] for r in third["replicas"]), third["replicas"]
    assert third["replicas"][1]["copied"][0] == second["id"]
    assert set(third["replicas"][1]["verified"]) >= {second["id"], third["id"]}
    assert len(objects(s3, "dr/")) == 3 and len(held(local)) == 3
    assert doctor(cli)["replicas"]["status"] == "ok"
    proxy.cut()
    leftover = uploads(s3)
    assert leftover == [], f"the interrupted replica upload was never aborted: {leftover}"
