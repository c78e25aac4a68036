"""The masked environment recorded by the config target.

Only variables with the configured prefixes are kept, and the value of any
name containing a mask pattern (TOKEN, KEY, SECRET, PASSWORD by default) is
replaced by ``MASK``: the raw value never reaches the archive.  For ``.env``
files only the variable names are recorded, since any value there may be a
secret (webhook URLs, connection strings with passwords).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASK = "********"
_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def masked_environment(environ: Mapping[str, str], prefixes: tuple[str, ...],
                       mask_patterns: tuple[str, ...]) -> dict[str, str]:
    kept = {}
    for name in sorted(environ):
        if not name.startswith(prefixes):
            continue
        secret = any(pattern in name.upper() for pattern in mask_patterns)
        kept[name] = MASK if secret else environ[name]
    return kept


def dotenv_names(text: str) -> list[str]:
    """Variable names assigned in a .env file, in order, without values."""
    names = []
    for line in text.splitlines():
        match = _DOTENV_LINE.match(line)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def environment_document(environ: Mapping[str, str], prefixes: tuple[str, ...],
                         mask_patterns: tuple[str, ...],
                         dotenv: dict[str, list[str]]) -> dict:
    """The content of ``.poppoarc/environment.json``."""
    return {
        "process": masked_environment(environ, prefixes, mask_patterns),
        "prefixes": list(prefixes),
        "mask_patterns": list(mask_patterns),
        "dotenv_names": dotenv,
    }
