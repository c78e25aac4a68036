"""Pack never writes what verify rejects (issue 24, 4): generated trees with what real
file systems hold — times before 1970 and after 2262, huge owner ids, names at the length
limits, names that are not UTF-8, sizes at the 64 KiB digest and 4 MiB read and chunk
boundaries, hard links, symbolic links (some a restore refuses), empty directories — go
through pack -> verify -> unpack into an empty root and come back identical; what an
archive cannot hold is named in a warning instead, and absent.

A time of 2262 or later (2^63 ns) and before 1970 used to pack into an archive verify and
unpack rejected (exit 13)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import stat
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from poppoarc.cli import main
from poppoarc.format.paths import link_target_problem

MiB = 1 << 20
ROOT = os.geteuid() == 0
# ext4 holds times from 1901-12-13 to 2446-05-10; the test reads back what the file
# system kept and expects exactly that back
EARLIEST, LATEST = -(2**31), 15_032_385_535
SIZES = [0, 1, 200, 65535, 65536, 65537, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1]
SIZE_WEIGHTS = [4, 4, 8, 2, 2, 2, 1, 1, 1]
OWNERS = [0, 1000, 65534, 2**31 - 1, 2**32 - 2] if ROOT else [os.geteuid()]
FILE_MODES = [0o644, 0o600, 0o640, 0o755, 0o444, 0o400]
DIR_MODES = [0o755, 0o750, 0o700, 0o555]
# names: plain, spaces and punctuation, Japanese, the 255-byte limit (ASCII and 3-byte
# UTF-8), and bytes that are not UTF-8 (an archive path is UTF-8: named, not archived)
LONG_ASCII = "n" * 255
LONG_JAPANESE = "処" * 85          # 255 bytes
NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff.json")
name_text = st.text(alphabet="abcXYZ019-_. ()+,=@処理済みファイル🗂", min_size=1, max_size=16) \
    .filter(lambda n: n not in (".", "..") and not n.startswith(".poppoarc")
            and not n.endswith(("-wal", "-shm", "-journal")))
names = st.one_of(name_text, name_text, name_text, st.sampled_from(
    [LONG_ASCII, LONG_JAPANESE, NOT_UTF8, "with space", "new\nline", "back\\slash"]))
times = st.builds(lambda s, ns: s * 10**9 + ns, st.integers(EARLIEST, LATEST),
                  st.integers(0, 10**9 - 1))


@st.composite
def trees(draw):
    """A list of (kind, relative path, facts) under state/, parents before children."""
    nodes, dirs, files = [], ["state"], []
    nodes.append(("dir", "state", dict(mode=0o755, mtime=draw(times), owner=0)))
    for _ in range(draw(st.integers(3, 20))):
        parent = draw(st.sampled_from(dirs))
        name = draw(names)
        path = f"{parent}/{name}"
        if any(path == p for _, p, _ in nodes) or len(os.fsencode(path)) > 3000:
            continue
        kind = draw(st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink"]))
        owner = draw(st.sampled_from(OWNERS))
        if kind == "dir" and path.count("/") < 5:
            nodes.append(("dir", path, dict(mode=draw(st.sampled_from(DIR_MODES)),
                                            mtime=draw(times), owner=owner)))
            dirs.append(path)
        elif kind == "symlink":
            target = draw(st.sampled_from(["sibling.json", "../state", "/etc/passwd",
                                           "../../../outside", "dangling/inside",
                                           os.fsdecode(b"\xff-not-utf8")]))
            nodes.append(("symlink", path, dict(target=target, mtime=draw(times), owner=owner)))
        elif kind == "hardlink" and files:
            nodes.append(("hardlink", path, dict(link=draw(st.sampled_from(files)))))
        else:
            size = draw(st.sampled_from(sum(([s] * w for s, w in zip(SIZES, SIZE_WEIGHTS)), [])))
            nodes.append(("file", path, dict(size=size, seed=draw(st.integers(0, 2**32)),
                                             mode=draw(st.sampled_from(FILE_MODES)),
                                             mtime=draw(times), owner=owner)))
            files.append(path)
    return nodes


def _make(root: Path, nodes) -> None:
    dir_times = []
    for kind, rel, facts in nodes:
        path = os.fsencode(root / rel)
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
            dir_times.append((path, facts))
        elif kind == "file":
            with open(path, "wb") as handle:
                handle.write(random.Random(facts["seed"]).randbytes(facts["size"]))
        elif kind == "symlink":
            os.symlink(facts["target"], path)
        elif kind == "hardlink" and os.path.exists(os.fsencode(root / facts["link"])):
            os.link(os.fsencode(root / facts["link"]), path)
    for kind, rel, facts in reversed(nodes):      # owners, modes and times, deepest first
        path = os.fsencode(root / rel)
        if kind in ("hardlink",) or not os.path.lexists(path):
            continue
        if ROOT:
            os.chown(path, facts["owner"], facts["owner"], follow_symlinks=False)
        if kind != "symlink":
            os.chmod(path, facts["mode"])
        os.utime(path, ns=(facts["mtime"], facts["mtime"]), follow_symlinks=False)


def _tree(root: Path) -> dict:
    """Every path under state/ (as bytes): what a restore must give back."""
    found, inodes = {}, {}
    top = os.fsencode(root / "state")
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames + ([b""] if dirpath == top else []):
            path = os.path.join(dirpath, name) if name else top
            rel = os.path.relpath(path, os.fsencode(root))
            st_ = os.lstat(path)
            owner = (st_.st_uid, st_.st_gid) if ROOT else None
            if stat.S_ISLNK(st_.st_mode):
                found[rel] = ("link", os.readlink(path), st_.st_mtime_ns, owner)
            elif stat.S_ISDIR(st_.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st_.st_mode), st_.st_mtime_ns, owner)
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                found[rel] = ("file", stat.S_IMODE(st_.st_mode), st_.st_mtime_ns, owner, digest)
                inodes.setdefault(st_.st_ino, []).append(rel)
    links = [sorted(group) for group in inodes.values() if len(group) > 1]
    return {"paths": found, "links": links}


def _refused(path: bytes, facts_by_path) -> bool:
    """What an archive cannot hold: a name below one that is not UTF-8, a symbolic link a
    restore refuses."""
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        return True
    kind, facts = facts_by_path.get(path, (None, None))
    if kind == "symlink":
        try:
            facts["target"].encode("utf-8")
        except UnicodeEncodeError:
            return True
        return link_target_problem(path.decode(), facts["target"]) is not None
    return False


def _poppoarc(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue())


def _round_trip(nodes, encrypted: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="poppoarc-edges-") as work:
        work = Path(work)
        source, target, store = work / "source", work / "target", work / "store"
        source.mkdir()
        target.mkdir()
        _make(source, nodes)
        before = _tree(source)
        facts = {os.fsencode(rel): (kind, f) for kind, rel, f in nodes}
        code, packed = _poppoarc("--root", str(source), "--store", str(store), "pack",
                                 *(["--encrypt"] if encrypted else []))
        assert code in (0, 1), packed
        code, verified = _poppoarc("--root", str(source), "--store", str(store), "verify",
                                   packed["id"])
        assert code == 0, verified
        code, restored = _poppoarc("--root", str(target), "--store", str(store), "unpack",
                                   packed["id"], *(["--same-owner"] if ROOT else []))
        assert code in (0, 1), restored
        after = _tree(target)
        refused = {p for p in before["paths"]
                   if any(_refused(p[:i] if i else p, facts)
                          for i in [0] + [n for n, c in enumerate(p) if c == ord("/")])}
        expected = {p: v for p, v in before["paths"].items() if p not in refused}
        assert after["paths"] == expected
        kept = [[p for p in group if p not in refused] for group in before["links"]]
        assert sorted(after["links"]) == sorted(g for g in kept if len(g) > 1)
        named = {w.split(": ")[0] for w in packed["warnings"]}
        for path in refused:        # each one is named (itself, or a directory above it)
            shown = path.decode("utf-8", "backslashreplace")
            assert any(shown == n or shown.startswith(n + "/") for n in named), \
                (shown, packed["warnings"])
        shutil.rmtree(work, ignore_errors=True)


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture,
                                                       HealthCheck.data_too_large])


@settings(max_examples=60, **SETTINGS)
@given(trees())
def test_generated_trees_come_back_identical(nodes):
    _round_trip(nodes, encrypted=False)


@settings(max_examples=8, **SETTINGS)
@given(nodes=trees())
def test_generated_trees_come_back_identical_encrypted(monkeypatch, nodes):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "edge trees")
    _round_trip(nodes, encrypted=True)


def test_the_edges_vector_restores_its_times_and_names_what_changed(tmp_path, monkeypatch):
    """The committed vector: times before 1970 and after 2262 come back exactly; verify and
    inspect name the file flagged changed; inspect shows every warning of the run."""
    from poppoarc.config import Settings
    from poppoarc.archives.verification import verify
    from tests.helpers import inspect, unpack

    vectors = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"
    pinned = (vectors / "test-signing.pub").read_text().strip()
    root = tmp_path / "root"
    root.mkdir()
    chosen = Settings(root=root, config_path=tmp_path / "none.json", store=tmp_path,
                      backup={"signing": {"trustedKeys": [pinned]}}, key_dir=tmp_path / "keys")
    archive = str(vectors / "edges.poppo.tar.zst")
    assert verify(chosen, archive, record=False).changed == ["state/events.jsonl"]
    inspected = inspect(chosen, archive)
    assert inspected.changed == ["state/events.jsonl"]
    assert inspected.manifest["warnings_total"] == len(inspected.manifest["warnings"]) == 2
    result = unpack(chosen, archive, skip_backup=True)
    assert result.plan.changed_while_packed == ["state/events.jsonl"]
    assert os.stat(root / "config/config.json").st_mtime_ns == -1_500_000_000
    assert os.stat(root / "state/events.jsonl").st_mtime_ns == 13_569_465_600 * 10**9 + 5
    assert os.stat(root / "state").st_mtime_ns == -1


def test_empty_files_in_an_encrypted_archive(cli, installation, monkeypatch):
    """Found by the round trip: after an empty file a bundle's next file had offset 0,
    which names the first file of a bundle (spec §11.4), and verify rejected the archive."""
    monkeypatch.setenv("POPPO_BACKUP_KEY", "edge trees")
    for name in ("0", "00", "01"):
        (installation / "state" / name).write_bytes(b"")
    (installation / "state/02").write_text("after the empty ones")
    packed = cli.pack("--encrypt")
    code, verified = cli.json("verify", packed["id"])
    assert code == 0, verified
