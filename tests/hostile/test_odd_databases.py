"""Live databases an application (or a restored archive) may hold that SQLite opens and
checks but Python's sqlite3 cannot fully read: pack backs them up, whole, and writes
nothing verify refuses.

Before: a table of a virtual-table module this SQLite lacks (``USING vec0``: sqlite-vec,
spatialite, a custom tokenizer) made pack exit 70 ("no such module: vec0") and a table
name that is not UTF-8 exit 70 too, so a database restored from a signed archive stopped
every later backup; a table name over 1024 characters was packed (exit 0) into a manifest
that verify and unpack refuse (exit 13: "malformed tables")."""

from __future__ import annotations

import sqlite3

import pytest


def _virtual_table_of_a_missing_module(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO docs (body) VALUES ('hello')")
    conn.execute("CREATE VIRTUAL TABLE idx USING fts5(body)")
    conn.commit()
    conn.execute("PRAGMA writable_schema=ON")      # as if made with an extension loaded
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, 'fts5', 'vec0') "
                 "WHERE name = 'idx'")
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.OperationalError, match="no such module"):
        with sqlite3.connect(path) as probe:
            probe.execute("SELECT count(*) FROM idx").fetchall()


def _table_name_not_utf8(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE docs (body TEXT)")
    conn.execute("INSERT INTO docs VALUES ('hello')")
    conn.execute("CREATE TABLE renamed (x)")
    conn.commit()
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET name = CAST(x'ff41fe42' AS TEXT), "
                 "tbl_name = CAST(x'ff41fe42' AS TEXT), "
                 "sql = 'CREATE TABLE \"' || CAST(x'ff41fe42' AS TEXT) || '\" (x)' "
                 "WHERE name = 'renamed'")
    conn.commit()
    conn.close()


def _table_name_too_long(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE docs (body TEXT)")
    conn.execute("INSERT INTO docs VALUES ('hello')")
    conn.execute(f'CREATE TABLE "{"t" * 2000}" (x)')
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make", [_virtual_table_of_a_missing_module, _table_name_not_utf8,
                                  _table_name_too_long], ids=lambda f: f.__name__.strip("_"))
def test_a_database_python_cannot_fully_read_is_backed_up_and_restored(make, cli,
                                                                        installation):
    database = installation / "data/odd.db"
    make(database)
    code, packed = cli.json("pack", "--targets", "database")
    assert code in (0, 1), packed
    code, out, err = cli("verify", packed["id"])
    assert code == 0, err
    code, document = cli.json("inspect", packed["id"])
    assert code in (0, 1), document
    facts = next(d for d in document["manifest"]["databases"] if d["path"] == "data/odd.db")
    assert facts["tables"]["docs"] == 1             # what it can count, it counts
    assert facts.get("tables_truncated") is True    # and says it left something out
    database.unlink()
    code, out, err = cli("unpack", packed["id"], "--targets", "database", "--skip-backup")
    assert code in (0, 1), err
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT body FROM docs").fetchall() == [("hello",)]
