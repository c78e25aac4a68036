"""Where the command line's output goes, and the one place JSON is written.

Every ``--json`` document starts with ``"schema_version"`` (spec/json/): the
CLI adds it here, so no command can forget it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextlib import contextmanager

from ..streamed import StreamedArray
from ..i18n import _, translate_text
from ..text import printable
from .progress import Progress, make_progress

SCHEMA_VERSION = 1


def _shown(message: str) -> str:
    """A message in the operator's language: by the template it carries (errors.Message),
    else by the one it was made from (``i18n.translate_text``)."""
    translated = getattr(message, "translated", None)
    return translated(_) if translated is not None else translate_text(message)


class Output:
    def __init__(self, as_json: bool, quiet: bool, verbose: bool = False):
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose

    def text(self, line: str = "") -> None:
        """A line of the text report (stdout); silent with --json or -q."""
        if not self.quiet and not self.as_json:
            print(printable(line))

    def json(self, document: dict, kind: str | None = None) -> None:
        """The one JSON document of a command (stdout), with its schema version."""
        write_json({"schema_version": SCHEMA_VERSION, **document}, sys.stdout.write)
        sys.stdout.write("\n")

    def warn(self, message: str) -> None:
        """A warning (stderr); with --json, warnings are part of the document."""
        if not self.quiet and not self.as_json:
            print(printable(_("warning: {message}").format(message=_shown(message))),
                  file=sys.stderr)

    def note(self, message: str) -> None:
        """Something the operator must hear about even with --json (stderr)."""
        if not self.quiet:
            print(printable(f"poppoarc: {_shown(message)}"), file=sys.stderr)

    def fail(self, kind: str, message: str, exit_code: int, details=(),
             shown: str | None = None) -> int:
        """A command's failure: with --json its document on stdout
        (``{"error": {type, message, details, exit_code}}``, the same one line, in English:
        a document is for programs), and the line on stderr (``shown``: in the operator's
        language); returns the exit code."""
        if self.as_json:
            first, *rest = one_line(message)
            try:
                self.json({"error": {"type": kind, "message": first,
                                     "details": [*rest, *details], "exit_code": exit_code}})
            except Exception:       # stdout itself may be what failed
                pass
        self.error(message if shown is None else shown, details)
        return exit_code

    def error(self, message: str, details=()) -> None:
        """The one line of an error (stderr), also with -q and --json; its details (and
        any line but the first of ``message``) follow only with -v."""
        first, *rest = one_line(message)
        details = [*rest, *details]
        if details and not self.verbose:
            first = _("{message} (-v shows the details)").format(message=first)
        print(printable(_("poppoarc: error: {message}").format(message=first)),
              file=sys.stderr)
        if self.verbose:
            for line in details:
                print(printable("  " + line), file=sys.stderr)

    def progress(self, label: str) -> Progress:
        """A progress reporter for long work; use it as a context manager."""
        return make_progress(label, quiet=self.quiet, as_json=self.as_json)


def one_line(message: str) -> list[str]:
    """``message`` as its first line, then the other non-empty ones: an error is one line,
    whatever a library put into its text."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines or [""]


_ENCODER = json.JSONEncoder(ensure_ascii=False, indent=2)   # what json.dumps(...) would build


def write_json(document, write) -> None:
    """``write(json.dumps(document, ensure_ascii=False, indent=2))``, in pieces: each
    ``StreamedArray`` in ``document`` is written one item at a time, so a document
    with 100,000 entries never exists whole in memory.

    Everything else goes through ``json.dumps`` itself, with a placeholder where each
    streamed array goes; the array is then written in the layout ``json.dumps`` gives
    a list at that depth (tests/test_streamed_json.py checks the bytes are the same).
    """
    _write(document, 0, write)


def _write(value, indent: int, write) -> None:
    """``value`` as ``json.dumps`` lays it out ``indent`` columns in, the first line's
    indentation already written."""
    arrays: dict[str, StreamedArray] = {}

    def placeholders(value):
        if isinstance(value, StreamedArray):
            token = f"streamed-{uuid.uuid4().hex}"
            arrays[token] = value
            return token
        if isinstance(value, dict):
            return {key: placeholders(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [placeholders(item) for item in value]
        return value

    text = _ENCODER.encode(placeholders(value))
    if indent:
        text = text.replace("\n", "\n" + " " * indent)
    if not arrays:
        write(text)
        return
    pattern = re.compile('"(' + "|".join(map(re.escape, arrays)) + ')"')
    position = 0
    for match in pattern.finditer(text):
        write(text[position:match.start()])
        line_start = text.rfind("\n", 0, match.start()) + 1
        line = text[line_start:match.start()]
        column = len(line) - len(line.lstrip(" ")) + (indent if line_start == 0 else 0)
        _write_array(arrays[match.group(1)], column, write)
        position = match.end()
    write(text[position:])


def _write_array(items, indent: int, write) -> None:
    separator = "["
    for item in items:
        write(separator + "\n" + " " * (indent + 2))
        _write(item, indent + 2, write)
        separator = ","
    write("[]" if separator == "[" else "\n" + " " * indent + "]")


@contextmanager
def service_log(quiet: bool):
    """The scheduled-backup service reports through ``logging``: to stderr meanwhile,
    with times (only errors with -q, which prints nothing but errors)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%dT%H:%M:%S%z"))
    logger = logging.getLogger("poppoarc")
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
