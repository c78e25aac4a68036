"""The command-line grammar as data, and what is wrong with a command line that fits it not.

Each command declares its grammar once (``commands/<name>.py``: ``USAGE``, its docopt
usage patterns, and ``OPTIONS``/``ARGUMENTS``, its option and argument lines); docopt
parses a command line that fits.  This module reads the same text to find the command word
before docopt runs (so that each command is parsed, and helped, alone), and to say in one
line what is wrong with a command line that does not fit: an unknown command or option
(with the nearest names), a missing value or argument, two options that exclude each
other.  Nothing of docopt's own wording reaches the operator.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

OPTION_LINE = re.compile(r"^ {1,4}(?:(-[a-zA-Z])[ ,]+)?(--[a-z][\w-]*)(?:[= ]([A-Z][\w]*))?"
                         r"(?: {2,}(.*))?$")
SHORT_ONLY_LINE = re.compile(r"^ {1,4}(-[a-zA-Z])(?: {2,}(.*))?$")
ARGUMENT_LINE = re.compile(r"^ {1,4}([A-Z][A-Z0-9_]*)(?: {2,}(.*))?$")
DEFAULT = re.compile(r"\s*\[default: ([^\]]*)\](\.?)\s*$", re.I)
TOKEN = re.compile(r"\[|\]|\(|\)|\||\.\.\.|[^\s\[\]()|]+")


@dataclass(frozen=True)
class OptionSpec:
    """One option line: ``  -q --quiet       Print nothing but errors.``"""

    long: str
    short: str | None
    argument: str | None        # the value's name (``LIST``), None for a flag
    description: str            # the text, continuation lines joined, default removed
    lines: tuple[str, ...]      # the lines as written (the grammar shows them)
    default: str | None = None

    @property
    def takes_value(self) -> bool:
        return self.argument is not None

    @property
    def spelled(self) -> str:
        """``--targets=LIST``, ``-q, --quiet``: the option as the help shows it."""
        name = self.long + (f"={self.argument}" if self.argument else "")
        return f"{self.short}, {name}" if self.short else name


@dataclass(frozen=True)
class ArgumentSpec:
    name: str
    description: str


def _described(lines: list[str], head: re.Pattern) -> list[tuple[re.Match, str, tuple]]:
    """(match of the first line, description joined, lines) for every entry of a table
    of option or argument lines; a line indented deeper continues the entry above."""
    entries: list[list] = []
    for line in lines:
        if not line.strip():
            continue
        match = head.match(line)
        if match:
            entries.append([match, [(match.groups()[-1] or "").strip()], [line]])
        elif entries and line.startswith(" " * 5):
            entries[-1][1].append(line.strip())
            entries[-1][2].append(line)
        else:
            raise ValueError(f"not an option or argument line: {line!r}")
    return [(match, " ".join(p for p in parts if p), tuple(raw)) for match, parts, raw in entries]


def option_specs(text: str) -> list[OptionSpec]:
    """The options of a table of option lines (``OPTIONS``), in order."""
    specs = []
    for line in text.splitlines():
        short = SHORT_ONLY_LINE.match(line)
        if short and not OPTION_LINE.match(line):
            raise ValueError(f"a short option needs its long name too: {line!r}")
    for match, description, lines in _described(text.splitlines(), OPTION_LINE):
        short, long, argument = match.group(1), match.group(2), match.group(3)
        default = DEFAULT.search(description)
        if default:
            description = description[:default.start()].rstrip() + default.group(2)
        specs.append(OptionSpec(long, short, argument, description, lines,
                                default.group(1) if default else None))
    return specs


def argument_specs(text: str) -> list[ArgumentSpec]:
    return [ArgumentSpec(match.group(1), description)
            for match, description, _ in _described(text.splitlines(), ARGUMENT_LINE)]


def descriptions(text: str) -> list[str]:
    """Every description of a table of option or argument lines: its messages (the
    catalog's extractor reads them, ``ui/msgfmt.py``)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    specs = option_specs(text) if OPTION_LINE.match(first) else argument_specs(text)
    return [spec.description for spec in specs if spec.description]


# -- usage patterns --------------------------------------------------------------------

@dataclass(frozen=True)
class Form:
    """One usage pattern of a command, e.g. ``copy ARCHIVE --to=STORE [--json]``."""

    words: tuple[str, ...]                  # the command word and its aliases
    text: str                               # the pattern as written, on one line
    options: frozenset[str]                 # every option it names
    required: frozenset[str]                # options it cannot do without
    repeatable: frozenset[str]              # options it takes more than once (``...``)
    arguments: tuple[tuple[str, bool, bool], ...]   # (NAME, required, repeated)
    exclusive: tuple[frozenset[str], ...]   # options of which at most one may be given
    spelled: dict = field(default_factory=dict, compare=False)  # --to: --to=STORE

    @property
    def word(self) -> str:
        return self.words[0]

    @property
    def label(self) -> str:
        """The form with its optional parts left out: ``unpack --recover``."""
        shown = [self.word]
        shown += [name for name, required, _ in self.arguments if required]
        shown += [self.spelled.get(name, name) for name in sorted(self.required)]
        return " ".join(shown)


def parse_form(pattern: str) -> Form:
    tokens = TOKEN.findall(pattern)
    words: list[str]
    if tokens[0] == "(":
        end = tokens.index(")")
        words = [t for t in tokens[1:end] if t != "|"]
        tokens = tokens[end + 1:]
    else:
        words, tokens = [tokens[0]], tokens[1:]
    state = _Walk()
    state.group(tokens, 0, required=True)
    spelled = {token.split("=")[0]: token for token in tokens if token.startswith("--")}
    return Form(tuple(words), " ".join(pattern.split()), frozenset(state.options),
                frozenset(state.required), frozenset(state.repeatable),
                tuple(state.arguments), tuple(state.exclusive), spelled)


@dataclass
class _Walk:
    options: set = field(default_factory=set)
    required: set = field(default_factory=set)
    repeatable: set = field(default_factory=set)
    arguments: list = field(default_factory=list)
    exclusive: list = field(default_factory=list)

    def group(self, tokens: list[str], at: int, required: bool, closer: str = "") -> int:
        """Walk tokens from ``at`` to ``closer``; returns the index after it."""
        alternatives: list[set] = [set()]
        last: list[str] = []
        while at < len(tokens) and tokens[at] != closer:
            token = tokens[at]
            if token in ("[", "("):
                inner = _Walk()
                at = inner.group(tokens, at + 1, required and token == "(",
                                 "]" if token == "[" else ")")
                self._merge(inner)
                alternatives[-1] |= inner.options
                last = sorted(inner.options)
                continue
            if token == "|":
                alternatives.append(set())
                required = False        # one of several: none alone is required
            elif token == "...":
                self.repeatable.update(last)
                if self.arguments and last == [self.arguments[-1][0]]:
                    name, needed, _ = self.arguments[-1]
                    self.arguments[-1] = (name, needed, True)
            elif token.startswith("-"):
                name = token.split("=")[0]
                self.options.add(name)
                alternatives[-1].add(name)
                if required:
                    self.required.add(name)
                last = [name]
            elif token == "options":
                last = []
            elif token.isupper() or token.startswith("<"):
                self.arguments.append((token, required, False))
                last = [token]
            at += 1
        if len(alternatives) > 1:
            self.exclusive.append(frozenset().union(*alternatives))
            self.required -= set().union(*alternatives)
        return at + 1

    def _merge(self, inner: "_Walk") -> None:
        self.options |= inner.options
        self.required |= inner.required
        self.repeatable |= inner.repeatable
        self.arguments += inner.arguments
        self.exclusive += inner.exclusive


# -- a command line, read against the grammar --------------------------------------------

class UsageProblem(Exception):
    """What is wrong with a command line: ``kind`` and the names it concerns; the message
    is made where it is shown (``ui/help.py``), in the operator's language."""

    def __init__(self, kind: str, **fields):
        super().__init__(kind, fields)
        self.kind, self.fields = kind, fields


@dataclass
class Given:
    """A command line as tokens: the command word, options with values, positionals."""

    word: str | None = None
    options: list[tuple[str, str | None]] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)
    help: bool = False
    version: bool = False

    def names(self) -> list[str]:
        return [name for name, _ in self.options]


def read(argv: list[str], known: dict[str, OptionSpec], *, lenient: bool = False) -> Given:
    """Split ``argv`` by the options in ``known`` (long name -> spec): the first positional
    is the command word.  An option not in ``known`` raises
    UsageProblem("unknown-option") (``lenient``: taken for a flag), one that lacks or has
    a value it should not raises "needs-value" or "no-value"."""
    shorts = {spec.short: spec for spec in known.values() if spec.short}
    given = Given()
    tokens = list(argv)
    at = 0
    while at < len(tokens):
        token = tokens[at]
        at += 1
        if token == "--":
            given.positionals += tokens[at:]
            break
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            spec = _resolve(name, known)
            if spec is None:
                if lenient:
                    continue
                raise UsageProblem("unknown-option", option=name, word=given.word)
            if spec.takes_value and not eq:
                if at >= len(tokens) and lenient:
                    break
                if at >= len(tokens):
                    raise UsageProblem("needs-value", option=spec.long, value=spec.argument)
                value, at = tokens[at], at + 1
            elif eq and not spec.takes_value:
                raise UsageProblem("no-value", option=spec.long)
            given.options.append((spec.long, value if spec.takes_value else None))
        elif token.startswith("-") and len(token) > 1:
            for char in token[1:]:
                spec = shorts.get("-" + char)
                if spec is None and lenient:
                    continue
                if spec is None:
                    raise UsageProblem("unknown-option", option="-" + char, word=given.word)
                given.options.append((spec.long, None))
        elif given.word is None:
            given.word = token
        else:
            given.positionals.append(token)
    names = given.names()
    given.help, given.version = "--help" in names, "--version" in names
    return given


def _resolve(name: str, known: dict[str, OptionSpec]) -> OptionSpec | None:
    """The option ``name`` names: itself, or the one option it is a prefix of (as docopt
    accepts ``--tar`` for ``--targets``)."""
    if name in known:
        return known[name]
    candidates = [long for long in known if long.startswith(name)]
    return known[candidates[0]] if len(candidates) == 1 and len(name) > 2 else None


def nearest(name: str, choices, *, limit: int = 2) -> list[str]:
    """The names in ``choices`` a mistyped ``name`` most likely meant: close by edit
    distance, or the only ones it begins."""
    choices = sorted(set(choices))
    prefixed = [c for c in choices if c.startswith(name) and len(name) >= 2]
    if 0 < len(prefixed) <= limit:
        return prefixed
    scored = sorted(((difflib.SequenceMatcher(None, name.lstrip("-"), c.lstrip("-")).ratio(), c)
                     for c in choices), reverse=True)
    best = scored[0][0] if scored else 0
    # the clearly best ones only: "pakc" is "pack", not also "unpack"
    return [c for score, c in scored[:limit] if score >= max(0.6, best - 0.08)]


def diagnose(given: Given, forms: list[Form], global_options: set[str]) -> UsageProblem:
    """Why ``given`` (read with the options of its command) fits none of ``forms``: the
    problem of the form it comes closest to."""
    best: list[UsageProblem] | None = None
    for form in forms:
        problems = _problems(given, form, forms, global_options)
        if problems and (best is None or len(problems) < len(best)):
            best = problems
    problem = best[0] if best else UsageProblem("does-not-fit")
    problem.fields.setdefault("word", given.word)
    return problem


def _problems(given: Given, form: Form, forms: list[Form],
              global_options: set[str]) -> list[UsageProblem]:
    names = list(dict.fromkeys(given.names()))
    problems = []
    for name in names:
        if given.names().count(name) > 1 and name not in form.repeatable:
            problems.append(UsageProblem("twice", option=name))
    for group in form.exclusive:
        chosen = [name for name in names if name in group]
        if len(chosen) > 1:
            problems.append(UsageProblem("exclusive", first=chosen[0], second=chosen[1]))
    for name in names:
        if name in form.options or name in global_options:
            continue
        other = next(f for f in forms if name in f.options)     # read() knew the option
        extra = _unaccepted(given, other, global_options)
        if extra:
            shown = extra[0]
            if shown in given.positionals and form.arguments:    # by its name: ARCHIVE
                shown = form.arguments[min(given.positionals.index(shown),
                                           len(form.arguments) - 1)][0]
            problems.append(UsageProblem("not-with", option=name, other=shown))
        else:
            needed = sorted(other.required - set(names))
            problems.append(UsageProblem("needs-option", option=name,
                                         needed=needed[0] if needed else other.label))
    for name in sorted(form.required - set(names)):
        problems.append(UsageProblem("missing-option", option=name, word=given.word))
    needed = [name for name, required, _ in form.arguments if required]
    if len(given.positionals) < len(needed):
        problems.append(UsageProblem("missing-argument", argument=needed[len(given.positionals)],
                                     word=given.word))
    extra = _unaccepted(given, form, global_options)
    if extra and extra[0] in given.positionals:
        problems.append(UsageProblem("extra-argument", value=extra[0], word=given.word))
    return problems


def _unaccepted(given: Given, form: Form, global_options: set[str]) -> list[str]:
    """What ``given`` holds that ``form`` does not take: options it does not name, then
    the positionals beyond its arguments (as the argument's name when it has one)."""
    extra = [name for name in dict.fromkeys(given.names())
             if name not in form.options and name not in global_options]
    if any(repeated for _, _, repeated in form.arguments):
        return extra
    extra += given.positionals[len(form.arguments):]
    return extra


# -- the whole grammar ------------------------------------------------------------------

@dataclass(frozen=True)
class CommandGrammar:
    """One command module's part of the grammar (``commands/<name>.py``)."""

    name: str
    summary: str
    patterns: tuple[str, ...]               # its usage patterns as declared
    options: tuple[OptionSpec, ...]
    arguments: tuple[ArgumentSpec, ...] = ()

    @property
    def forms(self) -> tuple[Form, ...]:
        return tuple(parse_form(pattern) for pattern in self.patterns)

    @property
    def words(self) -> tuple[str, ...]:
        return self.forms[0].words


@dataclass(frozen=True)
class Parsed:
    """A command line that fits: its command word, the modules that word names (one, or
    ``unpack`` and ``unpack --recover``) and docopt's dictionary."""

    word: str | None
    group: tuple[CommandGrammar, ...]
    args: dict
    help: bool = False
    version: bool = False


@dataclass(frozen=True)
class Grammar:
    commands: tuple[CommandGrammar, ...]
    global_options: tuple[OptionSpec, ...]
    arguments: tuple[ArgumentSpec, ...]     # arguments several commands share (ARCHIVE)

    def group(self, word: str) -> tuple[CommandGrammar, ...]:
        """The commands a word (or alias) names."""
        return tuple(c for c in self.commands if word in c.words)

    def words(self) -> list[str]:
        return list(dict.fromkeys(w for c in self.commands for w in c.words))

    def known(self, group=None) -> dict[str, OptionSpec]:
        """Options by long name: the global ones and those of ``group`` (every command's
        when None)."""
        known = {spec.long: spec for spec in self.global_options}
        for command in self.commands if group is None else group:
            for spec in command.options:
                known.setdefault(spec.long, spec)
        return known

    def argument(self, name: str, group=()) -> ArgumentSpec | None:
        for spec in [a for c in group for a in c.arguments] + list(self.arguments):
            if spec.name == name:
                return spec
        return None

    def docopt_text(self, group) -> str:
        """The usage text docopt parses a command line of ``group`` with: its patterns,
        its own options, the global ones."""
        patterns = [f"  poppoarc [options] {' '.join(p.split())}" for c in group
                    for p in c.patterns]
        named = {name for c in group for f in c.forms for name in f.options}
        lines = [line for c in group for spec in c.options if spec.long in named
                 for line in spec.lines]
        lines += [line for spec in self.global_options for line in spec.lines]
        return "Usage:\n" + "\n".join(patterns) + "\n\nOptions:\n" + "\n".join(
            dict.fromkeys(lines)) + "\n"

    def parse(self, argv: list[str]) -> Parsed:
        """``argv`` read against the grammar, or UsageProblem."""
        from docopt import DocoptExit, docopt

        given = read(argv, self.known(), lenient=True)
        if given.version and not given.help:
            return Parsed(given.word, (), {}, version=True)
        if given.word is None:
            if given.help:
                return Parsed(None, (), {}, help=True)
            raise UsageProblem("no-command")
        group = self.group(given.word)
        if not group:
            raise UsageProblem("unknown-command", command=given.word,
                               nearest=nearest(given.word, self.words()))
        try:
            given = read(argv, self.known(group))
        except UsageProblem as problem:
            if problem.kind == "unknown-option":
                option = problem.fields["option"]
                close = nearest(option, self.known(group))
                if not close:       # another command's option, maybe mistyped
                    close = [o for o in nearest(option, self.known()) if o == option] or \
                        nearest(option, self.known(), limit=1)
                    problem.fields["elsewhere"] = [
                        c.words[0] for c in self.commands
                        if c not in group and any(s.long in close for s in c.options)]
                    problem.fields["exact"] = close == [option]
                problem.fields.update(word=given.word, nearest=close)
            raise
        if given.help:
            return Parsed(given.word, group, {}, help=True)
        try:
            args = docopt(self.docopt_text(group), argv=argv, default_help=False)
        except DocoptExit:
            raise diagnose(given, [f for c in group for f in c.forms],
                           {spec.long for spec in self.global_options}) from None
        return Parsed(given.word, group, dict(args))
