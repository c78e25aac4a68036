"""The parallelism decides where the work runs, never what is written: a pack in two
processes and the same pack serial are the same archive, byte for byte, whether the
helpers take a share, walk a directory apart or read an incremental's parent; and the
switch is an option (``--parallel``, ``POPPOARC_PARALLEL``, ``backup.parallel``)."""

import json
import os
import shutil

import pytest

from poppoarc.archives import facts
from poppoarc.config import resolve
from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism, choose

from tests.helpers import CLI, EAGER, digest

def test_serial_and_two_process_write_the_same_archive_byte_for_byte(cli, fixed_pack):
    cli.pack()      # the tree settles (reading a WAL database the first time makes a -shm)
    serial = fixed_pack(Parallelism(SERIAL, 2, EAGER))
    assert fixed_pack.started == [] and fixed_pack.shares == [True]
    both = fixed_pack(Parallelism(TWO_PROCESS, 2, EAGER))
    # the directory walked apart, then its share packed, by a second process
    assert fixed_pack.started == ["poppoarc.pack.subtree"] and fixed_pack.shares == [True]
    assert both == serial
    assert fixed_pack(Parallelism(SERIAL, 2, EAGER)) == serial      # and it is repeatable
    # the default thresholds cut no share on this installation: the same bytes again, but
    # another cut makes other frames (one compression thread does too: zstd's workers)
    assert fixed_pack(Parallelism(TWO_PROCESS, 2)) == fixed_pack(Parallelism(SERIAL, 2))
    assert fixed_pack(Parallelism(SERIAL, 2)) != serial


def test_an_incremental_is_the_same_archive_both_ways(cli, fixed_pack, installation):
    """Its parent's index is read beside the walk, by the index's helper in two-process
    mode (and no directory is walked apart for an incremental)."""
    cli.pack("--full")
    (installation / "state" / "new.json").write_text("{}")
    cache = facts.directory(resolve(str(installation), store=str(fixed_pack.store)))
    shutil.rmtree(cache)        # the parent's index is read (not its facts cache)
    serial = fixed_pack(Parallelism(SERIAL, 2, EAGER), incremental=True)
    shutil.rmtree(cache)
    both = fixed_pack(Parallelism(TWO_PROCESS, 2, EAGER), incremental=True)
    assert "poppoarc.format.index_part" in fixed_pack.started
    assert both == serial


def test_a_serial_restore_is_the_same_tree(cli, installation, tmp_path, capsys):
    packed = cli.using(Parallelism(TWO_PROCESS, 2, EAGER)).pack()
    trees = {}
    for mode in (SERIAL, TWO_PROCESS):
        root = tmp_path / mode
        root.mkdir()
        code, result = CLI(root, cli.store, capsys, Parallelism(mode, 2, EAGER)).json(
            "unpack", packed["id"], "--skip-backup")
        assert code in (0, 1) and result["outcome"] == "committed"
        trees[mode] = digest(root)
    assert trees[SERIAL] == trees[TWO_PROCESS] and len(trees[SERIAL]) > 20


def test_the_mode_is_an_option_the_environment_or_the_configuration(cli, installation,
                                                                    monkeypatch):
    monkeypatch.delenv("POPPOARC_PARALLEL", raising=False)
    assert choose("serial").mode == SERIAL
    assert choose(None, {"POPPOARC_PARALLEL": "serial"}, "two-process").mode == SERIAL
    assert choose(None, {}, "serial").mode == SERIAL
    assert choose("two-process", {"POPPOARC_PARALLEL": "serial"}).mode == TWO_PROCESS
    auto = choose(None, {})
    assert auto.mode == (TWO_PROCESS if (os.cpu_count() or 1) > 1 else SERIAL)
    assert choose(None, {"POPPOARC_THREADS": "1"}).compression_threads == 1
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document["backup"]["parallel"] = "serial"
    config.write_text(json.dumps(document))
    assert resolve(str(installation)).parallel.mode == SERIAL
    assert resolve(str(installation), parallel="two-process").parallel.mode == TWO_PROCESS
    code, _, err = cli("--parallel", "sideways", "list")
    assert code == 2 and "--parallel" in err and "sideways" in err
    monkeypatch.setenv("POPPOARC_PARALLEL", "sideways")
    code, _, err = cli("list")
    assert code == 3 and "POPPOARC_PARALLEL" in err
    monkeypatch.delenv("POPPOARC_PARALLEL")
    document["backup"]["parallel"] = "sideways"
    config.write_text(json.dumps(document))
    code, _, err = cli("pack")
    assert code == 3 and "backup.parallel" in err
    code, _, _ = cli("--parallel", "serial", "pack")      # the option comes first
    assert code == 3                                        # (the config is still read)
