"""A directory of many files walked by the pack's helper from the start (in a second
process, or in this one in serial mode): the same archive as one walk and one process
give, whatever fails."""

import dataclasses
import json
import os
import signal
import sqlite3

import pytest

from poppoarc.pack import share as share_module, subtree as pack_subtree
from poppoarc.pack.share import choose_share, share_time
from poppoarc.pack.subtree import candidates, count_entries, literal_directories
from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism, Tuning, process
from poppoarc.snapshot.catalogue import build_catalogue

from tests.helpers import CLI, digest, listed_records, records_alone

TUNING = Tuning()
MIN_SHARE = TUNING.subtree_min_share


def helper_plan(work, own, linked):
    return pack_subtree.helper_plan(work, own, linked, TUNING)


def _tune(cli, **changes):
    """``cli``'s parallelism with the thresholds changed."""
    cli.parallel = dataclasses.replace(
        cli.parallel, tuning=dataclasses.replace(cli.parallel.tuning, **changes))


def _two_process_only(cli):
    if not cli.parallel.processes:
        pytest.skip("a helper process fails; serial mode starts none")


def test_the_directories_are_those_the_patterns_name_literally():
    assert literal_directories(("state/**",)) == ("state",)
    assert literal_directories(("logs/**/*.gz",)) == ("logs",)
    assert literal_directories(("data/ccla/**", "data/ccla/x/*.json")) == ("data/ccla",)
    assert literal_directories(("data/ccla/**", "data/**/*.json")) == ("data",)
    # in the order their contents sort: "data/cc-x/..." before "data/cc/..."
    assert literal_directories(("data/cc/**", "agents/**", "data/cc-x/**")) == \
        ("agents", "data/cc-x", "data/cc")
    assert literal_directories(("data/ccla/**", "*/x/**")) is None
    assert literal_directories(("state",)) is None          # a file name, not a directory
    assert literal_directories(("st?te/**",)) is None


def test_only_targets_that_store_paths_of_named_directories_are_candidates():
    # the body's last targets first; database and security have rules that are not
    # plain storage, config ends with the generated environment member
    assert candidates(build_catalogue({}, None)) == [
        ("state", ("state",)), ("agents", ("agents", "config/agents", "data/ccag",
                                           "data/ccla", "data/ccpm")),
        ("logs", ("logs",))]
    assert candidates(build_catalogue({}, ("agents", "logs")))[1] == ("logs", ("logs",))
    custom = build_catalogue({"agents": {"include": ["data/ccla/**"]}}, None)
    assert ("agents", ("data/ccla",)) in candidates(custom)


def test_entries_are_counted_up_to_the_cap(tmp_path):
    for n in range(3):
        (tmp_path / f"d{n}").mkdir()
        for m in range(4):
            (tmp_path / f"d{n}" / f"f{m}").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "d0")      # not followed
    assert count_entries([str(tmp_path)], 1000) == 3 + 12 + 1
    assert count_entries([str(tmp_path / "d0"), str(tmp_path / "d1")], 1000) == 8
    assert count_entries([str(tmp_path)], 5) == 5
    assert count_entries([str(tmp_path / "missing")], 5) == 0


def test_the_directories_chosen_are_those_the_walk_would_enter(tmp_path):
    catalogue = build_catalogue({"agents": {"include": ["data/ccla/**", "agents/**"]}},
                                ("agents", "database"))
    root = tmp_path / "root"
    for name in ("a", "b", "c"):
        (root / "data/ccla" / name).mkdir(parents=True)
    (root / "agents").mkdir()
    (root / "agents/x.json").write_text("{}")
    def choose(root, catalogue, skip=()):
        return pack_subtree.choose_directories(root, catalogue, skip, min_entries=3)

    assert choose(str(root), catalogue) == ("agents", ("agents", "data/ccla"))
    # a skipped directory, or one below a skipped one, is not walked: nor by a helper
    assert choose(str(root), catalogue, skip=(root / "agents",)) == ("agents", ("data/ccla",))
    assert choose(str(root), catalogue, skip=(root / "data",)) is None     # 1 entry left
    # a missing directory is left out; too few entries, no helper
    (root / "agents/x.json").unlink()
    (root / "agents").rmdir()
    assert choose(str(root), catalogue) == ("agents", ("data/ccla",))
    (root / "data/ccla/c").rmdir()
    assert choose(str(root), catalogue) is None
    (root / "data/ccla/c").mkdir()
    # a symbolic link on the way: the walk does not follow it
    os.rename(root / "data", tmp_path / "elsewhere")
    (root / "data").symlink_to(tmp_path / "elsewhere")
    assert choose(str(root), catalogue) is None


def _own_first(work, linked):
    """The first of state's records the helper packs when only state may be shared."""
    plan = helper_plan([(t, n, size, t == "state") for t, n, size in work], "state", linked)
    assert plan is None or plan[0] == "state"
    return None if plan is None else plan[1]


def test_the_share_makes_both_processes_equally_long():
    work = [("config", 10, 0), ("database", 2, 0), ("agents", 40_000, 0), ("state", 50_000, 0)]
    first = _own_first(work, linked=False)
    assert abs((40_012 + first) - (50_000 - first)) <= 1
    # a target ahead of everything: the helper takes its last half
    assert _own_first([("state", 60_000, 0)], linked=False) == 30_000
    # hard links: the helper packs all of the target (a link's first record with it)
    assert _own_first(work, linked=True) == 0
    # too small a share is packed here
    assert _own_first([("state", 2 * MIN_SHARE - 2, 0)], linked=False) is None
    # content bounds the share (pro rata), and with hard links it cannot be cut
    big = [("agents", 50_000, 0), ("state", 50_000, 2 * TUNING.share_max_bytes)]
    assert _own_first(big, linked=False) == 25_000
    assert _own_first(big, linked=True) is None


def test_the_helper_takes_another_targets_share_when_its_own_is_small():
    even = [("config", 10, 0, False), ("agents", 50_000, 0, True), ("state", 50_000, 0, True)]
    assert helper_plan(even, "state", linked=False) == ("state", 0)    # all of its own
    small = [("config", 10, 0, False), ("agents", 78_000, 0, True), ("state", 22_000, 0, True)]
    target, first = helper_plan(small, "state", linked=False)
    assert target == "agents" and abs((10 + first) - (78_000 - first)) <= 1
    assert share_time(small, target, first, 0) < share_time(small, "state", 0, 0)
    # its spool not the target's records: a share as a started helper's, no start
    assert helper_plan(even, None, linked=False) == choose_share(even, TUNING, 0, MIN_SHARE)
    assert helper_plan([("config", 100, 0, False), ("state", 100, 0, True)], "state",
                       linked=False) is None


def _grow_state(root):
    """A state directory with what a walk can meet there: nested files, a database of
    another target (and its sidecar), a symbolic link, a FIFO, a file named badly."""
    state = root / "state"
    for n in range(6):
        sub = state / "requests" / f"r{n}"
        sub.mkdir(parents=True, exist_ok=True)
        for m in range(5):
            (sub / f"{m}.json").write_text(json.dumps({"n": n, "m": m}))
    for path in (state / "extra.db", state / "requests" / "nested.db"):
        with sqlite3.connect(path) as db:
            db.execute("create table t (x)")
            db.execute("insert into t values (1)")
        db.close()
    (state / "extra.db-wal").write_bytes(b"stale")
    (state / "latest").symlink_to("requests/r0/0.json")
    os.mkfifo(state / "pipe")
    (state / b"bad-\xff".decode("utf-8", "surrogateescape")).write_text("x")


@pytest.fixture(params=[TWO_PROCESS, SERIAL])
def apart(cli, monkeypatch, installation, request):
    """``cli``'s packs walk ``state`` in a helper (the tiny installation is far below the
    cost model's threshold), in a second process or (serial) in this one.  Returns what
    happened: ("merged", bool) for the walk's report and ("part", part or None) for the
    packed share."""
    _grow_state(installation)
    cli.parallel = Parallelism(request.param, 2, Tuning(subtree_min_entries=1))
    seen = []
    real_merge, real_result = pack_subtree.SubtreeHelper.merge_into, \
        share_module.Share.result

    def merge(self, walk):
        merged = real_merge(self, walk)
        seen.append(("merged", merged))
        return merged

    def result(self):
        part = real_result(self)
        seen.append(("part", part))
        return part

    monkeypatch.setattr(pack_subtree.SubtreeHelper, "merge_into", merge)
    monkeypatch.setattr(share_module.Share, "result", result)
    return seen


def _first_is(cli, first):
    """The helper packs its own target's (state's) records from ``first`` on (None: none)."""
    _tune(cli, plan=() if first is None else ("state", first))


def _same_state(fresh, root):
    """The restored state directory is the source's: files, links and modes alike, the
    databases by content (a snapshot is not the live file byte for byte), and nothing
    the pack leaves out (the stale sidecar, the badly named file)."""
    restored, source = digest(fresh / "state"), digest(root / "state")
    databases = ("extra.db", "requests/nested.db")
    left_out = ("extra.db-wal", b"bad-\xff".decode("utf-8", "surrogateescape"))
    assert {k: v for k, v in restored.items() if k not in databases} == \
        {k: v for k, v in source.items() if k not in databases + left_out}
    for name in databases:
        with sqlite3.connect(fresh / "state" / name) as db:
            assert db.execute("select x from t").fetchall() == [(1,)]
        db.close()


def _restored(cli, packed, tmp_path):
    """The archive unpacked into an empty root (the source's FIFO, not archived, removed
    from it so the two trees compare)."""
    (cli.root / "state/pipe").unlink(missing_ok=True)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _ = CLI(fresh, cli.store, cli.capsys).json("unpack", packed["id"], "--skip-backup")
    assert code == 0
    return fresh


@pytest.mark.parametrize("first,spill_at", [(0, 1 << 15), (7, 1 << 15), (None, 1 << 15),
                                            (7, 4)],
                         ids=["helper-packs-all", "split", "walk-only", "helper-walk-spilled"])
def test_a_directory_walked_apart_gives_the_same_archive(cli, apart, monkeypatch, tmp_path,
                                                         first, spill_at):
    _first_is(cli, first)
    _tune(cli, subtree_spill_at=spill_at)
    alone = cli.using(Parallelism(SERIAL, 1)).pack()
    packed = cli.pack()
    assert apart[0] == ("merged", True)
    if first is None:
        assert len(apart) == 1                      # told to stop: packed here
    else:
        assert apart[1][0] == "part" and apart[1][1] is not None and apart[1][1].files > 0
    assert listed_records(cli, packed) == listed_records(cli, alone)
    # what the helper found for other targets, and its warnings, are the pack's
    assert {"state/extra.db", "state/requests/nested.db"} <= \
        {d["path"] for d in packed["databases"]}
    assert sorted(packed["warnings"]) == sorted(alone["warnings"])
    assert any(w.startswith("state/pipe: special file") for w in packed["warnings"])
    code, verified = cli.json("verify", packed["path"])
    assert code == 0 and verified["ok"]
    _same_state(_restored(cli, packed, tmp_path), cli.root)


def test_shared_parents_the_helper_finds_are_written_first(cli, apart, monkeypatch, tmp_path):
    """With state storing only its JSON files, its directories belong to no target: they
    are shared parents, which the body writes before every target."""
    config_path = cli.root / "config/config.json"
    config = json.loads(config_path.read_text())
    config["backup"]["targets"] = {"state": {"include": ["state/**/*.json"]}}
    config_path.write_text(json.dumps(config))
    _first_is(cli, 3)
    expected = records_alone(cli)
    packed = cli.pack()
    assert apart[0] == ("merged", True) and apart[1][1] is not None
    listed = listed_records(cli, packed)
    assert listed == expected
    shared = [e["path"] for e in listed if e["target"] is None]
    assert "state/requests/r3" in shared and "state" in shared
    assert cli.json("verify", packed["path"])[0] == 0


def test_a_helper_killed_before_its_report_leaves_the_walk_to_this_process(cli, apart,
                                                                          monkeypatch):
    _two_process_only(cli)
    expected = records_alone(cli)
    processes = []
    real_merge = pack_subtree.SubtreeHelper.merge_into

    def kill_then_merge(self, walk):
        processes.append(self._helper.process)
        os.kill(self._helper.process.pid, signal.SIGKILL)
        return real_merge(self, walk)

    monkeypatch.setattr(pack_subtree.SubtreeHelper, "merge_into", kill_then_merge)
    packed = cli.pack()
    assert listed_records(cli, packed) == expected
    assert processes and processes[0].returncode == -signal.SIGKILL
    assert cli.json("verify", packed["path"])[0] == 0


@pytest.mark.parametrize("when", ["after-report", "while-packing"])
def test_a_helper_that_fails_after_its_report_leaves_its_share_to_this_process(
        cli, apart, monkeypatch, when):
    _two_process_only(cli)
    _first_is(cli, 7)
    expected = records_alone(cli)
    if when == "after-report":      # it cannot be told its share
        real_tell = process.tell

        def tell(helper, message):
            os.kill(helper.pid, signal.SIGKILL)
            helper.wait()
            return real_tell(helper, message)

        monkeypatch.setattr(process, "tell", tell)
    else:                           # told, then gone: its spooled records are packed here
        real_share = pack_subtree.SubtreeHelper.share

        def share(self, *args):
            helper = real_share(self, *args)
            os.kill(self._helper.process.pid, signal.SIGKILL)
            return helper

        monkeypatch.setattr(pack_subtree.SubtreeHelper, "share", share)
    packed = cli.pack()
    assert apart[0] == ("merged", True)
    assert [p for what, p in apart if what == "part"] == ([None] if when == "while-packing"
                                                          else [])
    assert listed_records(cli, packed) == expected
    assert cli.json("verify", packed["path"])[0] == 0


def test_hard_links_in_the_directory_are_packed_by_the_helper_whole(cli, apart, monkeypatch,
                                                                   tmp_path):
    target = cli.root / "state/requests/r2/1.json"
    os.link(target, cli.root / "state/requests/r5/linked.json")
    expected = records_alone(cli)
    plans = []
    real_plan = pack_subtree.helper_plan

    def plan(work, own, linked, tuning):
        # only state may be shared here: the helper takes it whole or not at all
        only_own = [(t, n, size, t == own) for t, n, size, _ in work]
        plans.append((linked, real_plan(only_own, own, linked, tuning)))
        return plans[-1][1]

    _tune(cli, subtree_min_share=1)
    monkeypatch.setattr(pack_subtree, "helper_plan", plan)
    packed = cli.pack()
    assert plans == [(True, ("state", 0))]
    assert listed_records(cli, packed) == expected
    link = next(e for e in expected if e["path"] == "state/requests/r5/linked.json")
    assert link["type"] == "hardlink"
    fresh = _restored(cli, packed, tmp_path)
    assert os.stat(fresh / "state/requests/r5/linked.json").st_ino == \
        os.stat(fresh / "state/requests/r2/1.json").st_ino


@pytest.mark.parametrize("key", ["recipient", "passphrase"])
def test_an_encrypted_pack_seals_the_helpers_share_at_its_positions(cli, apart, monkeypatch,
                                                                    key_home, tmp_path, key):
    """Sealed objects are bound to their index positions.  With a passphrase the helper
    walks beside the key derivation's process too."""
    if key == "recipient":
        code, out, _ = cli("keygen", "--encryption")
        recipient = next(line.split()[-1] for line in out.splitlines() if "recipient:" in line)
        config_path = cli.root / "config/config.json"
        config = json.loads(config_path.read_text())
        config["backup"]["storage"]["recipients"] = [recipient]
        config_path.write_text(json.dumps(config))
        monkeypatch.setenv("POPPO_BACKUP_IDENTITY", str(key_home / "encryption.key"))
    else:
        monkeypatch.setenv("POPPO_BACKUP_KEY", "a passphrase")
    _first_is(cli, 7)
    expected = records_alone(cli, "--encrypt", bundles=False)
    packed = cli.pack("--encrypt")
    assert packed["encryption"] == "archive"
    assert apart[0] == ("merged", True) and apart[1][1] is not None
    assert listed_records(cli, packed, bundles=False) == expected
    code, verified = cli.json("verify", packed["path"])
    assert code == 0 and verified["not_checked"] == []
    _same_state(_restored(cli, packed, tmp_path), cli.root)


def test_no_helper_walks_for_an_incremental_one_thread_or_a_small_directory(
        cli, apart, monkeypatch):
    cli.pack("--full")                  # (a full pack, which may use one)
    apart.clear()
    assert cli.pack("--incremental")["incremental"]
    cli.using(dataclasses.replace(cli.parallel, compression_threads=1)).pack()
    cli.using(dataclasses.replace(cli.parallel, tuning=Tuning(subtree_min_entries=10_000))).pack()
    assert apart == []
    cli.pack()
    assert apart[0] == ("merged", True)


def test_every_helper_has_ended_when_the_pack_returns(cli, apart, monkeypatch):
    _two_process_only(cli)
    started = []
    real_start = process.start

    def start(*args, **kwargs):
        helper = real_start(*args, **kwargs)
        started.append(helper)
        return helper

    monkeypatch.setattr(process, "start", start)
    for first in (0, None):
        _first_is(cli, first)
        cli.pack()
    assert len(started) == 2 and all(p.returncode is not None for p in started)


def test_a_nested_directory_walked_apart_keeps_the_parents_above_it(cli, apart, monkeypatch,
                                                                   tmp_path):
    """agents limited to data/ccla: the helper walks data/ccla, and data, which no
    selected target owns, must still be written as the shared parent it is."""
    config_path = cli.root / "config/config.json"
    config = json.loads(config_path.read_text())
    config["backup"]["targets"] = {"agents": {"include": ["data/ccla/**"]}}
    config_path.write_text(json.dumps(config))
    _tune(cli, plan=("agents", 2))
    expected = records_alone(cli, "--targets", "agents")
    packed = cli.pack("--targets", "agents")
    assert apart[0] == ("merged", True) and apart[1][1] is not None
    listed = listed_records(cli, packed)
    assert listed == expected
    assert [e["path"] for e in listed if e["target"] is None] == ["data"]
    assert {e["path"] for e in listed if e["target"] == "agents"} >= {"data/ccla"}
    fresh = _restored(cli, packed, tmp_path)
    assert digest(fresh / "data/ccla") == digest(cli.root / "data/ccla")


def test_a_target_in_several_directories_is_walked_apart_in_all_of_them(cli, apart,
                                                                       monkeypatch, tmp_path):
    """agents lives in data/ccla, data/ccag, data/ccpm (and config/agents, agents): the
    helper walks each that exists, this process the rest of data/ and config/."""
    (cli.root / "config/agents").mkdir(exist_ok=True)
    (cli.root / "config/agents/reviewer.json").write_text("{}")
    (cli.root / "data/ccla/nested.db").write_bytes((cli.root / "state/extra.db").read_bytes())
    chosen = []
    real_choose = pack_subtree.choose_directories

    def choose(*args):
        chosen.append(real_choose(*args))
        return chosen[-1]

    monkeypatch.setattr(pack_subtree, "choose_directories", choose)
    _tune(cli, plan=("agents", 5))
    targets = ("--targets", "config,database,agents")
    expected = records_alone(cli, *targets)
    chosen.clear()
    packed = cli.pack(*targets)
    assert chosen == [("agents", ("config/agents", "data/ccag", "data/ccla", "data/ccpm"))]
    assert apart[0] == ("merged", True) and apart[1][1] is not None
    assert listed_records(cli, packed) == expected
    assert "data/ccla/nested.db" in {d["path"] for d in packed["databases"]}
    fresh = _restored(cli, packed, tmp_path)
    for directory in ("config", "data/ccla", "data/ccag", "data/ccpm"):
        # databases are snapshots, not the live files byte for byte (compared elsewhere)
        restored, source = ({k: v for k, v in digest(where / directory).items()
                             if not k.endswith((".db", ".sqlite3", "-wal"))}
                            for where in (fresh, cli.root))
        assert restored == source, directory


def test_records_of_the_target_found_on_both_sides_are_merged_in_order(cli, apart,
                                                                     monkeypatch):
    """Not with the default rules, but a directory created between the helper's choice
    and the walk (or a bug in the choice) would give this process records of the
    helper's target too: they are merged in path order and this process packs them all."""
    monkeypatch.setattr(pack_subtree, "choose_directories",
                        lambda root, catalogue, skip=(), min_entries=0:
                        ("agents", ("data/ccla",)))
    targets = ("--targets", "config,database,agents")
    expected = records_alone(cli, *targets)
    planned = []
    real_plan = pack_subtree.helper_plan

    def plan(work, own, linked, tuning):
        planned.append(own)
        return real_plan(work, own, linked, tuning)

    monkeypatch.setattr(pack_subtree, "helper_plan", plan)
    packed = cli.pack(*targets)
    # its spool is not the target's records: it may not pack them
    assert apart == [("merged", True)] and planned == [None]
    listed = listed_records(cli, packed)
    assert listed == expected
    agents = [e["path"] for e in listed if e["target"] == "agents"]
    assert any(p.startswith("data/ccag/") for p in agents) and \
        any(p.startswith("data/ccla/") for p in agents) and agents == sorted(agents)


@pytest.mark.parametrize("failure", ["no-room", "no-process"])
def test_a_helper_that_cannot_start_leaves_the_walk_here(cli, apart, monkeypatch, tmp_path,
                                                         failure):
    _two_process_only(cli)
    catalogue = build_catalogue({}, None)
    if failure == "no-room":
        assert pack_subtree.SubtreeHelper.start(cli.root, catalogue, cli.parallel,
                                                scratch_dir=tmp_path / "missing") is None
    opened = []
    real_file = pack_subtree.tempfile.TemporaryFile

    def temporary(*args, **kwargs):
        made = real_file(*args, **kwargs)
        if kwargs.get("prefix") == ".poppoarc-helper-":
            opened.append(made)
        return made

    def cannot_start(*args, **kwargs):
        raise OSError("no interpreter to start a helper with")

    expected = records_alone(cli)
    monkeypatch.setattr(pack_subtree.tempfile, "TemporaryFile", temporary)
    monkeypatch.setattr(process, "start", cannot_start)
    packed = cli.pack()
    assert apart == [] and listed_records(cli, packed) == expected
    assert len(opened) == 5 and all(f.closed for f in opened)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_the_helper_packs_another_targets_share_after_its_walk(cli, apart, monkeypatch,
                                                              tmp_path, encrypt):
    """It walked state/, but agents is where the work is: this process writes agents'
    last records for it, and it packs them as a started helper would."""
    args = ("--encrypt",) if encrypt else ()
    if encrypt:
        monkeypatch.setenv("POPPO_BACKUP_KEY", "a passphrase")
    _tune(cli, plan=("agents", 4))
    expected = records_alone(cli, *args, bundles=not encrypt)
    packed = cli.pack(*args)
    assert apart[0] == ("merged", True) and apart[1][1] is not None
    assert apart[1][1].files > 0
    assert listed_records(cli, packed, bundles=not encrypt) == expected
    code, verified = cli.json("verify", packed["path"])
    assert code == 0 and verified["not_checked"] == []
    fresh = _restored(cli, packed, tmp_path)
    assert digest(fresh / "data/ccag") == digest(cli.root / "data/ccag")


def test_another_targets_share_with_a_hard_link_stays_here(cli, apart, monkeypatch):
    first = next(p for p in sorted((cli.root / "data/ccag").rglob("*")) if p.is_file())
    os.link(first, cli.root / "data/ccag/zz-linked")
    _tune(cli, plan=("agents", 0))
    expected = records_alone(cli)
    packed = cli.pack()
    assert apart == [("merged", True)]          # not given: the helper was stopped
    assert listed_records(cli, packed) == expected


def test_a_share_of_its_own_target_not_in_its_spool_is_written_for_it(cli, apart,
                                                                      monkeypatch):
    """When this walk found records of the helper's target too, the helper's spool holds
    only some of them: a share of that target is written for it like any other."""
    monkeypatch.setattr(pack_subtree, "choose_directories",
                        lambda root, catalogue, skip=(), min_entries=0:
                        ("agents", ("data/ccla",)))
    _tune(cli, plan=("agents", 3))
    targets = ("--targets", "config,database,agents")
    expected = records_alone(cli, *targets)
    packed = cli.pack(*targets)
    assert apart[0] == ("merged", True) and apart[1][1] is not None
    assert listed_records(cli, packed) == expected
    assert cli.json("verify", packed["path"])[0] == 0
