"""Which relative paths an archive may name (spec/FORMAT.md §1): the rules a reader
applies to every index record before anything is written."""

from __future__ import annotations

import posixpath

from ..i18n import N_

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_DEPTH = 256
MAX_LINK_BYTES = 4095       # PATH_MAX less its NUL: symlink(2) refuses a longer target


def path_problem(path: object) -> str | None:
    """Why ``path`` is not an acceptable relative archive path, or None."""
    if not isinstance(path, str) or not path:
        return N_("empty path")
    if "\0" in path:
        return N_("NUL in path")
    if path.startswith("/"):
        return N_("absolute path")
    parts = path.split("/")
    if "" in parts or "." in parts or ".." in parts:
        return N_("empty, '.' or '..' component")
    length = len(path.encode("utf-8", "surrogatepass"))
    if length > MAX_PATH_BYTES:
        return N_("path longer than 4096 bytes")
    # no name can be longer than a whole path that fits (the common case: not checked)
    if length > MAX_NAME_BYTES and any(len(part.encode("utf-8", "surrogatepass"))
                                       > MAX_NAME_BYTES for part in parts):
        return N_("name longer than 255 bytes")
    if len(parts) > MAX_DEPTH:
        return N_("path deeper than 256 levels")
    return None


def link_target_problem(path: str, target: str) -> str | None:
    """Why a symlink ``path -> target`` could point outside the root, or None.

    A restore refuses such a link (spec/FORMAT.md §4.3), so a pack does not archive
    one: it names it in a warning instead (pack never writes what a restore rejects).
    """
    if not target or "\0" in target:
        return N_("empty or NUL link target")
    if target.startswith("/"):
        return N_("absolute link target")
    if len(target.encode("utf-8", "surrogatepass")) > MAX_LINK_BYTES:
        return N_("link target longer than 4095 bytes (no system can create it)")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        return N_("link target leaves the installation")
    return None
