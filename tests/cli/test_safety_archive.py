"""The safety archive is complete or the restore does not start (exit 30, naming the
paths), unless --skip-backup; a dry run reports the live paths it could not save; the
afterRestore hook starts again what beforeRestore stopped when a restore fails (issue 24, 2).

Run as an unprivileged user: root reads every file."""

import json
import os
import shutil

from tests.helpers import digest


def _setup(nobody, installation_template, config=None):
    root = nobody.home / "inst"
    shutil.copytree(installation_template("tiny"), root, symlinks=True)
    if config is not None:
        settings = json.loads((root / "config/config.json").read_text())
        settings.setdefault("backup", {}).update(config)
        (root / "config/config.json").write_text(json.dumps(settings))
    nobody.give(root)
    return root


def _poppoarc(nobody, root, *args):
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), *args, "--json")
    return done.returncode, json.loads(done.stdout) if done.stdout else None, done.stderr


def _archives(nobody):
    return sorted(p.name for p in (nobody.home / "store").glob("*.poppo.tar.zst"))


def test_an_unreadable_live_file_stops_the_restore_and_the_dry_run_says_so(
        nobody, installation_template):
    root = _setup(nobody, installation_template)
    code, packed, err = _poppoarc(nobody, root, "pack")
    assert code in (0, 1), err
    (root / "state/running-tasks.json").write_text('["changed since"]')
    os.chmod(root / "state/running-tasks.json", 0)
    before, archives = digest(root), _archives(nobody)

    code, planned, err = _poppoarc(nobody, root, "unpack", packed["id"], "--dry-run")
    assert code == 1, err
    assert planned["plan"]["unreadable"] == ["state/running-tasks.json"]
    assert any("cannot be read by this user: state/running-tasks.json; the restore would stop "
               "(exit 30)" in w for w in planned["warnings"])

    code, document, err = _poppoarc(nobody, root, "unpack", packed["id"])
    assert code == 30, err
    assert document["error"]["type"] == "RestoreError"
    assert "state/running-tasks.json" in err and "--skip-backup" in err
    assert digest(root) == before and _archives(nobody) == archives

    code, document, err = _poppoarc(nobody, root, "unpack", packed["id"], "--targets", "config")
    assert code in (0, 1), err           # the unreadable file is not the restore's to replace
    assert os.stat(root / "state/running-tasks.json").st_mode & 0o777 == 0

    code, document, err = _poppoarc(nobody, root, "unpack", packed["id"], "--skip-backup")
    assert code in (0, 1), err
    assert document["outcome"] == "committed" and document["safety_archive"] is None
    assert (root / "state/running-tasks.json").read_text() != '["changed since"]'


def test_what_the_safety_archive_could_not_save_stops_the_restore(nobody, installation_template,
                                                                  tmp_path):
    """The plan saw nothing wrong; the beforeRestore hook (an application stopping) leaves a
    file this user cannot read.  The safety archive skips it, so the restore stops, the
    incomplete safety archive is deleted, and afterRestore starts the application again."""
    marker = nobody.home / "after-restore-ran"
    root = _setup(nobody, installation_template, {"hooks": {
        "beforeRestore": "echo '{\"last\": 1}' > state/on-stop.json && chmod 000 state/on-stop.json",
        "afterRestore": f"echo \"$POPPOARC_OUTCOME\" > {marker}"}})
    code, packed, err = _poppoarc(nobody, root, "pack")
    assert code in (0, 1), err
    archives = _archives(nobody)
    code, document, err = _poppoarc(nobody, root, "unpack", packed["id"])
    assert code == 30, err
    assert ("the safety archive could not save 1 live path(s) the restore would replace: "
            "state/on-stop.json (cannot read (Permission denied); not archived)") in err
    assert _archives(nobody) == archives, "the incomplete safety archive is deleted"
    assert marker.read_text() == "failed\n"
    assert (root / "state/on-stop.json").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".poppoarc-")
                and p.name != ".poppoarc.lock"]


def test_a_database_sqlite_cannot_open_stops_the_restore(nobody, installation_template):
    root = _setup(nobody, installation_template)
    code, packed, err = _poppoarc(nobody, root, "pack")
    assert code in (0, 1), err
    (root / "data/ccpm/cache.sqlite3-shm").unlink(missing_ok=True)
    os.chmod(root / "data/ccpm", 0o555)      # its WAL cannot be read without a -shm
    try:
        code, planned, err = _poppoarc(nobody, root, "unpack", packed["id"], "--dry-run")
        assert "data/ccpm/cache.sqlite3" in planned["plan"]["unreadable"]
        code, document, err = _poppoarc(nobody, root, "unpack", packed["id"], "--targets",
                                        "database")
        assert code == 30 and "data/ccpm/cache.sqlite3" in err, err
    finally:
        os.chmod(root / "data/ccpm", 0o755)
