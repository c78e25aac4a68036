"""doctor: each finding of the seed's troubleshooting list, provoked and reported with its fix."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from poppoarc.fs import host_tag
from poppoarc import doctor
from poppoarc.config import resolve
from poppoarc.restore import journal as journal_mod
from poppoarc.restore import swap

DEAD_PID = 2**22 + 12345          # above pid_max on common systems: never running


def checks(cli, *extra) -> tuple[int, dict]:
    code, document = cli.json("doctor", *extra)
    return code, {c["id"]: c for c in document["checks"]}


@pytest.fixture
def healthy(cli, tmp_path):
    packed = cli.pack()
    assert cli("verify", packed["id"])[0] == 0
    # the identity pack made for the secrets is kept off the machine, as the pack asked
    assert cli("keygen", f"--export={tmp_path / 'identity-copy.key'}")[0] == 0
    return packed


def set_backup(cli, backup: dict) -> None:
    path = cli.root / "config/config.json"
    document = json.loads(path.read_text())
    document["backup"] = {**document.get("backup", {}), **backup}
    path.write_text(json.dumps(document, indent=2))


def test_healthy_installation_is_all_clear(cli, healthy):
    code, found = checks(cli)
    assert code == 0
    assert {c["status"] for c in found.values()} <= {"ok", "info", "n/a"}, found
    code, out, err = cli("doctor")
    assert code == 0 and out.rstrip().endswith("All clear.") and err == ""
    assert "fix:" not in out


def test_fresh_installation_warns_there_is_no_backup(cli):
    code, found = checks(cli)
    assert code == 1
    assert found["age"]["status"] == "warn" and found["age"]["fix"] == "poppoarc pack"
    assert not (cli.store).exists(), "doctor must not create the store"


def test_full_disk_by_threshold(cli, healthy):
    # through the library's free-space probe
    settings = resolve(str(cli.root), None, str(cli.store))
    report = doctor.run(settings, free_bytes=lambda path: 1000)
    space = next(f for f in report.findings if f.id == "space")
    assert space.status == "fail" and report.exit_code == 7
    report = doctor.run(settings, free_bytes=lambda path: int(healthy["size"] * 1.5))
    assert next(f for f in report.findings if f.id == "space").status == "warn"
    # through the configured reserve, on the real disk
    set_backup(cli, {"storage": {"path": str(cli.store), "minFree": "1000TB"}})
    code, found = checks(cli)
    assert code == 7 and found["space"]["status"] == "fail"
    assert "1000.0 TB reserve" in found["space"]["message"]
    assert "df -h" in found["space"]["fix"]


def test_wrong_permissions(cli, healthy, key_home):
    os.chmod(cli.store, 0o755)
    os.chmod(healthy["path"], 0o644)
    code, found = checks(cli)
    assert code == 1
    assert found["store"]["status"] == "warn" and found["store"]["fix"] == f"chmod 700 {cli.store}"
    assert found["archive-modes"]["status"] == "warn"
    assert found["archive-modes"]["fix"] == f"chmod 600 {cli.store}/*.poppo.tar.zst"
    assert healthy["id"] in found["archive-modes"]["details"][0]
    os.chmod(key_home / "signing.key", 0o644)
    code, found = checks(cli)
    assert code == 7 and found["signing-key"]["status"] == "fail"
    assert found["signing-key"]["fix"] == f"chmod 600 {key_home / 'signing.key'}"


def test_corrupt_database(cli, healthy):
    path = cli.root / "data/security.db"
    with open(path, "r+b") as handle:
        handle.seek(8192)
        handle.write(os.urandom(12288))
    code, found = checks(cli)
    assert code == 7 and found["databases"]["status"] == "fail"
    assert found["databases"]["details"][0].startswith("data/security.db: ")
    assert found["databases"]["fix"].endswith(f"poppoarc unpack {healthy['id']} --targets database")


def test_bad_json_names_file_line_and_column(cli, healthy):
    (cli.root / "config/config.json").write_text('{\n  "backup": {\n    "enabled": tru\n  }\n}\n')
    code, found = checks(cli)
    assert code == 7 and found["config"]["status"] == "fail"
    assert "config/config.json:3:16" in found["config"]["message"]
    assert found["config"]["fix"].startswith("correct the JSON syntax at ")
    assert found["config"]["fix"].endswith("config/config.json:3:16")


def test_unknown_key_is_reported_with_its_place(cli, healthy):
    set_backup(cli, {"retension": 3})
    code, found = checks(cli)
    assert code == 7 and "unknown key 'backup.retension'" in found["config"]["message"]
    assert "(did you mean 'retention'?)" in found["config"]["message"]


def test_stale_lock_is_harmless_and_held_lock_names_its_holder(cli, healthy):
    (cli.root / ".poppoarc.lock").write_text(f"pid {DEAD_PID} (pack)\n")
    code, found = checks(cli)
    assert code == 1 and found["lock"]["status"] == "warn"
    assert "stale but harmless" in found["lock"]["message"] and str(DEAD_PID) in found["lock"]["message"]
    assert found["lock"]["fix"]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from poppoarc.lock import InstallationLock\n"
        f"with InstallationLock({str(cli.root)!r}, 'pack'):\n"
        "    print('locked', flush=True); time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, found = checks(cli)
        assert found["lock"]["status"] == "info"
        assert found["lock"]["message"] == f"in use by pid {holder.pid} (pack)"
    finally:
        holder.kill()
        holder.wait()


def test_stale_temporary_files(cli, healthy):
    here = f"{DEAD_PID}-1-h{host_tag()}"          # a process of this host, now gone
    temp = cli.store / f".{healthy['id']}.poppo.tar.zst.tmp-{here}"
    temp.write_bytes(b"partial")
    snap = cli.store / f".poppoarc-snap-{here}-abc123"          # its pack was killed
    snap.mkdir()
    code, found = checks(cli)
    assert code == 1 and found["temps"]["status"] == "warn"
    assert set(found["temps"]["details"]) == {str(temp), str(snap)}
    assert "rm -rf" in found["temps"]["fix"]


def test_interrupted_restore_waits_for_recovery(cli, healthy):
    swap.begin(cli.root, "r1", healthy["id"])
    journal = journal_mod.read_journal(cli.root)
    journal.pid, journal.pid_start = DEAD_PID, None
    journal_mod.write_journal(cli.root, journal)
    code, found = checks(cli)
    assert code == 7 and found["restore"]["status"] == "fail"
    assert "interrupted in phase STAGED" in found["restore"]["message"]
    assert found["restore"]["fix"].startswith("poppoarc unpack --recover")
    assert (cli.root / ".poppoarc-restore.json").exists(), "doctor must not recover"
    assert cli("unpack", "--recover")[0] == 0
    code, found = checks(cli)
    assert code == 0 and found["restore"]["status"] == "ok"


def test_never_verified_archives(cli):
    first = cli.pack()
    second = cli.pack()
    code, found = checks(cli)
    assert code == 1 and found["verified"]["status"] == "warn"
    assert found["verified"]["details"] == [second["id"], first["id"]]
    assert found["verified"]["fix"].startswith("poppoarc verify --all")
    cli("verify", first["id"])
    cli("verify", second["id"])
    assert checks(cli)[1]["verified"]["status"] == "ok"
    # a replaced file with the same name is not "verified" any more
    record = json.loads((cli.store / ".poppoarc-verified.json").read_text())
    record["archives"][first["id"]]["checksum"] = "sha256:" + "0" * 64
    (cli.store / ".poppoarc-verified.json").write_text(json.dumps(record))
    assert checks(cli)[1]["verified"]["details"] == [first["id"]]


def test_age_of_the_newest_backup_against_the_schedule(cli, healthy):
    settings = resolve(str(cli.root), None, str(cli.store))
    now = datetime.now(timezone.utc)
    age = lambda report: next(f for f in report.findings if f.id == "age")  # noqa: E731
    assert age(doctor.run(settings, now=now)).status == "ok"     # demo schedule: 0 2 * * *
    assert age(doctor.run(settings, now=now + timedelta(days=2))).status == "warn"
    late = age(doctor.run(settings, now=now + timedelta(days=4)))
    assert late.status == "fail" and "every 24.0 h" in late.render()
    set_backup(cli, {"schedule": {"weekly": {"cron": "0 3 * * 0", "type": "full"}}})
    settings = resolve(str(cli.root), None, str(cli.store))
    assert age(doctor.run(settings, now=now + timedelta(days=4))).status == "ok"
    set_backup(cli, {"enabled": False})
    settings = resolve(str(cli.root), None, str(cli.store))
    assert age(doctor.run(settings, now=now + timedelta(days=40))).status == "info"


def test_encryption_key_availability(cli, healthy, tmp_path, monkeypatch, key_home):
    found = checks(cli)[1]["encryption-key"]
    assert found["status"] == "ok" and "exported on" in found["message"]
    (key_home / "encryption.key.exported").unlink()       # the identity exists only here
    code, found = checks(cli)
    assert code == 1 and found["encryption-key"]["status"] == "warn"
    assert "the secret files of 1 archive(s) open only with" in found["encryption-key"]["message"]
    assert found["encryption-key"]["fix"] == "copy it off this machine: poppoarc keygen --export=FILE"
    set_backup(cli, {"storage": {"path": str(cli.store), "encrypt": True}})
    monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    code, found = checks(cli)
    assert code == 7 and found["encryption-key"]["status"] == "fail"
    assert "losing the machine loses every backup" in found["encryption-key"]["message"]
    assert "keygen --export" in found["encryption-key"]["fix"]
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "not hex")
    assert checks(cli)[1]["encryption-key"]["status"] == "fail"
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "ab" * 32)
    assert checks(cli)[1]["encryption-key"]["status"] == "ok"
    monkeypatch.delenv("BACKUP_ENCRYPTION_KEY")
    monkeypatch.setenv("POPPO_BACKUP_KEY", "k" * 32)
    assert checks(cli)[1]["encryption-key"]["status"] == "ok"
    monkeypatch.delenv("POPPO_BACKUP_KEY")
    key_file = tmp_path / "backup.key"
    key_file.write_text("secret")
    os.chmod(key_file, 0o644)
    set_backup(cli, {"storage": {"path": str(cli.store), "encrypt": True, "keyFile": str(key_file)}})
    found = checks(cli)[1]
    assert found["encryption-key"]["status"] == "warn" and found["encryption-key"]["fix"] == f"chmod 600 {key_file}"
    key_file.unlink()
    assert checks(cli)[1]["encryption-key"]["status"] == "fail"


def test_damaged_archive(cli, healthy):
    path = healthy["path"]
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 100)
    code, found = checks(cli)
    assert code == 7 and found["archives"]["status"] == "fail"
    assert found["archives"]["details"][0].startswith(healthy["id"])


def test_a_broken_incremental_chain_fails_naming_the_missing_parent(cli, healthy, tmp_path):
    from poppoarc.demo.changes import simulate_day

    simulate_day(cli.root, seed=1)
    incremental = cli.pack("--incremental")
    code, found = checks(cli)
    assert found["chains"]["status"] == "ok"
    parent = next(cli.store.glob(incremental["parent"] + "*"))
    parent.rename(tmp_path / parent.name)
    code, found = checks(cli)
    assert code == 7 and found["chains"]["status"] == "fail"
    assert found["chains"]["details"] == [f"{incremental['id']}: its chain needs "
                                          f"{incremental['parent']}, which is missing"]
    assert "pack --full" in found["chains"]["fix"]


def test_text_report_shows_each_fix_and_japanese(cli, healthy, monkeypatch):
    os.chmod(cli.store, 0o755)
    code, out, _ = cli("doctor")
    assert code == 1
    assert f"fix: chmod 700 {cli.store}" in out
    assert out.rstrip().endswith("0 problem(s), 1 warning(s).")
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LANGUAGE", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    code, out, _ = cli("doctor")
    assert code == 1 and "保存先の権限" in out and f"対処: chmod 700 {cli.store}" in out
    assert out.rstrip().endswith("問題 0 件、警告 1 件。")


def test_a_check_that_breaks_is_reported_and_the_others_still_run(cli, healthy, monkeypatch):
    from poppoarc.doctor import checks as checks_module
    from poppoarc.errors import SourceError

    def broken(*args, **kwargs):
        raise SourceError("cannot read directory: Permission denied", path=cli.root / "data")

    monkeypatch.setattr(checks_module, "scan", broken)
    code, found = checks(cli)
    assert code == 7 and found["databases"]["status"] == "fail"
    assert "the check itself failed" in found["databases"]["message"]
    assert "Permission denied" in found["databases"]["message"]
    assert found["verified"]["status"] == "ok" and len(found) == 17
