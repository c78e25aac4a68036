"""Restore drills (issue 31): restore where nothing live is touched, check it against the
manifest, run the health check there, remove it; recorded for doctor and notified."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poppoarc.store import runs

from tests.helpers import digest

PASS = "correct horse battery staple"
SCHEMAS = Path(__file__).resolve().parents[2] / "spec" / "json"


def configure(root: Path, **backup) -> None:
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document.setdefault("backup", {}).update(backup)
    path.write_text(json.dumps(document))


def valid(name: str, document: dict) -> dict:
    from jsonschema import Draft202012Validator
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(document))
    assert not errors, [e.message for e in errors]
    return document


def scratch_roots(where: Path) -> list[Path]:
    return sorted(where.glob(".poppoarc-drill-*")) if where.is_dir() else []


@pytest.fixture
def notified(installation, tmp_path):
    """A notification command that appends each event's document to a file."""
    log = tmp_path / "notified.jsonl"
    configure(installation, notifications={
        "command": f'cat >> {log} && echo >> {log} && echo "$POPPOARC_KIND" >> {log}.kinds',
        "on": ["success", "failure"]})
    return log


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] \
        if log.exists() else []


def test_drill_of_an_incremental_encrypted_archive(cli, installation, monkeypatch, notified):
    monkeypatch.setenv("POPPO_BACKUP_KEY", PASS)
    configure(installation, incremental={"enabled": True},
              restore={"healthCheck": 'test -f "$POPPO_ROOT/config/config.json" && '
                                      'test "$POPPOARC_PHASE" = drill && '
                                      'test "$PWD" = "$POPPO_ROOT"'})
    full = cli.pack("--full", "--encrypt")
    (installation / "state/new-task.json").write_text('{"id": 7}\n')
    (installation / "config/defaults.json").unlink()
    incremental = cli.pack("--encrypt")
    assert incremental["parent"] == full["id"] and incremental["encryption"] == "archive"
    before = digest(installation)

    code, report = cli.json("drill")
    assert code == 0, report
    valid("drill", report)
    assert digest(installation) == before                    # the live tree untouched
    assert scratch_roots(cli.store) == [] and report["removed"]
    assert not os.path.lexists(report["scratch"])
    assert report["archive_id"] == incremental["id"] and report["chain"] == [full["id"]]
    code, inspected = cli.json("inspect", incremental["id"])
    manifest = inspected["manifest"]
    assert report["files"] == {"manifest": manifest["files"], "restored": manifest["files"]}
    assert report["bytes"]["restored"] == sum(t["size"] for t in manifest["targets"].values())
    stated = {d["path"]: d["tables"] for d in manifest["databases"]}
    assert {d["path"] for d in report["databases"]} == set(stated) and len(stated) >= 4
    for database in report["databases"]:
        assert database["ok"] and database["integrity"] == ["ok"]
        assert {t: v["restored"] for t, v in database["tables"].items()} == \
            stated[database["path"]]
    assert report["health_check"]["ok"] and report["health_check"]["exit_code"] == 0
    needs = report["restore_needs"]
    assert needs["space_bytes"] > 0 and needs["fits"] and needs["seconds"] > 0

    assert runs.load(cli.store)["drill"]["archive"] == incremental["id"]
    code, doctor = cli.json("doctor")
    [finding] = [c for c in doctor["checks"] if c["id"] == "drill"]
    assert finding["status"] == "ok" and incremental["id"] in finding["message"]
    [event] = events(notified)
    assert event["event"] == "success" and event["kind"] == "drill" \
        and event["archive_id"] == incremental["id"]
    code, out, _ = cli("drill", full["id"][:28])
    assert code == 0 and f"Drill of {full['id']} passed" in out and "scratch root removed" in out


def test_drill_of_a_damaged_archive_fails_naming_it_and_notifies(cli, installation, notified):
    good = cli.pack()
    damaged = cli.pack()
    path = Path(damaged["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                              # a byte of the body
    path.write_bytes(bytes(data))
    before = digest(installation)
    code, out, err = cli("drill")
    assert code in (13, 14), err
    assert damaged["id"] in err and err.count("\n") == 1
    assert digest(installation) == before and scratch_roots(cli.store) == []
    [event] = events(notified)
    assert event["event"] == "failure" and event["kind"] == "drill"
    assert damaged["id"] in event["error"]
    record = runs.load(cli.store)["drill"]
    assert record["last_ok"] is False and damaged["id"] in record["problem"]
    code, doctor = cli.json("doctor")
    [finding] = [c for c in doctor["checks"] if c["id"] == "drill"]
    assert finding["status"] == "fail" and damaged["id"] in finding["message"]
    # the good one still drills, and doctor sees it
    code, report = cli.json("drill", good["id"])
    assert code == 0 and report["ok"]
    code, doctor = cli.json("doctor")
    assert [c for c in doctor["checks"] if c["id"] == "drill"][0]["status"] == "ok"


def test_a_failing_health_check_fails_the_drill_with_its_code(cli, installation):
    configure(installation, restore={"healthCheck": "exit 3"})
    cli.pack()
    code, report = cli.json("drill")
    assert code == 33 and not report["ok"] and report["health_check"]["exit_code"] == 3
    assert "health check exited with 3" in report["problems"][0]
    assert report["removed"] and scratch_roots(cli.store) == []
    assert runs.load(cli.store)["drill"]["last_ok"] is False


def test_drill_to_a_directory_and_never_into_the_installation(cli, installation, tmp_path):
    cli.pack()
    elsewhere = tmp_path / "bigdisk"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    code, report = cli.json("drill", "--to", str(elsewhere))
    assert code == 0 and Path(report["scratch"]).parent == elsewhere
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    for inside in (installation, installation / "state"):
        code, out, err = cli("drill", "--to", str(inside))
        assert code == 2 and "inside the installation" in err
    assert not list(installation.rglob(".poppoarc-drill-*"))


def test_doctor_asks_for_a_drill_when_configured(cli, installation):
    cli.pack()
    code, doctor = cli.json("doctor")
    assert [c for c in doctor["checks"] if c["id"] == "drill"][0]["status"] == "info"
    configure(installation, drill={"maxAgeDays": 7})
    code, doctor = cli.json("doctor")
    assert [c for c in doctor["checks"] if c["id"] == "drill"][0]["status"] == "warn"
    record = {"format": runs.RUNS_FORMAT, "kinds": {"drill": {
        "last_ok": True, "last_success": time.time() - 9 * 86400, "archive": "backup-x"}}}
    (cli.store / runs.RUNS_NAME).write_text(json.dumps(record))
    code, doctor = cli.json("doctor")
    [finding] = [c for c in doctor["checks"] if c["id"] == "drill"]
    assert finding["status"] == "warn" and "9 d" in finding["message"]


def test_a_killed_drill_leaves_a_scratch_root_the_next_command_removes(cli, installation,
                                                                      key_home):
    cli.pack()
    env = {**os.environ, "POPPOARC_HOME": str(key_home)}
    argv = [sys.executable, "-m", "poppoarc", "--root", str(installation), "--store",
            str(cli.store), "drill"]
    for _attempt in range(20):
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while process.poll() is None and not scratch_roots(cli.store):
            time.sleep(0.002)
        if process.poll() is None:
            time.sleep(0.05)            # inside the restore
            process.send_signal(signal.SIGKILL)
            process.wait()
            if scratch_roots(cli.store):
                break
    else:
        pytest.skip("the drill always finished before it could be killed")
    code, doctor = cli.json("doctor")
    [temps] = [c for c in doctor["checks"] if c["id"] == "temps"]
    assert temps["status"] == "warn" and ".poppoarc-drill-" in " ".join(temps["details"])
    code, report = cli.json("drill")
    assert code == 0 and scratch_roots(cli.store) == []


def test_the_default_drill_is_the_newest_backup_not_a_safety_archive(cli, installation):
    packed = cli.pack()
    code, restored = cli.json("unpack", packed["id"])           # writes a safety archive
    assert code in (0, 1) and restored["safety_archive"]
    code, report = cli.json("drill")
    assert code == 0 and report["archive_id"] == packed["id"]
    code, report = cli.json("drill", restored["safety_archive"])  # still drillable by name
    assert code == 0 and report["archive_id"] == restored["safety_archive"]
