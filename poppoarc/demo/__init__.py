"""Deterministic demo installations and a concurrent SQLite writer for tests and benchmarks."""

from __future__ import annotations

import sys

from docopt import DocoptExit, docopt


def parse_args(usage: str, argv, convert, problem: str):
    """docopt, then ``convert(args)``; a usage error or a bad value prints one line and
    gives exit code 2 (returned instead of the converted value)."""
    try:
        args = docopt(usage, argv=argv)
        return args, convert(args)
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
    except ValueError:
        print(f"error: {problem}", file=sys.stderr)
    return None, 2
