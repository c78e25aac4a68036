"""An archive this user or this machine cannot read is `unreadable`, never `damaged`:
no retention deletes it, list marks it, doctor warns (follow-up F6)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from poppoarc.archives import verification
from poppoarc.store import local
from poppoarc.store.local import SUFFIX


def _setup(nobody, installation_template, **backup):
    root = nobody.home / "inst"
    shutil.copytree(installation_template("tiny"), root, symlinks=True)
    config = root / "config/config.json"
    document = json.loads(config.read_text()) if config.exists() else {}
    document.setdefault("backup", {}).update(backup)
    config.write_text(json.dumps(document))
    nobody.give(root)
    return root


def _run(nobody, root, *args):
    return nobody.run("--root", str(root), "--store", str(nobody.home / "store"), *args)


def test_prune_keeps_an_archive_this_user_cannot_open(nobody, installation_template):
    """The reproduction: a good archive made root's and 0600 in a store nobody owns, with
    backup.keep.damaged false.  Before: list said DAMAGED and prune deleted it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the archive to another user")
    root = _setup(nobody, installation_template, keep={"damaged": False})
    ids = []
    for _ in range(2):
        done = _run(nobody, root, "pack", "--json")
        assert done.returncode in (0, 1), done.stderr
        ids.append(json.loads(done.stdout)["id"])
    older = nobody.home / "store" / (ids[0] + SUFFIX)
    os.chown(older, 0, 0)
    os.chmod(older, 0o600)

    listed = json.loads(_run(nobody, root, "list", "--json").stdout)
    row = next(r for r in listed["archives"] if r["id"] == ids[0])
    assert row["status"] == "unreadable" and "Permission denied" in row["problem"]
    assert "UNREADABLE" in _run(nobody, root, "list").stdout

    done = _run(nobody, root, "prune", "--json")
    assert done.returncode == 1, done.stderr     # a warning names it
    report = json.loads(done.stdout)
    assert report["deleted"] == [] and older.exists()
    decision = next(d for d in report["decisions"] if d["id"] == ids[0])
    assert "unreadable" in decision["rules"]

    doctor = json.loads(_run(nobody, root, "doctor", "--json").stdout)
    check = next(c for c in doctor["checks"] if c["id"] == "archives")
    assert check["status"] == "warn"
    assert "1 of 2 archive(s) cannot be read here" in check["message"]


def test_too_many_open_files_is_not_damage(cli, monkeypatch):
    """EMFILE while opening an archive (ulimit -n): kept by prune, listed as unreadable."""
    ids = [cli.pack()["id"] for _ in range(2)]
    (cli.root / "config/config.json").write_text(json.dumps(
        {"backup": {"maxBackups": 1, "keep": {"damaged": False}}}))
    real_open = os.open

    def emfile(path, flags, *args, **kwargs):
        if str(path).endswith(ids[0] + SUFFIX):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(local.os, "open", emfile)
    code, listed = cli.json("list")
    row = next(r for r in listed["archives"] if r["id"] == ids[0])
    assert row["status"] == "unreadable" and "Too many open files" in row["problem"]
    code, report = cli.json("prune")
    assert report["deleted"] == [] and (cli.store / (ids[0] + SUFFIX)).exists()


def test_prune_keeps_the_newest_full_archive_it_could_not_read_while_verifying(cli,
                                                                               monkeypatch):
    """An I/O error while prune verifies the newest full archive is no verdict on it: it
    is kept (not counted as failing verification, then deleted as damaged)."""
    ids = [cli.pack()["id"] for _ in range(3)]
    (cli.root / "config/config.json").write_text(json.dumps(
        {"backup": {"maxBackups": 1, "keep": {"damaged": False}}}))
    real_verify = verification.verify

    def flaky(settings, reference, *args, **kwargs):
        if reference == ids[2]:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_verify(settings, reference, *args, **kwargs)

    monkeypatch.setattr("poppoarc.archives.pruning.verify", flaky)
    code, report = cli.json("prune")
    assert ids[2] not in report["deleted"] and (cli.store / (ids[2] + SUFFIX)).exists()
    assert report["verified"][ids[1]] is None           # the next full one was verified
    assert report["deleted"] == [ids[0]]
    assert any("could not be read here" in w for w in report["warnings"])
