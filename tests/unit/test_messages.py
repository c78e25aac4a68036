"""Every message an operator can read has a Japanese translation: the strings a test finds
by reading the sources (gettext-style: ``_``/``N_`` calls, the commands' option tables,
and the messages of every error raised and warning recorded, f-strings as templates)."""

import ast

import pytest

from poppoarc import i18n
from poppoarc.ui import msgfmt


def test_every_extracted_message_is_translated_and_the_catalog_compiled():
    assert msgfmt.check() == []


def test_errors_raised_and_warnings_recorded_are_extracted_as_templates():
    found = msgfmt.extract()
    # a raise with an f-string: its fields as written in the source
    assert "cannot read key: {exc.strerror}" in found
    # a conditional message gives both branches
    assert "the manifest does not list" in found and "is unknown" in found
    assert "installation root is not a directory" in found
    # a warning recorded, and the reason of a skipped path
    assert "{rel}: special file (device, FIFO or socket) not archived" in found
    assert "cannot read ({exc.strerror}); not archived" in found


def test_the_extractor_reads_fstrings_concatenations_and_conditionals():
    tree = ast.parse(
        "raise ConfigError(f'{path}: bad {x!r} at {n:>4}')\n"
        "raise StoreError('cannot ' + verb + ' it')\n"
        "raise KeyFileError('a' 'b' if ok else f'no {key}')\n"
        "raise NotAnError('ignored')\n"
        "raise UsageError(_('translated already'))\n"
        "raise SourceError(str(exc))\n"
        "warnings.add(f'{path}: changed while read')\n"
        "warnings.skip(path, 'gone; not archived')\n")
    assert msgfmt.english_messages(tree) == [
        "{path}: bad {x!r} at {n:>4}", "cannot {verb} it", "ab", "no {key}",
        "{path}: changed while read", "gone; not archived", "{path}: gone; not archived"]


@pytest.fixture
def ja(monkeypatch):
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    i18n.setup()
    yield
    monkeypatch.setenv("LANG", "C.UTF-8")
    i18n.setup()


def test_an_english_message_is_shown_in_japanese_by_its_template(ja):
    assert i18n.translate_text("cannot read key: Permission denied") == \
        "鍵を読めません: Permission denied"
    # a message that quotes another: each part by its own template
    assert i18n.translate_text(
        "safety archive backup-1: tmp/x: special file (device, FIFO or socket) not archived") \
        == "安全アーカイブ backup-1: tmp/x: 特殊ファイル(デバイス、FIFO、ソケット)はアーカイブしていません"
    # what no template made stays as it is, and a template that says too little
    # ("{a} and {b}") is not taken for one
    assert i18n.translate_text("a library's own words") == "a library's own words"
    assert i18n.translate_text("salt and pepper") == "salt and pepper"
    # a skipped path's warning as recorded ("PATH: why")
    assert i18n.translate_text(".env: secret file not archived: secrets are stored only "
                               "encrypted and no key is configured (POPPO_BACKUP_KEY or "
                               "backup.storage.recipients)").startswith(".env: 秘密ファイルを")


def test_english_is_left_alone():
    i18n.setup({"LANG": "C.UTF-8"})
    assert i18n.translate_text("cannot read key: x") == "cannot read key: x"


def test_logs_and_notifications_get_the_one_line_of_an_error():
    from poppoarc.errors import DatabaseSnapshotError, one_line
    error = DatabaseSnapshotError("snapshot fails integrity_check: row 3 missing\n"
                                  "*** in database main ***\nPage 7: btreeInitPage() "
                                  "returns error code 11", path="data/a.db")
    assert one_line(error) == "data/a.db: snapshot fails integrity_check: row 3 missing"
    assert one_line(OSError()) == "OSError"
