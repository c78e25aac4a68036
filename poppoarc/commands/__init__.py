"""The commands: one module each, over the noun packages, never printing.

Every command module has

* ``SUMMARY``: what it does, one sentence (``N_(...)``: ``poppoarc --help`` lists it);
* ``USAGE``: its usage patterns (docopt), below ``poppoarc [options]``;
* ``OPTIONS``: the option lines it owns (an option two commands share is described
  with the same line in both, and appears once in the whole usage text); optional
  ``ARGUMENTS``: lines describing its own arguments (``ARCHIVE`` is described here);
  these are the grammar, declared once: each command is parsed with its own part,
  its help (``poppoarc COMMAND --help``) and the one-line usage errors come from it;
* ``options(args) -> <Name>Options``: the parsed command line as a frozen options
  object (``poppoarc.options``), raising ``UsageError`` for values docopt cannot judge;
* ``run(settings, options, progress=None) -> result``: the work; the result has
  ``to_json()`` and ``exit_code``, and ``poppoarc.ui.render`` shows its text form;
* ``STRICT_CONFIG``: a broken configuration file stops it (commands that write), where
  the others go on with defaults (a broken config is one of the reasons to restore);
* ``PROGRESS``: whether it shows a progress bar (long work);
* optional flags: ``ONLY_LOOKS`` (doctor: no recovery first, no config warnings: it
  reports them), ``RECOVERS_FIRST = False`` (``unpack --recover``: recovering is its
  work), ``LOGS`` (schedule: the service's log goes to stderr), ``CONFIG_NOTICES = False``
  (config: it reports what the notices about the configuration file say), ``NEW_ROOT``
  (unpack, doctor: a root that does not exist is theirs to judge, not exit 20 at once).

``cli.py`` assembles the usage text from these, picks the command docopt matched and
maps its errors to exit codes; nothing else imports this package.
"""

from __future__ import annotations

import importlib

from ..restore.recovery import recover_if_needed

# the order of the usage text; a module's name is its command's (``list`` is a builtin's
# name too, hence the import by name)
NAMES = ("pack", "list", "ls", "find", "inspect", "diff", "dump", "verify", "copy", "unpack",
         "recover", "consolidate", "keygen", "doctor", "prune", "protect", "unprotect", "drill",
         "metrics",
         "schedule", "config")
COMMANDS = {name: importlib.import_module(f"{__name__}.{name}") for name in NAMES}

# Options every command takes, and arguments several share (their descriptions are
# messages: the catalog's extractor reads these tables, ui/msgfmt.py)
GLOBAL_OPTIONS = """\
  --root=DIR       Installation root (else $POPPO_ROOT, else the current directory).
  --config=FILE    Configuration file (else ROOT/config/config.json).
  --store=STORE    Where archives are kept: a directory or s3://bucket/prefix
                   (else backup.storage, else ROOT/backups).
  --parallel=MODE  Where speed-ups run: two-process, serial or auto (else
                   $POPPOARC_PARALLEL, else backup.parallel, else auto).
  --json           Print one JSON document instead of text.
  -q --quiet       Print nothing but errors.
  -v --verbose     Also print the details of an error.
  -h --help        Show this help (with a command: that command's).
  --version        Show the version.
"""
ARGUMENTS = """\
  ARCHIVE          An archive id, a unique id prefix, the name pack --name gave it, a
                   path to a .poppo.tar.zst file, or an s3://bucket/key URL of one.
"""

PROGRAM = """poppoarc - backup and transactional restore for PoppoBuilder Suite.

Usage:
{usage}
  poppoarc (-h | --help)
  poppoarc COMMAND (-h | --help)
  poppoarc --version

Arguments:
{arguments}
Options:
{options}
Exit codes: 0 success, 1 success with warnings, 2 usage error, 3-49 errors
(see docs/exit-codes.md), 7 doctor found a problem, 70 internal error (a bug:
the traceback is in the log file named on stderr), 130 interrupted.
"""


def usage() -> str:
    """The whole grammar in one text (docs/commands.md shows it; each command is parsed
    with its own part, ``ui/usage.py``)."""
    patterns, options = [], GLOBAL_OPTIONS.strip("\n").splitlines()
    for module in COMMANDS.values():
        for pattern in module.USAGE:
            lines = pattern.strip("\n").splitlines()
            patterns.append("  poppoarc [options] " + lines[0])
            patterns.extend(" " * 21 + line.strip() for line in lines[1:])
        for line in module.OPTIONS.strip("\n").splitlines():
            if line not in options:
                options.append(line)
    return PROGRAM.format(usage="\n".join(patterns), arguments=ARGUMENTS,
                          options="\n".join(options) + "\n")


def recover_first(settings):
    """Before a command touches the installation: finish or undo an interrupted restore
    (``restore.recovery``); the recovery, or None."""
    return recover_if_needed(settings)


def chosen(args: dict, names=NAMES):
    """The module of the command docopt matched (among ``names``)."""
    for module in (COMMANDS[name] for name in names):
        if module.matches(args):
            return module
    raise AssertionError("docopt accepted a command no module claims")
