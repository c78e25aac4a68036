"""A real installation (issue 26): the upstream layout, its shipped config, its databases."""

import os
import shutil
import sqlite3

import pytest

from poppoarc.demo.real_layout import DATABASES, make_real_layout
from tests.helpers import CLI


@pytest.fixture(scope="session")
def real_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("real") / "inst"
    make_real_layout(root)
    return root


@pytest.fixture
def real(real_template, tmp_path):
    root = tmp_path / "inst"
    shutil.copytree(real_template, root, symlinks=True)
    return root


def header_modes(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(20)[18:20]


def test_restored_databases_keep_their_journal_mode(real, tmp_path, capsys, monkeypatch):
    """WAL stays WAL and a rollback journal stays one, through a full archive, an
    incremental (page deltas) and a restore over the live tree, with no sidecar left."""
    monkeypatch.setenv("POPPOARC_HOME", str(tmp_path / "keys"))
    (real / "config" / "config.json").write_text('{"backup": {}}\n')   # the modern defaults
    live = {rel: header_modes(real / rel) for rel in DATABASES}
    assert live == {"data/poppobuilder.db": b"\2\2", "data/metrics.db": b"\1\1",
                    "data/audit.db": b"\2\2"}
    cli = CLI(real, tmp_path / "store", capsys)
    full = cli.pack("--full")
    with sqlite3.connect(real / "data" / "poppobuilder.db") as db:
        db.execute("INSERT INTO archive_history (archive_file, records_count) VALUES ('x', 1)")
    incremental = cli.pack("--incremental")
    assert incremental["parent"] == full["id"]
    for archive in (full["id"], incremental["id"]):
        assert cli("verify", archive)[0] == 0
        empty = tmp_path / f"empty-{archive}"
        empty.mkdir()
        code, out, err = CLI(empty, tmp_path / "store", capsys)("unpack", archive, "--skip-backup")
        assert code in (0, 1), err
        assert {rel: header_modes(empty / rel) for rel in DATABASES} == live
        assert not [n for n in os.listdir(empty / "data") if n.endswith(("-wal", "-shm"))]
        with sqlite3.connect(empty / "data" / "poppobuilder.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    code, out, err = cli("unpack", full["id"])                # over the live tree
    assert code in (0, 1), err
    assert {rel: header_modes(real / rel) for rel in DATABASES} == live
