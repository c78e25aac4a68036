"""A root that is not an installation (issue 26): a typo in POPPO_ROOT, a disk not mounted.

pack, schedule and unpack refuse it with exit 20 naming it (unless --force); unpack into
an empty or missing root (a new machine) is a restore, and works; doctor reports it; a
target emptied since the previous archive is named."""

import json
import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from poppoarc.snapshot.root import MARKERS, RootFacts, look_at_root, root_problem
from tests.helpers import CLI, digest

SCHEDULE = {"backup": {"schedule": "0 2 * * *"}}


def test_root_problem_is_pure_and_names_the_markers():
    assert root_problem(RootFacts("/r", False, False)) == "does not exist"
    assert root_problem(RootFacts("/r", False, False), empty_is_fine=True) is None
    assert root_problem(RootFacts("/r", True, False)) == "is not a directory"
    assert root_problem(RootFacts("/r", True, False), empty_is_fine=True) == "is not a directory"
    assert "empty" in root_problem(RootFacts("/r", True, True))
    assert root_problem(RootFacts("/r", True, True), empty_is_fine=True) is None
    other = RootFacts("/r", True, True, (), ("Documents",))
    assert all(m in root_problem(other) for m in MARKERS)
    assert root_problem(other, empty_is_fine=True) == root_problem(other)
    for marker in MARKERS:
        assert root_problem(RootFacts("/r", True, True, (marker,), ("x",))) is None


def test_look_at_root_ignores_poppoarcs_own_places(tmp_path):
    root = tmp_path / "new"
    (root / "backups").mkdir(parents=True)
    (root / ".poppoarc.lock").write_text("")
    facts = look_at_root(root, (root / "backups", tmp_path / "keys"))
    assert facts.others == () and root_problem(facts, empty_is_fine=True) is None
    (root / "data").mkdir()
    assert look_at_root(root).markers == ("data/",)
    (root / "config").mkdir()
    (root / "config" / "config.json").mkdir()       # a directory is not the config file
    assert look_at_root(root).markers == ("data/",)


@pytest.mark.parametrize("shape", ["missing", "empty", "home"])
def test_pack_refuses_a_root_that_is_not_an_installation(tmp_path, capsys, shape):
    root = tmp_path / "popo"                        # a typo of ".../poppo"
    if shape != "missing":
        root.mkdir()
    if shape == "home":
        (root / "Documents").mkdir()
        (root / "notes.txt").write_text("mine\n")
    cli = CLI(root, tmp_path / "store", capsys)
    code, out, err = cli("pack")
    assert code == 20, err
    assert err.count("\n") == 1 and str(root) in err and "POPPO_ROOT" in err
    assert ("--force" in err) == (shape != "missing")      # (no option conjures a root)
    assert not (tmp_path / "store").exists()        # nothing made: no store, no key, no lock
    assert not root.exists() or sorted(os.listdir(root)) in ([], ["Documents", "notes.txt"])
    code, doc = cli.json("pack")
    assert code == 20 and doc["error"]["type"] == "SourceError"


def test_pack_force_takes_any_root(tmp_path, capsys):
    root = tmp_path / "odd"
    (root / "uploads").mkdir(parents=True)
    cli = CLI(root, tmp_path / "store", capsys)
    code, out, err = cli("pack", "--force")
    assert code == 0, err


def test_schedule_refuses_before_it_makes_a_store(tmp_path, capsys):
    root = tmp_path / "unmounted"
    root.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SCHEDULE))
    cli = CLI(root, tmp_path / "store", capsys)
    for argv in (["schedule", "--once"], ["schedule"]):
        code, out, err = cli("--config", str(config), *argv)
        assert code == 20 and str(root) in err, err
    assert not (tmp_path / "store").exists()


class _Clock:
    """Schedule time that moves an hour each time the service sleeps; ``on_sleep(n)`` runs
    then."""

    def __init__(self, start, on_sleep):
        self.t, self.sleeps, self.on_sleep = start, 0, on_sleep

    def now(self):
        return self.t

    def sleep(self, seconds, stopping):
        self.sleeps += 1
        self.t += timedelta(hours=1)
        self.on_sleep(self.sleeps)


def test_scheduled_runs_fail_while_the_disk_is_gone(installation, tmp_path):
    """The service started on an installation; the disk under it goes away (the mount point
    stays, empty): the next run fails with exit 20, recorded, and packs nothing."""
    from poppoarc.config import resolve
    from poppoarc.service.scheduler import Scheduler

    store = tmp_path / "store"
    (installation / "config" / "config.json").write_text(
        json.dumps({"backup": {"schedule": "0 * * * *"}}))
    moved = tmp_path / "unmounted"
    service = None

    def on_sleep(count):
        if count == 1:                  # after the baseline: the disk goes away
            os.rename(installation, moved)
            installation.mkdir()
        else:
            service.request_stop()

    start = datetime(2025, 6, 1, 0, 30, tzinfo=timezone.utc)
    service = Scheduler(resolve(str(installation), store=str(store)),
                        clock=_Clock(start, on_sleep), retries=0)
    (record,) = service.run_forever(handle_signals=False)
    assert not record.ok and record.error.exit_code == 20
    assert str(installation) in str(record.error)
    assert not list(store.glob("*.poppo.tar.zst"))


def test_doctor_reports_a_wrong_root(tmp_path, capsys, installation):
    cli = CLI(tmp_path / "nothing-here", tmp_path / "store", capsys)
    code, doc = cli.json("doctor")
    assert code == 7
    root = next(c for c in doc["checks"] if c["id"] == "root")
    assert root["status"] == "fail" and "does not exist" in root["message"]
    assert "--root" in root["fix"]
    code, doc = CLI(installation, tmp_path / "store", capsys).json("doctor")
    root = next(c for c in doc["checks"] if c["id"] == "root")
    assert root["status"] == "ok" and "config/config.json" in root["message"]


def test_unpack_into_an_empty_or_missing_root_works_and_into_a_foreign_one_does_not(
        cli, installation, tmp_path, capsys):
    archive = cli.pack()["id"]
    store = tmp_path / "store"
    # a new machine: the root does not exist yet (created), or exists empty with the
    # store inside it (the default ROOT/backups)
    missing = tmp_path / "new-machine" / "poppo"
    (tmp_path / "new-machine").mkdir()
    code, out, err = CLI(missing, store, capsys)("unpack", archive)
    assert code in (0, 1), err
    assert (missing / "config" / "config.json").read_bytes() == \
        (installation / "config" / "config.json").read_bytes()
    empty = tmp_path / "empty"
    (empty / "backups").mkdir(parents=True)
    shutil.copy(store / f"{archive}.poppo.tar.zst", empty / "backups")
    code, out, err = CLI(empty, empty / "backups", capsys)("unpack", archive)
    assert code in (0, 1), err
    assert digest(empty / "config") == digest(installation / "config")
    # someone's home directory: refused, nothing written
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("\\begin{document}\n")
    before = sorted(os.listdir(home))
    cli_home = CLI(home, store, capsys)
    code, out, err = cli_home("unpack", archive)
    assert code == 20 and str(home) in err and "--force" in err and "restore into it" in err
    assert sorted(os.listdir(home)) == before
    code, out, err = cli_home("unpack", archive, "--dry-run")
    assert code == 20
    code, out, err = cli_home("unpack", archive, "--force", "--skip-backup")
    assert code in (0, 1), err
    assert (home / "thesis.tex").exists() and (home / "config" / "config.json").exists()
    # a dry run into a root that does not exist creates nothing and says so
    code, out, err = CLI(tmp_path / "not-yet", store, capsys)("unpack", archive, "--dry-run")
    assert code == 20 and "does not exist" in err and not (tmp_path / "not-yet").exists()


def test_a_target_emptied_since_the_previous_archive_is_named(cli, installation):
    first = cli.pack()
    assert first["targets"]["logs"]["files"] > 0
    for gz in installation.glob("logs/**/*.gz"):
        gz.unlink()
    code, out, err = cli("pack")
    assert code == 1
    assert f"target logs is empty now, and the previous archive {first['id']} has " \
           f"{first['targets']['logs']['files']} file(s) of it" in err
    code, out, err = cli("pack")                    # said once: the previous one was empty
    assert "is empty now" not in err


def test_a_root_or_config_under_an_unsearchable_directory_is_named(nobody):
    """qa's F9: Path.exists raised PermissionError (exit 70) for a root or a config file
    below a directory this user cannot search; now one line naming it, exit 20 or 3."""
    locked = nobody.home / "locked"
    (locked / "inst").mkdir(parents=True)
    os.chmod(locked, 0o700)             # root's, not searchable by nobody
    result = nobody.run("--root", str(locked / "inst"), "pack")
    assert result.returncode == 20, result.stderr
    assert "cannot reach the installation root: Permission denied" in result.stderr
    assert str(locked / "inst") in result.stderr and result.stderr.count("\n") == 1
    result = nobody.run("--root", str(nobody.home), "--config", str(locked / "c.json"), "list")
    assert result.returncode == 3, result.stderr
    assert "cannot reach the config file: Permission denied" in result.stderr


def test_keys_made_at_once_by_several_processes_are_one(tmp_path):
    """qa's F7 (the identity part): packs starting together on a new machine each create
    the encryption identity; one is kept, never replaced, and every process uses it."""
    import multiprocessing

    from poppoarc.crypto import identity

    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def make(key_dir):
        key, created = identity.ensure(key_dir)
        queue.put((identity.key_id(key), created))

    workers = [context.Process(target=make, args=(tmp_path / "keys",)) for _ in range(6)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    assert len({key for key, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")]
