"""Where the command line's output goes, and the one place JSON is written.

Every ``--json`` document starts with ``"schema_version"`` (spec/json/): the
CLI adds it here, so no command can forget it.
"""

from __future__ import annotations

import json
import sys

from .i18n import _
from .progress import Progress, make_progress

SCHEMA_VERSION = 1


class Output:
    def __init__(self, as_json: bool, quiet: bool):
        self.as_json, self.quiet = as_json, quiet

    def text(self, line: str = "") -> None:
        """A line of the text report (stdout); silent with --json or -q."""
        if not self.quiet and not self.as_json:
            print(line)

    def json(self, document: dict, kind: str | None = None) -> None:
        """The one JSON document of a command (stdout), with its schema version."""
        print(json.dumps({"schema_version": SCHEMA_VERSION, **document},
                         ensure_ascii=False, indent=2))

    def warn(self, message: str) -> None:
        """A warning (stderr); with --json, warnings are part of the document."""
        if not self.quiet and not self.as_json:
            print(_("warning: {message}").format(message=message), file=sys.stderr)

    def note(self, message: str) -> None:
        """Something the operator must hear about even with --json (stderr)."""
        if not self.quiet:
            print(f"poppoarc: {message}", file=sys.stderr)

    def error(self, message: str) -> None:
        print(_("poppoarc: error: {message}").format(message=message), file=sys.stderr)

    def progress(self, label: str) -> Progress:
        """A progress reporter for long work; use it as a context manager."""
        return make_progress(label, quiet=self.quiet, as_json=self.as_json)
