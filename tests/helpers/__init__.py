"""Helpers the tests share: running poppoarc, comparing trees and archives.

Test files import helpers from here (and from the builders beside it: ``craft``,
``rebuild``, ``s3server``, ``unprivileged``, ``scene``, ``vectors``), never from
one another; fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from poppoarc.cli import main
from poppoarc.format.manifest import write_index
from poppoarc.parallel import Tuning

REPO = Path(__file__).resolve().parents[2]
# thresholds at which every helper runs on the tiny installation (poppoarc.parallel.Tuning)
EAGER = Tuning(share_start=0, share_min_records=1, share_saving=0, subtree_min_entries=1,
               subtree_min_share=1, index_min_bytes=0)


class CLI:
    """Runs poppoarc in-process (fast) against one installation and store; ``parallel``
    (a ``poppoarc.parallel.Parallelism``) replaces the one it would choose."""

    def __init__(self, root: Path, store: Path, capsys, parallel=None):
        self.root, self.store, self.capsys, self.parallel = root, store, capsys, parallel

    def using(self, parallel) -> "CLI":
        """The same installation and store, packed and restored with ``parallel``."""
        return CLI(self.root, self.store, self.capsys, parallel)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--root", str(self.root), "--store", str(self.store), *args],
                    parallel=self.parallel)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> tuple[int, dict]:
        code, out, _ = self(*args, "--json")
        return code, json.loads(out)

    def pack(self, *args: str) -> dict:
        code, document = self.json("pack", *args)
        assert code in (0, 1), document
        return document


def run_poppoarc(*args: str, env=None, **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "poppoarc", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kwargs)


NOT_COMPARED = (".poppoarc", "backups")


def digest(root: Path) -> dict[str, tuple]:
    """Paths, types, modes, file bytes and mtimes, symlink targets below ``root``.

    poppoarc's own files and SQLite -shm indexes (which any reader of a WAL
    database creates) are left out; databases compare by their bytes at rest.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if not d.startswith(NOT_COMPARED)]
            filenames = [f for f in filenames if not f.startswith(NOT_COMPARED)]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel.endswith("-shm"):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                            hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def is_database(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def db_rows(path: Path) -> list:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("select * from process_history order by 1").fetchall()
    finally:
        conn.close()


def vandalize(root: Path) -> None:
    """Change, delete and add files in every target, and corrupt a database."""
    (root / "config/config.json").write_text('{"backup": {"enabled": false}}\n')
    (root / "config/defaults.json").unlink()
    (root / "config/extra.json").write_text("{}\n")
    (root / "state/running-tasks.json").write_text("[]\n")
    (root / "state/new-task.json").write_text('{"id": 1}\n')
    shutil.rmtree(root / "state/locks")
    for gz in list((root / "logs").rglob("*.gz"))[:1]:
        gz.unlink()
    (root / "logs/rogue.log.gz").write_bytes(b"\x1f\x8bnot really")
    agent_file = next(p for p in (root / "data/ccla").rglob("*.json"))
    agent_file.write_text("broken")
    (root / "data/access.log").write_text("truncated\n")
    history = root / "data/poppo-history.db"
    with open(history, "r+b") as handle:      # smash a few pages in the middle
        handle.seek(8192)
        handle.write(os.urandom(4096 * 3))


def tree_files(root: Path, skip=()):
    """{relative path: sha256} for regular files, following nothing."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or any(rel.startswith(s) for s in skip):
                continue
            result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def listed_records(cli, packed, *, bundles: bool = True) -> list:
    """The records of an archive, but for what differs between two packs of one tree
    (directory times, which reading a WAL database touches; an encrypted archive's
    HMACs, keyed per archive).  ``bundles=False`` leaves out how sealed small files
    share objects: a helper's share starts a bundle of its own (spec §11.4: a bundle
    MAY take the files that follow)."""
    code, inspected = cli.json("inspect", packed["path"], "--entries")
    assert code == 0
    left_out = {"hmac_sha256"} | (set() if bundles else {"sealed", "bundle"})
    return [{k: v for k, v in e.items()
             if not (k == "mtime_ns" and e["type"] == "dir" or k in left_out)}
            for e in inspected["entries"] if not e.get("generated")]


def records_alone(cli, *args, bundles: bool = True) -> list:
    """``listed_records`` of a pack in one process with one compression thread, where no
    share is ever cut: the reference a helped pack must equal."""
    from poppoarc.parallel import SERIAL, Parallelism
    return listed_records(cli, cli.using(Parallelism(SERIAL, 1)).pack(*args), bundles=bundles)


def encode_index(archive_id, entries) -> bytes:
    buffer = io.BytesIO()
    write_index(buffer, archive_id, entries)
    return buffer.getvalue()


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records requests; the path chooses the answer (/fail -> 500, /slow -> sleeps)."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        if self.path.startswith("/slow"):
            time.sleep(2)
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@contextmanager
def http_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def unpack(settings, reference: str, **options):
    """The unpack command's work called as a library (``UnpackOptions`` fields as keywords)."""
    from poppoarc.commands import unpack as command
    from poppoarc.options import UnpackOptions
    return command.run(settings, UnpackOptions(reference, **options))


def inspect(settings, reference: str, entries: bool = False):
    """The inspect command's work called as a library."""
    from poppoarc.commands import inspect as command
    from poppoarc.options import InspectOptions
    return command.run(settings, InspectOptions(reference, entries))


def recipient_only(cli, installation: Path, key_home: Path, offline: Path, monkeypatch) -> str:
    """The offline machine makes an X25519 identity in ``offline`` (POPPOARC_HOME there);
    the installation's config names only its recipient, and POPPOARC_HOME is ``key_home``
    again: a server that can seal archives it cannot open.  Returns the recipient."""
    monkeypatch.setenv("POPPOARC_HOME", str(offline))
    code, out, _ = cli("keygen", "--encryption")
    assert code == 0, out
    recipient = next(line.split()[-1] for line in out.splitlines() if "recipient:" in line)
    monkeypatch.setenv("POPPOARC_HOME", str(key_home))
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["storage"]["recipients"] = [recipient]
    (installation / "config/config.json").write_text(json.dumps(config))
    return recipient


def incremental_four_ways(fixed_pack, installation: Path, before=None, after=None) -> dict:
    """The same incremental packed serial and two-process, its parent's facts read from the
    facts cache and (the cache removed) from the parent's index: {(mode, source): the
    archive's bytes}.  ``before()`` and ``after(source)`` run around each pack."""
    from poppoarc.archives import facts
    from poppoarc.config import resolve
    from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism

    cache = facts.directory(resolve(str(installation), store=str(fixed_pack.store)))
    kept = cache.parent / "kept"
    shutil.copytree(cache, kept)
    archives = {}
    for mode in (SERIAL, TWO_PROCESS):
        for source in ("cache", "index"):
            shutil.rmtree(cache)
            if source == "cache":
                shutil.copytree(kept, cache)
            if before is not None:
                before()
            archives[mode, source] = fixed_pack(Parallelism(mode, 2, EAGER), incremental=True)
            if after is not None:
                after(source)
    return archives
