"""The command line as an operator meets it: help for each command, "did you mean", and a
command line that does not fit answered in one line (exit 2), never with docopt's words.

Everything is derived from the grammar (``cli.GRAMMAR``), so a command added later is
covered without a line here.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from poppoarc import cli
from poppoarc.errors import EXIT_USAGE
from poppoarc.text import width

GRAMMAR = cli.GRAMMAR
WORDS = GRAMMAR.words()
# what docopt (or any library) says, which the operator must never see
INTERNALS = re.compile(r"Option\(|Argument\(|Command\(|unmatched|DocoptExit|Traceback|"
                       r"Warning:|^Usage:|\[options\]", re.M)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, out: str, err: str) -> str:
    assert code == EXIT_USAGE, (code, out, err)
    lines = err.splitlines()
    if out:     # --json: the same line as a document
        assert json.loads(out)["error"]["message"] == lines[0].split(": ", 2)[2]
    assert len(lines) == 1, err
    assert not INTERNALS.search(err), err
    prefix = lines[0].split(": ", 2)
    assert prefix[0] == "poppoarc" and prefix[1] in ("error", "エラー"), err
    return prefix[2]


@pytest.mark.parametrize("command", GRAMMAR.commands, ids=lambda c: c.name)
def test_each_command_has_its_own_help(capsys, command):
    for flag in ("--help", "-h"):
        code, out, err = run(capsys, command.words[0], flag)
        assert code == 0 and err == ""
        assert out.startswith("Usage:\n")
        for pattern in command.patterns:
            assert " ".join(pattern.split()) in " ".join(out.split())
        for option in command.options:
            assert option.long in out and option.description.split()[0] in out
        for other in GRAMMAR.commands:      # another command's forms are not shown
            if other.words[0] != command.words[0]:
                assert f"] {other.patterns[0].split()[0]} " not in out
        assert "Global options:" in out and "--root=DIR" in out
    # an alias has the same help
    for alias in command.words[1:]:
        assert run(capsys, alias, "--help")[1] == run(capsys, command.words[0], "--help")[1]


def test_overview_lists_every_command_with_what_it_does(capsys):
    code, out, err = run(capsys, "--help")
    assert code == 0 and err == ""
    for command in GRAMMAR.commands:
        assert re.search(rf"^  {re.escape(command.words[0])}\b", out, re.M), command.name
        assert command.summary.split()[0] in out
    assert "poppoarc COMMAND --help" in out
    assert len(out.splitlines()) < 70      # 20 commands, a screen and a half


def test_help_in_japanese(capsys, japanese):
    code, out, _ = run(capsys, "pack", "--help")
    assert code == 0
    assert out.startswith("使い方:\n")
    assert "インストールの署名付きアーカイブを 1 つ保存先に作成します。" in out
    assert "--targets=LIST   カンマ区切りの対象" in out
    code, out, _ = run(capsys, "--help")
    assert "コマンド:" in out and "全コマンド共通のオプション:" in out
    for line in out.splitlines():       # wrapped by display cells, not characters
        assert width(line) <= 81, line  # (a closing mark may hang at the end)


@pytest.mark.parametrize("argv, expected", [
    (["pakc"], "unknown command 'pakc' (did you mean 'pack'?); run 'poppoarc --help' for "
               "the commands"),
    (["verfy", "x"], "unknown command 'verfy' (did you mean 'verify'?)"),
    (["frobnicate"], "unknown command 'frobnicate'; run 'poppoarc --help' for the commands"),
    ([], "no command given; run 'poppoarc --help' for the commands"),
    (["--json"], "no command given"),
    (["pack", "--taregts=config"], "unknown option --taregts (did you mean '--targets'?); "
                                   "run 'poppoarc pack --help' for its usage"),
    (["pack", "--dry-run"], "pack has no option --dry-run (it is an option of unpack, "
                            "consolidate and prune); run 'poppoarc pack --help' for its usage"),
    (["pack", "--dryrun"], "pack has no option --dryrun (did you mean '--dry-run', an option "
                           "of unpack, consolidate and prune?)"),
    (["list", "--frob"], "unknown option --frob; run 'poppoarc list --help' for its usage"),
    (["unpack"], "unpack needs ARCHIVE: an archive id, a unique id prefix, the name pack "
                 "--name gave it, a path to a .poppo.tar.zst file, or an s3://bucket/key URL of one"),
    (["restore"], "restore needs ARCHIVE: an archive id"),
    (["verify"], "verify needs ARCHIVE: "),
    (["copy", "backup-x"], "copy needs --to=STORE; run 'poppoarc copy --help' for its usage"),
    (["unpack", "backup-x", "--recover"], "--recover cannot be used with ARCHIVE"),
    (["pack", "--incremental", "--full"], "--incremental and --full cannot be used together"),
    (["schedule", "--once", "--next"], "--next cannot be used with --once"),
    (["schedule", "--count=3"], "--count is only used with --next"),
    (["verify", "a", "b"], "unexpected argument 'b'; run 'poppoarc verify --help'"),
    (["list", "extra"], "unexpected argument 'extra'"),
    (["pack", "--name"], "--name needs a value: --name=NAME"),
    (["list", "--json=yes"], "--json takes no value"),
    (["list", "--json", "--json"], "--json is given more than once"),
    (["pack", "-x"], "unknown option -x"),
])
def test_a_command_line_that_does_not_fit_is_one_line(capsys, argv, expected):
    message = one_error_line(*run(capsys, *argv))
    assert message.startswith(expected), message


def test_usage_errors_in_japanese(capsys, japanese):
    message = one_error_line(*run(capsys, "pakc"))
    assert message == ("'pakc' というコマンドはありません('pack' のことですか?)。"
                       "コマンドの一覧は 'poppoarc --help' で表示されます")
    message = one_error_line(*run(capsys, "unpack"))
    assert message.startswith("unpack には ARCHIVE が必要です: アーカイブ ID")


def test_usage_error_with_json_is_also_a_json_document(capsys):
    code, out, err = run(capsys, "unpack", "--json")
    assert code == EXIT_USAGE
    document = json.loads(out)
    assert document["error"]["type"] == "UsageError" and document["error"]["exit_code"] == 2
    assert err == f"poppoarc: error: {document['error']['message']}\n"


def test_unique_prefixes_of_options_still_work(capsys, tmp_path):
    code, out, _ = run(capsys, "--root", str(tmp_path), "list", "--js")
    assert code == 0 and json.loads(out)["total"] == 0


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("poppoarc ")


def _vocabulary():
    options = sorted({spec.long + ("=x" if spec.takes_value else "")
                      for spec in GRAMMAR.known().values()} - {"--help", "--version"})
    return WORDS + options + ["ARCHIVE-ID", "--nonsense", "-z", "--to", "--targets", "extra"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_vocabulary()), max_size=6))
def test_any_command_line_parses_or_is_one_line(capsys, argv):
    """Whatever the tokens, the parser accepts them (and the command they name claims
    them) or answers one line naming the problem: never a traceback, never docopt."""
    try:
        parsed = GRAMMAR.parse(argv)
    except cli.UsageProblem as problem:
        message = cli.help.problem_message(problem, GRAMMAR)
        assert "\n" not in message and not INTERNALS.search(message), message
        assert "None" not in message, (argv, message)
        return
    if parsed.group:
        names = [c.name for c in parsed.group]
        assert sum(cli.commands.COMMANDS[n].matches(parsed.args) for n in names) == 1
