"""Help texts and usage errors, in the operator's language, from the grammar
(``ui/usage.py``): ``poppoarc --help`` lists the commands, ``poppoarc COMMAND --help``
shows that command's usage and options, and a command line that does not fit is one line.

The usage patterns are the grammar and stay as written; the descriptions of commands,
options and arguments are messages (the catalog holds them).
"""

from __future__ import annotations

import textwrap

from ..i18n import _, language
from ..text import ljust, width
from .usage import CommandGrammar, Grammar, OptionSpec, UsageProblem

# characters a Japanese line never starts with (kinsoku): they stay at the end of the line
NO_LINE_START = "、。,.)」』:;!?ー"
COLUMN = 19         # where descriptions start, as in the grammar's option lines
LINE = 79


def overview(grammar: Grammar, version: str) -> str:
    lines = _paragraph(_("poppoarc {version} - backup and transactional restore for "
                         "PoppoBuilder Suite.").format(version=version))
    lines += ["", _("Usage:"),
             "  poppoarc [options] COMMAND [ARGUMENTS]",
             "  poppoarc COMMAND --help",
             "  poppoarc --version", "",
             _("Commands:")]
    rows = []
    for command in grammar.commands:
        form = command.forms[0]
        label = form.label
        if len(form.words) > 1:
            label = label.replace(form.word, "|".join(form.words), 1)
        rows.append((label, _(command.summary)))
    cells = min(max(width(label) for label, _text in rows) + 4, 30)
    for label, text in rows:
        lines += _wrapped(label, text, cells)
    lines += ["", _("Global options:")]
    lines += _options(grammar.global_options)
    lines += [""] + _paragraph(_("Run 'poppoarc COMMAND --help' for a command's usage and "
                                 "options; docs/commands.md describes every command."))
    lines += _paragraph(_("Exit codes: 0 success, 1 success with warnings, 2 usage error, "
                          "3-49 errors (docs/exit-codes.md), 7 doctor found a problem, "
                          "70 internal error (a bug: the traceback is in the log file named "
                          "on stderr), 130 interrupted."))
    return "\n".join(lines) + "\n"


def command_help(grammar: Grammar, group: tuple[CommandGrammar, ...]) -> str:
    """One command's help: its usage forms, what each does, its own options and
    arguments, then the global options."""
    lines = [_("Usage:")]
    for command in group:
        for pattern in command.patterns:
            parts = pattern.strip("\n").splitlines()
            lines.append("  poppoarc [options] " + parts[0].strip())
            lines += [" " * 21 + part.strip() for part in parts[1:]]
    lines.append("")
    for command in group:
        lines += _paragraph(_(command.summary) if len(group) == 1 else
                            f"{command.forms[0].label}: {_(command.summary)}")
    aliases = group[0].words[1:]
    if aliases:
        lines += _paragraph(_("Also spelled: {aliases}.").format(aliases=", ".join(aliases)))
    named = {name for command in group for form in command.forms for name in form.arguments}
    arguments = [grammar.argument(name, group) for name, _r, _p in sorted(named)]
    if any(arguments):
        lines += ["", _("Arguments:")]
        for spec in filter(None, arguments):
            lines += _wrapped(spec.name, _(spec.description), COLUMN)
    options = list({spec.long: spec for command in group for spec in command.options
                    if any(spec.long in form.options for form in command.forms)}.values())
    if options:
        lines += ["", _("Options:")]
        lines += _options(options)
    lines += ["", _("Global options:")]
    lines += _options(grammar.global_options)
    return "\n".join(lines) + "\n"


def _options(specs) -> list[str]:
    lines = []
    for spec in specs:
        text = _(spec.description) if spec.description else ""
        if spec.default is not None:
            text += " " + _("[default: {value}]").format(value=spec.default)
        lines += _wrapped(_spelled(spec), text, COLUMN)
    return lines


def _spelled(spec: OptionSpec) -> str:
    name = spec.long + (f"={spec.argument}" if spec.argument else "")
    return f"{spec.short} {name}" if spec.short else name


def _wrapped(label: str, text: str, column: int) -> list[str]:
    """``label`` indented by two, then ``text`` wrapped from ``column`` on (from the next
    line when the label leaves no room)."""
    pieces = _wrap(text, LINE - column) or [""]
    head = "  " + label
    if width(head) + 2 > column:
        return [head] + [" " * column + piece for piece in pieces if piece]
    first = ljust(head, column) + pieces[0]
    return [first.rstrip()] + [" " * column + piece for piece in pieces[1:]]


def _paragraph(text: str) -> list[str]:
    return _wrap(text, LINE)


def _wrap(text: str, cells: int) -> list[str]:
    """Lines of at most ``cells`` cells: at spaces for English, anywhere between wide
    characters for Japanese (which has no spaces between words)."""
    if language() != "ja" or all(width(c) == 1 for c in text):
        return textwrap.wrap(text, cells, break_on_hyphens=False) or ([""] if not text else [])
    lines, line = [], ""
    for char in text:
        if width(line + char) > cells and char not in NO_LINE_START:
            cut = line.rfind(" ") if width(char) == 1 and char != " " else -1
            if cut > 0:
                lines.append(line[:cut])
                line = line[cut + 1:]
            else:
                lines.append(line.rstrip())
                line = ""
            if char == " " and not line:
                continue
        line += char
    if line.strip():
        lines.append(line.rstrip())
    return lines


# -- usage errors --------------------------------------------------------------------------

def problem_message(problem: UsageProblem, grammar: Grammar) -> str:
    """The one line that says what is wrong with a command line, with what to do."""
    f = problem.fields
    word = f.get("word")
    helping = (_("run 'poppoarc {command} --help' for its usage").format(command=word)
               if word else _("run 'poppoarc --help' for the commands"))
    kind = problem.kind
    if kind == "no-command":
        return _("no command given; run 'poppoarc --help' for the commands")
    if kind == "unknown-command":
        if f["nearest"]:
            return _("unknown command '{command}' (did you mean {nearest}?); run 'poppoarc "
                     "--help' for the commands").format(command=f["command"],
                                                       nearest=_either(f["nearest"]))
        return _("unknown command '{command}'; run 'poppoarc --help' for the "
                 "commands").format(command=f["command"])
    if kind == "unknown-option":
        option = f["option"]
        if f.get("elsewhere") and f.get("exact"):
            text = _("{command} has no option {option} (it is an option of {commands})").format(
                command=word, option=option, commands=_listed(f["elsewhere"]))
        elif f.get("elsewhere"):
            text = _("{command} has no option {option} (did you mean {nearest}, an option of "
                     "{commands}?)").format(command=word, option=option,
                                            nearest=_either(f["nearest"]),
                                            commands=_listed(f["elsewhere"]))
        elif f.get("nearest"):
            text = _("unknown option {option} (did you mean {nearest}?)").format(
                option=option, nearest=_either(f["nearest"]))
        else:
            text = _("unknown option {option}").format(option=option)
        return _("{problem}; {help}").format(problem=text, help=helping)
    spec = grammar.known().get(f.get("option", ""))
    if kind == "needs-value":
        return _("{option} needs a value: {option}={value}").format(
            option=f["option"], value=f["value"])
    if kind == "no-value":
        return _("{option} takes no value").format(option=f["option"])
    if kind == "twice":
        return _("{option} is given more than once").format(option=f["option"])
    if kind == "exclusive":
        return _("{first} and {second} cannot be used together").format(
            first=f["first"], second=f["second"])
    if kind == "not-with":
        return _("{option} cannot be used with {other}; {help}").format(
            option=f["option"], other=f["other"], help=helping)
    if kind == "needs-option":
        return _("{option} is only used with {needed}").format(
            option=f["option"], needed=f["needed"])
    if kind == "missing-option":
        shown = spec.long + (f"={spec.argument}" if spec and spec.argument else "") \
            if spec else f["option"]
        return _("{command} needs {option}; {help}").format(command=word, option=shown,
                                                           help=helping)
    if kind == "missing-argument":
        argument = grammar.argument(f["argument"], grammar.group(word))
        if argument:
            description = _(argument.description).rstrip(".。")
            if description[1:2].islower():      # inside a sentence: "an archive id, ..."
                description = description[0].lower() + description[1:]
            return _("{command} needs {argument}: {description}").format(
                command=word, argument=f["argument"], description=description)
        return _("{command} needs {argument}; {help}").format(
            command=word, argument=f["argument"], help=helping)
    if kind == "extra-argument":
        return _("unexpected argument '{value}'; {help}").format(value=f["value"],
                                                                 help=helping)
    return _("this is not how {command} is used; {help}").format(command=word, help=helping)


def _either(names: list[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    if len(quoted) == 1:
        return quoted[0]
    return _("{first} or {second}").format(first=", ".join(quoted[:-1]), second=quoted[-1])


def _listed(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return _("{first} and {second}").format(first=", ".join(names[:-1]), second=names[-1])
