"""A restore over the live tree returns once its swap is final; the swapped-out tree is
deleted by a detached process (``Tuning.trash_behind``, two-process mode), or before the
restore returns (serial, or switched off).  The same tree either way."""

import json

import pytest

from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism, Tuning
from poppoarc.restore import trash

from tests.helpers import digest, vandalize

WAYS = {"behind": (TWO_PROCESS, True), "here": (TWO_PROCESS, False), "serial": (SERIAL, True)}


@pytest.mark.parametrize("way", list(WAYS))
def test_the_same_tree_whether_the_old_one_goes_behind_or_here(cli, way, monkeypatch):
    mode, behind = WAYS[way]
    cli.parallel = Parallelism(mode, 2, Tuning(trash_behind=behind))
    archive = cli.pack()["path"]
    vandalize(cli.root)
    code, _, err = cli("unpack", archive, "--skip-backup", "-q")
    assert code == 0, err
    expected = files(cli.root)             # databases as a restore writes them
    vandalize(cli.root)
    trash.sweep(cli.root, wait=True)
    spawned = []
    real = trash.remove_behind
    monkeypatch.setattr(trash, "remove_behind",
                        lambda path, fd: (spawned.append(path), real(path, fd)))
    code, out, err = cli("unpack", archive, "--skip-backup", "-q")
    assert code == 0, err
    assert len(spawned) == (way == "behind")
    assert files(cli.root) == expected
    trash.sweep(cli.root, wait=True)
    assert not [p.name for p in cli.root.iterdir()
                if p.name.startswith(".poppoarc-") and p.name != ".poppoarc.lock"]


def test_the_next_command_sweeps_the_trash_a_killed_remover_left(cli):
    archive = cli.pack()["path"]
    left = cli.root / ".poppoarc-trash-r9" / ".poppoarc-old-r9" / "config"
    left.mkdir(parents=True)
    (left / "app.json").write_text(json.dumps({"old": True}))
    code, _, err = cli("list", "-q")
    assert code == 0, err
    assert not (cli.root / ".poppoarc-trash-r9").exists()
    assert archive


def files(root):
    """The tree but empty -wal files (a database reader may leave one)."""
    return {k: v for k, v in digest(root).items() if not k.endswith("-wal")}
