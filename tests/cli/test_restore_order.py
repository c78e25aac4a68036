"""The order of a restore: plan, stage (every byte and database verified), beforeRestore,
safety archive, swap, health check, afterRestore.  A damaged archive fails while staging,
with the exit code verify gives it: the application was never stopped and no safety
archive was written (lead's follow-up F2 of issue 23)."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from poppoarc.operations import unpack     # the restore as steps

from tests.helpers import digest, vandalize
from tests.helpers.craft import craft, entry


def _hooks(installation: Path, log: Path, **extra) -> None:
    """Hooks that append their name to ``log``; beforeRestore also notes what it saw:
    a staging area beside the tree, and the number of archives in the store."""
    config = json.loads((installation / "config/config.json").read_text())
    seen = ("stage=$(ls -d .poppoarc-stage-* 2>/dev/null | wc -l); "
            f"safety=$(ls {installation.parent / 'store'} | grep -c . ); ")
    config["backup"]["hooks"] = {
        "beforeRestore": seen + f"echo \"before stage=$stage archives=$safety\" >> {log}",
        "afterRestore": f"echo \"after $POPPOARC_OUTCOME\" >> {log}"}
    config["backup"]["restore"] = {"healthCheck": f"echo health >> {log}"}
    config["backup"].update(extra)
    (installation / "config/config.json").write_text(json.dumps(config))


def _pre_restore_archives(cli) -> list[str]:
    code, listed = cli.json("list")
    return [row["id"] for row in listed["archives"] if row["type"] == "pre-restore"]


def test_stage_then_hook_then_safety_archive_then_swap(cli, installation, tmp_path):
    packed = cli.pack()
    vandalize(installation)
    log = tmp_path / "order.log"
    _hooks(installation, log)
    archives_before = len(list(cli.store.glob("*.poppo.tar.zst")))
    code, result = cli.json("unpack", packed["id"])
    assert code in (0, 1) and result["outcome"] == "committed", result
    lines = log.read_text().splitlines()
    # when beforeRestore ran, the archive was staged and no safety archive existed yet
    assert lines == [f"before stage=1 archives={archives_before}", "health",
                     "after committed"]
    assert result["safety_archive"] in _pre_restore_archives(cli)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_damaged_archive_never_stops_the_application_nor_writes_a_safety_archive(
        cli, installation, tmp_path, damage):
    packed = cli.pack()
    data = Path(packed["path"]).read_bytes()
    if damage == "flipped byte":       # in the body: only staging reads it
        data = data[:-3000] + bytes([data[-3000] ^ 0x40]) + data[-2999:]
    else:
        data = data[:len(data) * 2 // 3]
    damaged = tmp_path / "damaged.poppo.tar.zst"
    damaged.write_bytes(data)
    vandalize(installation)
    log = tmp_path / "order.log"
    _hooks(installation, log)
    before = digest(installation)
    verified, _, verify_err = cli("verify", str(damaged))
    code, _, err = cli("unpack", str(damaged))
    assert code == verified and code in (13, 14), (err, verify_err)
    assert len(err.splitlines()) == 1
    assert not log.exists(), "a hook ran: " + log.read_text()
    assert _pre_restore_archives(cli) == []
    assert digest(installation) == before
    assert not [p for p in installation.iterdir() if p.name.startswith(".poppoarc-")
                and p.name != ".poppoarc.lock"]


def test_a_database_failing_its_check_never_stops_the_application(cli, installation, key_home,
                                                                  tmp_path):
    """Signed, every digest right: only the check of the staged database finds it."""
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.executescript("CREATE TABLE t(a); INSERT INTO t SELECT randomblob(900) "
                       "FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
                       "WHERE x < 40) SELECT x FROM c);")
    conn.close()
    damaged = bytearray(source.read_bytes())
    damaged[4096:4096 + 16] = b"\x0d" + b"\xff" * 15
    record, data = entry("state/app.db", data=bytes(damaged), target="database")
    record.sqlite = True
    listed = {"path": record.path, "size": record.size, "sha256": record.sha256,
              "page_size": 4096, "user_version": 0, "tables": {"t": 40}, "check": "quick_check"}
    path = craft(cli.store, key_home, [entry("state", "dir"), (record, data)], databases=[listed])
    log = tmp_path / "order.log"
    _hooks(installation, log)
    before = digest(installation)
    verified, _, verify_err = cli("verify", str(path))
    code, _, err = cli("unpack", str(path))
    assert code == verified == 13, (err, verify_err)
    assert "state/app.db" in err
    assert not log.exists() and _pre_restore_archives(cli) == []
    assert digest(installation) == before


def test_a_hook_that_moves_what_the_swap_replaces_stages_again(cli, installation, tmp_path,
                                                              monkeypatch):
    """beforeRestore writes another target's file into a restored directory after staging:
    the paths to swap are taken again, the archive staged again along them, and that
    file is kept (it is not the restored target's)."""
    packed = cli.pack("--targets", "state")
    (installation / "state/running-tasks.json").write_text('["changed"]')
    config = json.loads((installation / "config/config.json").read_text())
    # a SQLite database belongs to the database target, even in state/
    config["backup"]["hooks"] = {"beforeRestore": f"{sys.executable} -c \"import sqlite3; "
                                                  "sqlite3.connect('state/late.db')"
                                                  ".execute('CREATE TABLE t(a)')\""}
    (installation / "config/config.json").write_text(json.dumps(config))
    staged = []
    real_stage = unpack._stage
    monkeypatch.setattr(unpack, "_stage", lambda restore, paths, *rest: staged.append(
        paths.units.sorted()) or real_stage(restore, paths, *rest))
    code, result = cli.json("unpack", packed["id"], "--targets", "state")
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert staged[0] == ["state"] and "state" not in staged[1], staged
    assert (installation / "state/late.db").exists()
    assert json.loads((installation / "state/running-tasks.json").read_text()) != ["changed"]
