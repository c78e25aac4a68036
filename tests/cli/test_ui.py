"""Output for people: CJK-aware tables, Japanese catalogs, progress on and off a terminal."""

import gettext
import io
import re

import pytest

from poppoarc import i18n
from poppoarc.ui.msgfmt import check, compile_mo, parse_po, po_files
from poppoarc.ui.progress import BarProgress, LineProgress, Progress, make_progress
from poppoarc.text import ljust, width

from tests.helpers import run_poppoarc

ANSI = re.compile(r"\x1b\[")
LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def test_display_width_counts_wide_characters_twice():
    assert width("日時") == 4 and width("ID") == 2 and width("タイプ") == 6
    assert ljust("日時", 21) == "日時" + " " * 17
    assert width(ljust("サイズ", 10)) == 10


@pytest.mark.parametrize("env,expected", [
    ({"LANG": "ja_JP.UTF-8"}, "ja"), ({"LANG": "en_US.UTF-8"}, "en"), ({}, "en"),
    ({"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}, "en"), ({"LANGUAGE": "ja:en", "LANG": "C"}, "ja"),
    ({"LC_MESSAGES": "ja_JP.eucJP"}, "ja")])
def test_language_follows_the_locale_variables(env, expected):
    assert i18n.detect(env) == expected


def test_catalogs_are_complete_and_compiled():
    assert check() == []
    for po in po_files():
        mo = po.with_suffix(".mo")
        assert mo.read_bytes() == compile_mo(parse_po(po.read_text(encoding="utf-8")))
        with open(mo, "rb") as handle:
            catalog = gettext.GNUTranslations(handle)
        assert catalog.gettext("Backups:") == "バックアップ一覧:"
        assert catalog.ngettext("Total: {count} backup", "Total: {count} backups", 2) == \
            "合計: {count} 件のバックアップ"


def test_japanese_list_matches_the_seed_layout(cli, japanese):
    cli.pack()
    cli.pack("--targets", "config")
    code, out, _ = cli("list")
    assert code == 0
    lines = out.splitlines()
    rule = "─" * 80
    assert lines[0] == "バックアップ一覧:"
    assert lines[1] == rule and lines[3] == rule and lines[-3] == rule
    # the seed's four columns, then the signing key, what is encrypted, the name
    assert lines[2] == "ID" + " " * 38 + "日時" + " " * 17 + "タイプ" + " " * 6 + "サイズ" + " " * 4 \
        + "鍵" + " " * 8 + "暗号化" + " " * 5 + "名前"
    assert lines[-2] == "合計: 2 件のバックアップ"
    assert re.fullmatch(r"鍵 [0-9a-f]{8}: このマシンの署名鍵", lines[-1])
    for row in lines[4:-3]:
        match = re.fullmatch(r"(backup-\S+)  (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)  (manual) +"
                             r"(\S+ k?M?B) +([0-9a-f]{8})  (-|秘密のみ)", row)
        assert match, row
        # every column starts in the same terminal cell as its Japanese header
        assert width(row[:match.start(2)]) == width("ID" + " " * 38)
        assert width(row[:match.start(3)]) == width(lines[2][:lines[2].index("タイプ")])
        assert width(row[:match.start(4)]) == width(lines[2][:lines[2].index("サイズ")])
        assert width(row[:match.start(5)]) == width(lines[2][:lines[2].index("鍵")]) == 83
        assert width(row[:match.start(6)]) == width(lines[2][:lines[2].index("暗号化")])


def test_english_list_and_japanese_errors(cli, japanese, monkeypatch):
    code, _, err = cli("verify", "backup-1999")
    assert code == 4 and err.startswith("poppoarc: エラー: ")
    monkeypatch.setenv("LANG", "C.UTF-8")
    code, out, _ = cli("list")
    assert out.splitlines()[0] == "Backups:" and out.splitlines()[-1] == "Total: 0 backups"
    assert out.splitlines()[2].split() == ["ID", "Date", "Type", "Size", "Key", "Encrypted", "Name"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_lines_every_interval_without_control_characters():
    stream, clock = io.StringIO(), Clock()
    progress = LineProgress("pack", stream, interval=5, clock=clock)
    for step in range(1, 21):
        clock.now = step
        progress(step * 10_000_000, 200_000_000, "data/x.db")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5            # at 5, 10, 15, 20 s, and the final line
    assert lines[0] == "pack: 50.0 MB of 200.0 MB (25%), 10.0 MB/s, ETA 0:15"
    assert lines[-1] == "pack: 200.0 MB in 0:20 (10.0 MB/s)"
    assert "\r" not in stream.getvalue() and not ANSI.search(stream.getvalue())


def test_plain_lines_count_rate_and_eta_from_the_first_report():
    """Planning and a safety archive can run long before the first byte is restored:
    they must not drag the rate towards zero and the ETA towards years."""
    stream, clock = io.StringIO(), Clock()
    progress = LineProgress("unpack", stream, interval=5, clock=clock)
    clock.now = 1000.0                     # 1000 s of planning, nothing reported
    progress(1_000_000, 100_000_000)
    clock.now = 1005.0
    progress(51_000_000, 100_000_000)       # 50 MB in the 5 s since the first report
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "unpack: 51.0 MB of 100.0 MB (51%), 10.0 MB/s, ETA 0:04"
    assert lines[-1] == "unpack: 51.0 MB in 16:45 (10.0 MB/s)"   # the whole job's time


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal_shows_bytes_rate_and_eta():
    stream = FakeTerminal()
    with make_progress("pack", quiet=False, as_json=False, stream=stream, environ={}) as progress:
        assert isinstance(progress, BarProgress)
        for done in range(0, 50_000_001, 5_000_000):
            progress(done, 50_000_000, "x")
    shown = stream.getvalue()
    assert "\r" in shown and "pack 100%" in shown and "50.0MB/50.0MB" in shown and "B/s" in shown
    assert "ETA" in shown


@pytest.mark.parametrize("quiet,as_json,tty,env,kind", [
    (True, False, True, {}, Progress), (False, False, False, {}, LineProgress),
    (False, True, False, {}, Progress), (False, True, True, {}, BarProgress),
    (False, False, True, {"POPPOARC_PROGRESS": "none"}, Progress),
    (False, False, False, {"POPPOARC_PROGRESS": "bar"}, BarProgress)])
def test_which_progress(quiet, as_json, tty, env, kind):
    stream = FakeTerminal() if tty else io.StringIO()
    progress = make_progress("x", quiet=quiet, as_json=as_json, stream=stream, environ=env)
    assert type(progress) is kind
    progress.close()


def test_piped_pack_prints_progress_lines_but_no_control_characters(installation, tmp_path):
    args = ["--root", str(installation), "--store", str(tmp_path / "store")]
    result = run_poppoarc(*args, "pack", env={"POPPOARC_PROGRESS_INTERVAL": "0"})
    assert result.returncode in (0, 1), result.stderr
    both = result.stdout + result.stderr
    assert "\r" not in both and not ANSI.search(both)
    assert re.search(r"^pack: .+ of .+ \(\d+%\), .+/s, ETA ", result.stderr, re.M)
    assert result.stdout.startswith("Created backup-")


def test_quiet_prints_nothing(installation, tmp_path):
    args = ["--root", str(installation), "--store", str(tmp_path / "store")]
    env = {"POPPOARC_PROGRESS_INTERVAL": "0"}
    packed = run_poppoarc(*args, "pack", "-q", env=env)
    assert packed.returncode in (0, 1) and packed.stdout == "" and packed.stderr == ""
    for command in (["list"], ["verify", "backup-"], ["doctor"], ["unpack", "backup-", "--dry-run"]):
        result = run_poppoarc(*args, *command, "-q", env=env)
        assert result.returncode in (0, 1), (command, result.stderr)
        assert result.stdout == "" and result.stderr == "", command


def test_bar_never_shows_an_unknown_total_when_a_file_grew():
    stream = FakeTerminal()
    with make_progress("pack", quiet=False, as_json=False, stream=stream, environ={}) as progress:
        progress(0, 1_000_000, None)
        progress(1_200_000, 1_000_000, "data/grown.db")
    last = stream.getvalue().split("\r")[-1]
    assert "100%" in last and "?" not in last
