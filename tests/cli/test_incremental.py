"""Incremental archives end to end: chains, block deltas, and their failure modes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from poppoarc.demo.changes import simulate_day
from poppoarc.format.entry import BLOCK_DIGEST, block_digests, encode_digests
from poppoarc.restore import trash
from tests.helpers import CLI
from tests.helpers.rebuild import reindex


def tree_digest(root: Path, skip=(".poppoarc.lock",)) -> dict[str, str]:
    """Every regular file, symlink and directory under root, by content and mode."""
    trash.sweep(root, wait=True)       # a restore's old tree, deleted behind it
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.split("/")[0] in ("backups",) or path.name in skip or path.name.endswith("-shm"):
            continue
        st = path.lstat()
        if path.is_symlink():
            found[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            found[rel] = f"dir:{st.st_mode & 0o7777:o}"
        else:
            found[rel] = f"{st.st_mode & 0o7777:o}:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def rows(db: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        connection.close()


@pytest.fixture
def small(tmp_path, installation_template):
    dest = tmp_path / "inst"
    shutil.copytree(installation_template("small"), dest, symlinks=True)
    return dest


@pytest.fixture
def chain(small, tmp_path, capsys):
    """A full archive and three incrementals, one simulated day apart."""
    cli = CLI(small, tmp_path / "store", capsys)
    archives = [cli.pack("--full")]
    for day in (1, 2, 3):
        simulate_day(small, fraction=0.01, seed=day)
        archives.append(cli.pack("--incremental"))
    return cli, archives


def restore_into(cli: CLI, root: Path, archive_id: str) -> tuple[int, dict]:
    root.mkdir()
    other = CLI(root, cli.store, cli.capsys)
    return other.json("unpack", archive_id, "--skip-backup")


def test_a_chain_stores_only_changes_and_restores_exactly(chain, tmp_path):
    cli, (full, *incrementals) = chain
    assert not full["incremental"]
    for parent, child in zip([full, *incrementals], incrementals):
        assert child["incremental"] and child["parent"] == parent["id"]
        assert child["size"] < full["size"] / 10, (child["size"], full["size"])
        assert child["reused"] > 0
    code, listed = cli.json("list")
    by_id = {row["id"]: row for row in listed["archives"]}
    assert by_id[incrementals[2]["id"]]["parent"] == incrementals[1]["id"]
    assert "+inc" in cli("list")[1]

    code, verified = cli.json("verify", incrementals[2]["id"])
    assert code == 0 and verified["chain"] == [full["id"], incrementals[0]["id"],
                                               incrementals[1]["id"]]
    assert verified["databases_checked"] >= 4 and verified["not_checked"] == []

    # the 3rd incremental restores the same tree as a full archive made now
    code, result = restore_into(cli, tmp_path / "from-chain", incrementals[2]["id"])
    assert code in (0, 1) and result["outcome"] == "committed", result
    now_full = cli.pack("--full")
    code, result = restore_into(cli, tmp_path / "from-full", now_full["id"])
    assert code in (0, 1) and result["outcome"] == "committed", result
    from_chain, from_full = tree_digest(tmp_path / "from-chain"), tree_digest(tmp_path / "from-full")
    assert from_chain == from_full and len(from_chain) > 300
    history = "data/poppo-history.db"
    assert rows(tmp_path / "from-chain" / history) == rows(cli.root / history)


def test_a_database_delta_holds_only_changed_blocks(chain):
    cli, (full, first, *_) = chain
    code, inspected = cli.json("inspect", first["id"], "--entries")
    records = {e["path"]: e for e in inspected["entries"]}
    history = records["data/poppo-history.db"]
    blocks = -(-history["size"] // history["blocks"]["size"])
    assert 0 < len(history["delta"]) < blocks / 4
    unchanged = [e for e in records.values() if e.get("stored_in")]
    assert unchanged and all(e["stored_in"] == full["id"] for e in unchanged)
    # the changed state files are stored in this archive, not referenced
    assert any(p.startswith("state/") and "stored_in" not in e and e["type"] == "file"
               for p, e in records.items())


def test_page_digests_are_written_only_where_chains_are_in_use(small, tmp_path, capsys):
    """Like changed-block tracking, page digests must be on before the base backup:
    a plain pack (incrementals off) skips them, so the first incremental on it stores
    databases whole, says so, and carries digests for the next one."""
    cli = CLI(small, tmp_path / "store", capsys)

    def history(archive) -> dict:
        code, inspected = cli.json("inspect", archive["id"], "--entries")
        return next(e for e in inspected["entries"] if e["path"] == "data/poppo-history.db")

    plain = cli.pack()
    assert "blocks" not in history(plain)
    simulate_day(small, fraction=0.01, seed=1)
    first = cli.pack("--incremental")
    record = history(first)
    assert "delta" not in record and "blocks" in record
    assert any("data/poppo-history.db: stored whole" in w and plain["id"] in w
               for w in first["warnings"])
    simulate_day(small, fraction=0.01, seed=2)
    second = cli.pack("--incremental")
    assert history(second)["delta"]
    assert not any("stored whole" in w for w in second["warnings"])
    # with incrementals enabled in the configuration a plain pack carries them
    config = small / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["incremental"] = {"enabled": True}
    config.write_text(json.dumps(document))
    assert "blocks" in history(cli.pack("--full"))
    document["backup"]["incremental"] = {"enabled": False}
    document["backup"]["schedule"] = {"daily": {"cron": "0 3 * * *", "type": "incremental"}}
    config.write_text(json.dumps(document))
    assert "blocks" in history(cli.pack())


def test_a_large_database_gets_larger_blocks_and_keeps_them_as_it_grows(small, tmp_path, capsys,
                                                                         monkeypatch):
    """Page digests stay bounded (§12.4): a database of more than MAX_BLOCKS pages gets
    larger blocks.  Here the bound is lowered so that the small installation's history
    database crosses it; it then grows past the next boundary and still gets a delta."""
    from poppoarc.format import blocks
    monkeypatch.setattr(blocks, "MAX_BLOCKS", 16)
    cli = CLI(small, tmp_path / "store", capsys)
    history = "data/poppo-history.db"

    def record(archive):
        code, inspected = cli.json("inspect", archive["id"], "--entries")
        return next(e for e in inspected["entries"] if e["path"] == history)

    full = record(cli.pack("--full"))
    size = full["blocks"]["size"]
    assert size > 4096 and -(-full["size"] // size) <= 16
    connection = sqlite3.connect(small / history)
    connection.execute("CREATE TABLE IF NOT EXISTS growth (data BLOB)")
    while os.path.getsize(small / history) <= 16 * size:
        connection.execute("INSERT INTO growth VALUES (randomblob(8000))")
        connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    child = cli.pack("--incremental")
    grown = record(child)
    assert -(-grown["size"] // size) > 16, "the database did not cross the boundary"
    assert grown["blocks"]["size"] == size and grown["delta"], grown.get("delta")
    code, result = restore_into(cli, tmp_path / "restored", child["id"])
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert rows(tmp_path / "restored" / history) == rows(small / history)


def test_a_missing_parent_is_named_and_nothing_is_restored(chain, tmp_path):
    cli, archives = chain
    parent = next(cli.store.glob(archives[2]["id"] + "*"))
    parent.rename(tmp_path / parent.name)
    before = tree_digest(cli.root)
    for args in (("verify", archives[3]["id"]), ("unpack", archives[3]["id"]),
                 ("unpack", archives[3]["id"], "--dry-run")):
        code, out, err = cli(*args)
        assert code == 17, (args, err)
        assert archives[2]["id"] in err and "missing" in err and len(err.strip().splitlines()) == 1
    assert tree_digest(cli.root) == before
    # its own ancestors still verify
    assert cli("verify", archives[1]["id"])[0] == 0


def test_a_parent_replaced_by_a_re_signed_one_is_refused(chain, tmp_path, key_home):
    cli, archives = chain
    parent = next(cli.store.glob(archives[2]["id"] + "*"))
    forged = reindex(parent, tmp_path / parent.name, key_home, lambda entries: entries)
    shutil.move(forged, parent)
    assert cli("verify", archives[2]["id"])[0] == 0        # genuine on its own ...
    code, _, err = cli("verify", archives[3]["id"])
    assert code == 17 and "not the archive it was made from" in err  # ... not the one chained


@pytest.mark.parametrize("where", ["body", "index", "head", "end"])
def test_a_damaged_parent_fails_the_chain_naming_it(chain, where):
    """§7.1: a parent's damaged body is BrokenChain as much as its damaged head; the
    parent itself, verified alone, is corrupt (or tampered, or truncated)."""
    cli, archives = chain
    parent = next(cli.store.glob(archives[1]["id"] + "*"))
    data = bytearray(parent.read_bytes())
    with open(parent, "rb") as handle:
        from poppoarc.format.reader import read_head
        layout = read_head(handle, parent).manifest["layout"]
    if where == "end":
        del data[-10:]
    else:
        offset = {"body": (layout["body_offset"] + layout["index_offset"]) // 2,
                  "index": layout["index_offset"] + 20, "head": 16 + 600}[where]
        data[offset] ^= 0xFF
    parent.write_bytes(bytes(data))
    own = {"body": 13, "index": 13, "head": 15, "end": 14}[where]
    assert cli("verify", archives[1]["id"])[0] == own
    before = tree_digest(cli.root)
    for args in (("verify", archives[3]["id"]), ("unpack", archives[3]["id"], "--skip-backup")):
        code, _, err = cli(*args)
        assert code == 17 and archives[1]["id"] in err, (args, err)
        assert ("damaged" if where in ("body", "index") else "unusable") in err
    assert tree_digest(cli.root) == before


@pytest.mark.parametrize("lie", ["foreign-holder", "wrong-size", "unlisted-block", "delta-digest"])
def test_a_re_signed_index_that_lies_about_the_chain_is_rejected(chain, tmp_path, key_home, lie):
    cli, archives = chain
    target = next(cli.store.glob(archives[3]["id"] + "*"))

    def edit(entries):
        out = []
        done = False
        for e in entries:
            if not done and lie == "foreign-holder" and e.stored_in:
                e, done = dataclasses.replace(e, stored_in=archives[3]["id"][:-6] + "zzzzzz"), True
            elif not done and lie == "wrong-size" and e.stored_in and e.size > 10:
                e, done = dataclasses.replace(e, size=e.size - 1), True
            elif not done and e.delta is not None and e.path == "data/poppo-history.db":
                digests = bytearray(block_digests(e))
                if lie == "unlisted-block":     # a block not stored here differs from the parent's
                    number = next(n for n in range(len(digests)) if n not in e.delta)
                else:                           # a stored block's digest is not its content's
                    number = e.delta[0]
                digests[number * BLOCK_DIGEST] ^= 1
                e = dataclasses.replace(e, blocks={"size": e.blocks["size"],
                                                   "digests": encode_digests(bytes(digests))})
                done = lie in ("unlisted-block", "delta-digest")
            out.append(e)
        assert done
        return out

    reindex(target, target, key_home, edit)
    before = tree_digest(cli.root)
    expected = {"foreign-holder": "not an ancestor", "wrong-size": "does not hold the content",
                "unlisted-block": "neither stored", "delta-digest": "does not match"}[lie]
    code, _, err = cli("verify", archives[3]["id"])
    assert code == 13 and expected in err, err
    code, _, err = cli("unpack", archives[3]["id"], "--skip-backup")
    assert code == 13 and expected in err, err
    assert tree_digest(cli.root) == before
    assert not list(cli.root.glob(".poppoarc-stag*"))


def test_a_restore_relies_on_the_whole_digest_and_verify_checks_page_digests(chain, key_home):
    cli, archives = chain
    target = next(cli.store.glob(archives[0]["id"] + "*"))

    def edit(entries):
        out = []
        for e in entries:
            if e.path == "data/poppo-history.db":
                digests = bytearray(block_digests(e))
                digests[3 * BLOCK_DIGEST] ^= 1
                e = dataclasses.replace(e, blocks={"size": e.blocks["size"],
                                                   "digests": encode_digests(bytes(digests))})
            out.append(e)
        return out

    reindex(target, target, key_home, edit)
    code, _, err = cli("verify", archives[0]["id"])
    assert code == 13 and "data/poppo-history.db" in err, err
    # every restored byte is covered by the record's SHA-256, which still matches
    code, result = cli.json("unpack", archives[0]["id"], "--skip-backup")
    assert code in (0, 1) and result["outcome"] == "committed"


def test_the_chain_restarts_after_max_incrementals(small, tmp_path, capsys):
    config = small / "config" / "config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["incremental"] = {"enabled": True, "maxIncrementals": 2}
    config.write_text(json.dumps(document))
    cli = CLI(small, tmp_path / "store", capsys)
    first = cli.pack()              # the store's first archive: full, and nothing to warn of
    assert not first["incremental"] and not any("incremental" in w for w in first["warnings"])
    kinds = []
    for day in range(4):
        simulate_day(small, seed=day)
        kinds.append(cli.pack())
    assert [k["incremental"] for k in kinds] == [True, True, False, True]
    assert any("maxIncrementals" in w for w in kinds[2]["warnings"])
    assert kinds[3]["parent"] == kinds[2]["id"]
    assert not cli.pack("--full")["incremental"]


def test_check_content_reuses_a_touched_but_equal_file(small, tmp_path, capsys):
    cli = CLI(small, tmp_path / "store", capsys)
    cli.pack()
    touched = small / "state" / "issue-status.json"
    os.utime(touched, ns=(1, 1))                # stat differs, content does not
    by_stat = cli.pack("--incremental")
    by_content = cli.pack("--incremental", "--check-content")
    _, inspected = cli.json("inspect", by_stat["id"], "--entries")
    assert "stored_in" not in {e["path"]: e for e in inspected["entries"]}["state/issue-status.json"]
    _, inspected = cli.json("inspect", by_content["id"], "--entries")
    record = {e["path"]: e for e in inspected["entries"]}["state/issue-status.json"]
    assert record["stored_in"] == by_stat["id"] and record["mtime_ns"] == 1


@pytest.mark.parametrize("encrypt", [False, True])
def test_an_encrypted_chain_round_trips(small, tmp_path, capsys, monkeypatch, encrypt):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "incremental passphrase")
    cli = CLI(small, tmp_path / "store", capsys)
    flags = ("--encrypt",) if encrypt else ()
    archives = [cli.pack(*flags)]
    for day in (1, 2):
        simulate_day(small, seed=day)
        (small / ".env").write_text(f"API_TOKEN=day-{day}-secret\n") if day == 2 else None
        archives.append(cli.pack("--incremental", "--check-content", *flags))
    assert all(a["incremental"] for a in archives[1:])
    assert cli("verify", archives[-1]["id"])[0] == 0
    code, result = restore_into(cli, tmp_path / "restored", archives[-1]["id"])
    assert code in (0, 1) and result["outcome"] == "committed", result
    restored = tmp_path / "restored"
    assert (restored / ".env").read_text() == "API_TOKEN=day-2-secret\n"
    for name in ("state", "config", "agents"):
        assert tree_digest(restored / name) == tree_digest(small / name)
    # without the key: the chain's heads are checked, the contents are not
    monkeypatch.delenv("POPPO_BACKUP_KEY")
    code, verified = cli.json("verify", archives[-1]["id"])
    if encrypt:
        assert code == 0 and verified["not_checked"] and len(verified["chain"]) == 2
    # a plain chain is not continued by an encrypted pack, nor the other way round
    monkeypatch.setenv("POPPO_BACKUP_KEY", "incremental passphrase")
    other = cli.pack("--incremental", *(() if encrypt else ("--encrypt",)))
    assert not other["incremental"] and any("chain keeps one setting" in w for w in other["warnings"])


# -- the pure parts ------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from poppoarc.format.manifest import IndexEntry  # noqa: E402
from poppoarc.format.blocks import BlockHasher  # noqa: E402
from poppoarc.format import chains  # noqa: E402
from poppoarc.archives.chain import Assembly  # noqa: E402

BLOCK = 4096


def _record(data: bytes, delta=None) -> IndexEntry:
    hasher = BlockHasher(BLOCK)
    hasher.update(data)
    digest = hasher.hexdigest()
    return IndexEntry("data/x.db", "database", "file", 0o644, 0, 0, 0, len(data), digest,
                      sqlite=True, blocks={"size": BLOCK, "digests": encode_digests(bytes(hasher.blocks))},
                      delta=delta)


@settings(max_examples=60, deadline=None)
@given(old=st.binary(max_size=5 * BLOCK), edits=st.lists(
    st.tuples(st.integers(0, 6 * BLOCK), st.binary(min_size=1, max_size=300)), max_size=4),
    cut=st.integers(0, 3 * BLOCK))
def test_applying_a_delta_to_the_parent_gives_the_new_content(tmp_path_factory, old, edits, cut):
    new = bytearray(old[:max(0, len(old) - cut)] if cut % 2 else old)
    for offset, data in edits:
        offset = min(offset, len(new))
        new[offset:offset + len(data)] = data
    new = bytes(new)
    before, after = _record(old), _record(new)
    numbers = chains.changed_blocks(before, BLOCK, block_digests(after))
    assembly = Assembly(tmp_path_factory.mktemp("asm") / "db")
    try:
        assembly.begin("a", None, before)
        assembly.data(old)
        assembly.end("a", before)
        if numbers is None:     # every block changed: stored whole
            assembly.begin("b", "a", after)
            assembly.data(new)
        else:
            delta = dataclasses.replace(after, delta=numbers)
            assembly.begin("b", "a", delta)
            payload = b"".join(new[n * BLOCK:(n + 1) * BLOCK] for n in numbers)
            assert len(payload) == delta.payload_size()
            assembly.data(payload)
        assembly.end("b", after)
        assert assembly.path.read_bytes() == new
    finally:
        assembly.close()


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 1 << 44), previous=st.one_of(st.none(), st.sampled_from(
    [1 << n for n in range(12, 25)])))
def test_the_block_size_bounds_the_digests_and_keeps_the_parents_near_a_boundary(size, previous):
    from poppoarc.format.blocks import MAX_BLOCKS, block_size_for
    from poppoarc.format.entry import MAX_BLOCK as MAX_BLOCK_SIZE
    chosen = block_size_for(size)
    assert 4096 <= chosen <= MAX_BLOCK_SIZE and chosen & (chosen - 1) == 0
    count = -(-size // chosen)
    assert count <= MAX_BLOCKS or chosen == MAX_BLOCK_SIZE
    assert chosen == 4096 or -(-size // (chosen // 2)) > MAX_BLOCKS      # the smallest such
    kept = block_size_for(size, previous)
    if previous is not None and chosen // 2 <= previous <= chosen * 2:
        assert kept == previous and (-(-size // kept) <= 2 * MAX_BLOCKS or chosen == MAX_BLOCK_SIZE)
    else:
        assert kept == chosen


def test_only_good_normal_archives_become_parents():
    Row = dataclasses.make_dataclass("Row", ["id", "type", "status"])
    rows = [Row("c", "pre-restore", "ok"), Row("b", "scheduled", "damaged"),
            Row("a", "manual", "ok")]
    choice = chains.choose_parent(rows)
    assert choice.id == "a" and "skipped b (damaged)" in choice.reason
    assert chains.choose_parent(rows[:2]).id is None and chains.choose_parent(rows[:2]).warn
    # the store's first archive starts a chain: a full one, nothing to warn of
    assert not chains.choose_parent(rows[:1]).warn and not chains.choose_parent([]).warn


def test_a_file_is_unchanged_only_when_every_stat_fact_matches():
    record = IndexEntry("state/a", "state", "file", 0o644, 1, 2, 100, 10, "0" * 64,
                        ctime_ns=200, ino=7)
    facts = dict(size=10, mtime_ns=100, ctime_ns=200, ino=7, mode=0o644, uid=1, gid=2)
    assert chains.unchanged_by_stat(record, **facts)
    for key in facts:
        assert not chains.unchanged_by_stat(record, **dict(facts, **{key: facts[key] + 1}))
    for flag in ("changed", "generated", "sqlite"):
        assert not chains.unchanged_by_stat(dataclasses.replace(record, **{flag: True}), **facts)
    assert not chains.unchanged_by_stat(dataclasses.replace(record, ino=None), **facts)
    same_times = dataclasses.replace(record, ctime_ns=None)      # recorded as "equal to mtime"
    assert chains.unchanged_by_stat(same_times, **dict(facts, ctime_ns=100))


def test_copying_a_chain_oldest_first_verifies_it_at_the_destination(chain, tmp_path):
    cli, archives = chain
    elsewhere = tmp_path / "elsewhere"
    for archive in archives:
        code, copied = cli.json("copy", archive["id"], "--to", str(elsewhere))
        assert code == 0, copied
        assert [a["outcome"] for a in copied["ancestors"]] == ["present"] * len(
            copied["ancestors"])
    assert copied["verified"]["chain"] == [a["id"] for a in archives[:-1]]
    assert copied["verified"]["not_checked"] == []


@pytest.fixture
def parent_calls(monkeypatch):
    """find_parent's and the walk's calls, in order: (what, thread name, helper share)."""
    import threading
    from poppoarc.pack import steps as pack_module
    from poppoarc.snapshot.scan import Walk
    calls = []
    real_find, real_run = pack_module.find_parent, Walk.run

    def find(*args, **kwargs):
        calls.append(("parent", threading.current_thread().name, kwargs.get("index_share")))
        return real_find(*args, **kwargs)

    def walk(*args, **kwargs):
        calls.append(("walk", threading.current_thread().name, None))
        result = real_run(*args, **kwargs)
        calls.append(("walked", threading.current_thread().name, None))
        return result

    monkeypatch.setattr(pack_module, "find_parent", find)
    monkeypatch.setattr(Walk, "run", walk)
    return calls


def test_the_parent_is_read_beside_the_walk(cli, installation, parent_calls):
    from poppoarc.parallel import Tuning
    full = cli.pack("--full")
    parent_calls.clear()
    (installation / "state" / "new.json").write_text("{}")
    incremental = cli.pack("--incremental")
    assert incremental["incremental"] and incremental["parent"] == full["id"]
    assert incremental["reused"] > 0
    (parent,) = [c for c in parent_calls if c[0] == "parent"]
    assert parent[1].startswith("parent") and parent[2] == Tuning().parent_index_share
    assert cli("verify", incremental["id"], "-q")[0] == 0


def test_with_a_passphrase_the_parent_is_read_after_the_walk(cli, installation, parent_calls,
                                                             monkeypatch):
    # its Argon2id would otherwise run beside the pack's own (64 MiB each)
    monkeypatch.setenv("POPPO_BACKUP_KEY", "incremental passphrase")
    cli.pack("--full")
    parent_calls.clear()
    incremental = cli.pack("--incremental")
    assert incremental["incremental"]
    assert [c[0] for c in parent_calls] == ["walk", "walked", "parent"]
    assert parent_calls[-1][1] == "MainThread" and parent_calls[-1][2] is None


def test_a_walk_that_fails_while_the_parent_is_read_leaves_nothing(cli, installation,
                                                                   monkeypatch):
    import threading
    from poppoarc.errors import SourceError
    from poppoarc.snapshot.scan import Walk
    cli.pack("--full")
    before = sorted(p.name for p in cli.store.iterdir())

    def failing_walk(*args, **kwargs):
        raise SourceError("cannot read installation root: gone", path="x")

    monkeypatch.setattr(Walk, "run", failing_walk)
    code, _, err = cli("pack", "--incremental")
    assert code == 20 and "gone" in err
    assert sorted(p.name for p in cli.store.iterdir()) == before
    assert not [t for t in threading.enumerate() if t.name.startswith("parent")]
