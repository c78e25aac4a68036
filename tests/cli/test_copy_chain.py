"""copy takes an incremental archive's chain along (issue 26): the ancestors the
destination lacks are copied first, oldest first, or refused by name with
--no-ancestors; the text says what was checked; a failure anywhere (a damaged ancestor,
a full disk, SIGKILL) leaves no archive at the destination that was not there before."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poppoarc.demo.changes import simulate_day
from tests.helpers import CLI, digest, run_poppoarc

SUFFIX = ".poppo.tar.zst"


@pytest.fixture
def chain(tmp_path, installation_template, capsys):
    """A full archive and two incrementals of the small installation."""
    root = tmp_path / "inst"
    shutil.copytree(installation_template("small"), root, symlinks=True)
    cli = CLI(root, tmp_path / "store", capsys)
    archives = [cli.pack("--full")]
    for day in (1, 2):
        simulate_day(root, fraction=0.01, seed=day)
        archives.append(cli.pack("--incremental"))
    return cli, archives


def _archives(store: Path) -> list[str]:
    return sorted(p.name[:-len(SUFFIX)] for p in store.glob("*" + SUFFIX)) if store.is_dir() else []


def test_copy_of_an_incremental_takes_the_ancestors_along_and_says_what_it_checked(chain, tmp_path):
    cli, (full, middle, newest) = chain
    elsewhere = tmp_path / "elsewhere"
    code, out, err = cli("copy", newest["id"], "--to", str(elsewhere))
    assert code == 0, err
    assert _archives(elsewhere) == sorted(a["id"] for a in (full, middle, newest))
    lines = out.splitlines()
    assert lines[0].startswith(f"Copied {newest['id']}")
    assert f"  ancestor {full['id']} (" in out and f"  ancestor {middle['id']} (" in out
    assert out.index(full["id"]) < out.index(middle["id"])         # oldest first
    assert out.count("): copied") == 2
    assert ("verified at the destination as a restore reads it: the signatures and every byte "
            "of 3 archives (the chain)") in out
    assert "not checked" not in out

    # the copy restores there, on its own, the tree the source's chain restores
    restored = [tmp_path / "from-source", tmp_path / "from-copy"]
    for root, store in zip(restored, (cli.store, elsewhere)):
        root.mkdir()
        code, done = CLI(root, store, cli.capsys).json("unpack", newest["id"], "--skip-backup")
        assert code in (0, 1), done
    assert digest(restored[0]) == digest(restored[1])

    # again: every archive is there already; nothing is copied, the chain is verified
    code, again = cli.json("copy", newest["id"], "--to", str(elsewhere))
    assert code == 0 and again["outcome"] == "present"
    assert [a["outcome"] for a in again["ancestors"]] == ["present", "present"]
    assert again["verified"]["chain"] == [full["id"], middle["id"]]


def test_only_the_missing_ancestors_are_copied(chain, tmp_path):
    cli, (full, middle, newest) = chain
    elsewhere = tmp_path / "elsewhere"
    code, first = cli.json("copy", full["id"], "--to", str(elsewhere))
    assert code == 0 and first["ancestors"] == []
    before = (elsewhere / f"{full['id']}{SUFFIX}").stat().st_mtime_ns
    code, copied = cli.json("copy", newest["id"], "--to", str(elsewhere))
    assert code == 0, copied
    assert [(a["id"], a["outcome"]) for a in copied["ancestors"]] == [
        (full["id"], "present"), (middle["id"], "copied")]
    assert (elsewhere / f"{full['id']}{SUFFIX}").stat().st_mtime_ns == before


def test_no_ancestors_refuses_naming_the_missing_ones_and_writes_nothing(chain, tmp_path):
    cli, (full, middle, newest) = chain
    elsewhere = tmp_path / "elsewhere"
    code, out, err = cli("copy", newest["id"], "--to", str(elsewhere), "--no-ancestors")
    assert code == 17, err
    assert err.count("\n") == 1 and f"{full['id']}, {middle['id']}" in err
    assert "--no-ancestors" in err
    assert _archives(elsewhere) == []
    # with the ancestors there, --no-ancestors copies the archive alone
    cli("copy", middle["id"], "--to", str(elsewhere))
    code, copied = cli.json("copy", newest["id"], "--to", str(elsewhere), "--no-ancestors")
    assert code == 0 and copied["outcome"] == "copied"
    assert copied["verified"]["chain"] == [full["id"], middle["id"]]
    # a full archive has no ancestors to lack
    other = tmp_path / "other"
    code, alone = cli.json("copy", full["id"], "--to", str(other), "--no-ancestors")
    assert code == 0 and alone["ancestors"] == []


def test_a_damaged_ancestor_in_the_source_stops_the_copy_before_anything_stays(chain, tmp_path):
    cli, (full, middle, newest) = chain
    path = Path(middle["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01                   # inside the body: only its checksum sees it
    path.write_bytes(bytes(data))
    elsewhere = tmp_path / "elsewhere"
    code, out, err = cli("copy", newest["id"], "--to", str(elsewhere))
    assert code == 17, err
    assert err.count("\n") == 1 and f"ancestor {middle['id']}" in err
    assert "nothing was copied" in err
    assert _archives(elsewhere) == [], "the full ancestor copied first was deleted again"
    assert not elsewhere.exists()       # the store the copy made is gone again, lock and all


def test_a_missing_ancestor_is_named(chain, tmp_path):
    cli, (full, middle, newest) = chain
    Path(full["path"]).unlink()
    code, out, err = cli("copy", newest["id"], "--to", str(tmp_path / "elsewhere"))
    assert code == 17 and f"parent {full['id']} of {middle['id']} is missing" in err
    assert _archives(tmp_path / "elsewhere") == []


def test_a_full_destination_is_exit_23_and_leaves_no_archive(chain, small_fs):
    cli, (full, middle, newest) = chain
    room = full["size"] + middle["size"] // 2      # the first ancestor fits, not the second
    where = small_fs(max(64, room // 1024))
    code, out, err = cli("copy", newest["id"], "--to", str(where))
    assert code == 23, err
    assert err.count("\n") == 1
    assert _archives(where) == []
    assert [p.name for p in where.iterdir() if p.name != ".poppoarc-store.lock"] == []   # (the store's lock)


def _big_archive(root: Path, store: Path) -> dict:
    (root / "state/big.bin").write_bytes(os.urandom(48 << 20))
    done = run_poppoarc("--root", str(root), "--store", str(store), "pack", "--full", "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_a_killed_copy_leaves_no_archive_and_the_next_copy_finishes(chain, tmp_path):
    cli, archives = chain
    packed = _big_archive(cli.root, cli.store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "poppoarc", "--root", str(cli.root), "--store",
               str(cli.store), "copy", packed["id"], "--to", str(elsewhere)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = False
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            temps = [p for p in elsewhere.iterdir() if ".tmp" in p.name]
            if temps and temps[0].stat().st_size > 1 << 20:
                child.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
    finally:
        child.kill()
        child.wait()
    assert killed, "the copy ended before it could be killed"
    assert _archives(elsewhere) == []
    code, listed = CLI(cli.root, elsewhere, cli.capsys).json("list")
    assert code == 0 and listed["archives"] == []
    code, copied = cli.json("copy", packed["id"], "--to", str(elsewhere))
    assert code == 0 and copied["outcome"] == "copied"
    assert [p.name for p in elsewhere.iterdir()
            if p.name != ".poppoarc-store.lock"] == [f"{packed['id']}{SUFFIX}"]


def test_a_named_pack_is_full_when_incrementals_are_on(cli, installation):
    config = installation / "config/config.json"
    settings = json.loads(config.read_text())
    settings["backup"]["incremental"] = {"enabled": True}
    config.write_text(json.dumps(settings))
    first = cli.pack()
    plain = cli.pack()
    assert plain["incremental"] and not plain["named_full"]
    code, out, err = cli("pack", "--name", "move-to-new-host")
    assert code in (0, 1), err
    assert "full: a named archive restores on its own" in out and "incremental on" not in out
    named = cli.pack("--name", "again")
    assert not named["incremental"] and named["named_full"]
    asked = cli.pack("--name", "an incremental on purpose", "--incremental")
    assert asked["incremental"] and not asked["named_full"]
    assert first["id"] != asked["parent"]


def test_an_incremental_carried_to_a_second_machine_restores_there(chain, tmp_path,
                                                                  monkeypatch):
    """The chain carried on a stick (copy into a directory), then copied from the stick's
    file into the new machine's store, under another key directory that pins the old key:
    it restores there the tree it restores at home."""
    cli, (full, middle, newest) = chain
    home = tmp_path / "restored-at-home"
    home.mkdir()
    code, done = CLI(home, cli.store, cli.capsys).json("unpack", newest["id"], "--skip-backup")
    assert code in (0, 1), done
    stick = tmp_path / "stick"
    code, out, err = cli("copy", newest["id"], "--to", str(stick))
    assert code == 0 and len(_archives(stick)) == 3, err
    public = (Path(os.environ["POPPOARC_HOME"]) / "signing.pub").read_text().strip()

    new_root, new_keys = tmp_path / "new-root", tmp_path / "new-keys"
    new_root.mkdir()
    monkeypatch.setenv("POPPOARC_HOME", str(new_keys))
    move = tmp_path / "move.json"
    move.write_text(json.dumps({"backup": {"signing": {"trustedKeys": [public]}}}))
    new = CLI(new_root, new_root / "backups", cli.capsys)
    code, out, err = new("--config", str(move), "copy",
                         str(stick / f"{newest['id']}{SUFFIX}"), "--to", str(new.store))
    assert code == 0, err
    assert out.count("): copied") == 2
    code, done = new.json("--config", str(move), "unpack", newest["id"], "--skip-backup")
    assert code in (0, 1), done
    # the secrets are sealed to the old machine's own identity, which stays there
    # (docs/migration.md moves them with a passphrase): everything else is the same
    mine, theirs = digest(new_root), digest(home)
    assert ".env" in theirs and ".env" not in mine
    theirs.pop(".env")
    assert mine == theirs
