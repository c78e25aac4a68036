"""verify is the restore without writing: over generated archives, most of them hostile,
whatever verify accepts restores into an empty root, and whatever it refuses the restore
refuses with the same exit code, having written nothing.

Archives are made by the real writer and signed with the installation's key
(tests/helpers/craft.py): paths from a small alphabet that meets every reserved place and every
target's border, records filed under the right target most of the time and under another
one, a shared parent or an unknown target otherwise, symlinks whose texts climb and chain,
hard links to earlier and later files, owners out of range.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings, strategies as st

from poppoarc.format.entry import IndexEntry
from poppoarc.snapshot.catalogue import area_catalogue

from tests.helpers import CLI
from tests.helpers.craft import T, craft
from tests.helpers.scene import snapshot

NAMES = ["a", "b", "l", "x.db", "x.db-wal", "y.gz", ".git", "backups", ".poppoarc-stage-1",
         "..", "c"]
# where each target's records live (a name from NAMES is appended), and the kind they are
AREAS = {"config": ["config", ".poppo", "config/a"], "state": ["state", "state/b"],
         "logs": ["logs", "logs/archive"], "agents": ["data/ccla", "agents", "config/agents"],
         "database": ["data", "state"], "security": ["data"]}
TOPS = ["config", "state", "data", "logs", ".poppo", "agents", "", ".git", "backups"]
LINK_PARTS = ["..", ".", "a", "b", "l", "state", "config", "x"]
TARGETS = [None, "config", "database", "logs", "agents", "state", "security", "bogus"]
CATALOGUE = area_catalogue({})
DATABASE = None


def _database() -> bytes:
    global DATABASE
    if DATABASE is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "d.db"
            conn = sqlite3.connect(path)
            conn.executescript("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
            conn.close()
            DATABASE = path.read_bytes()
    return DATABASE


@st.composite
def records(draw):
    """Mostly what a writer makes (a path in its target's area), else anything."""
    kind = draw(st.sampled_from(["dir", "file", "file", "symlink", "hardlink", "sqlite"]))
    if draw(st.integers(0, 19)) < 17:
        target = draw(st.sampled_from(sorted(AREAS)))
        if kind == "sqlite" or target == "database":
            kind, target = "sqlite", "database"
        elif target == "logs":
            kind = "file"
        base = draw(st.sampled_from(AREAS[target]))
        name = {"database": "x.db", "logs": "y.gz", "security": "access.log"}.get(
            target, draw(st.sampled_from(["a", "b", "c", "l"])))
        path = f"{base}/{name}" if kind != "dir" or draw(st.booleans()) else base
    else:
        top = draw(st.sampled_from(TOPS))
        rest = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2))
        path = "/".join(([top] if top else []) + rest)
        target = draw(st.sampled_from(TARGETS))
    owner = CATALOGUE.owner(path, "file" if kind == "hardlink" else kind)
    if draw(st.integers(0, 9)) < 8 and owner is not None:
        target = owner
    link = None
    if kind == "symlink":
        link = "/".join(draw(st.lists(st.sampled_from(LINK_PARTS), min_size=1, max_size=4)))
        if draw(st.integers(0, 9)) == 0:
            link = "/" + link
    uid = draw(st.sampled_from([os.getuid()] * 30 + [2**32 - 1, 2**62]))
    return kind, path, target, link, uid


def _members(drawn, hardlink_choices):
    members, files = [], []
    for n, (kind, path, target, link, uid) in enumerate(drawn):
        if kind == "dir":
            record, data = IndexEntry(path, target, "dir", 0o755, uid, os.getgid(), T), b""
        elif kind == "symlink":
            record = IndexEntry(path, target, "symlink", 0o777, uid, os.getgid(), T, link=link)
            data = b""
        elif kind == "hardlink" and files:
            source = files[hardlink_choices[n] % len(files)]
            record = IndexEntry(path, target, "hardlink", source.mode, uid, os.getgid(), T,
                                source.size, source.sha256, link=source.path)
            data = b""
        else:
            data = _database() if kind == "sqlite" else path.encode()
            record = IndexEntry(path, target, "file", 0o644, uid, os.getgid(), T, len(data),
                                sqlite=kind == "sqlite")
            if kind == "sqlite":
                record.sha256 = hashlib.sha256(data).hexdigest()
            files.append(record)
        members.append((record, data))
    return members


@settings(max_examples=int(os.environ.get("POPPOARC_PROPERTY_EXAMPLES", "150")),
          deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=7),
       st.lists(st.integers(0, 10), min_size=7, max_size=7))
def test_verify_accepts_exactly_what_restores_into_an_empty_root(key_home, capsys,
                                                                 tmp_path_factory, drawn,
                                                                 choices):
    bench = tmp_path_factory.mktemp("bench")
    root, store = bench / "root", bench / "store"
    root.mkdir()
    (bench / "outside").mkdir()
    cli = CLI(root, store, capsys)
    members = sorted(_members(drawn, choices), key=lambda m: (m[0].target or "", m[0].path))
    archive = craft(store, key_home, members)
    verified, _, verify_err = cli("verify", str(archive))
    event(f"verify exit {verified}")
    before = snapshot(bench)
    code, _, err = cli("unpack", str(archive))
    if verified == 0:
        assert code in (0, 1), (members, err)
        assert snapshot(bench / "outside") == {}
        for record, data in members:
            if record.target is None or record.generated:
                continue
            path = root / record.path
            assert os.path.lexists(path), record.path
            assert os.path.realpath(root) == os.path.commonpath(
                [os.path.realpath(root), os.path.realpath(path.parent)]), record.path
    else:
        assert code == verified, (members, verify_err, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert snapshot(bench) == before, members
    shutil.rmtree(bench)
