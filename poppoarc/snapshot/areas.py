"""Custom targets' areas: what ``backup.targets.NAME`` (a name beyond the six built-in
targets, with ``include`` globs) may claim, what an archive records of them (its manifest's
``areas``, spec/FORMAT.md §5.2) and how a restore sees an archive's custom targets.

One rule, ``area_problem``, judges an area wherever it comes from: the configuration a
pack reads (``ConfigError``) and the area an archive records (restore/safety.py:
``UnsafeArchiveEntry`` for verify, inspect and unpack alike).  Pure: the places of the
store and the key directory inside the root are given (restore.safety.Places).
"""

from __future__ import annotations

from ..format.order import TARGETS
from .globs import could_match_below, glob_match

MAX_CUSTOM_TARGETS = 32
MAX_AREA_GLOBS = 64
MAX_AREA_BYTES = 4096
# a name the store's archives have, for judging an area when the store is the root
STORE_SAMPLE = "backup-2000-01-01T00-00-00-000Z-aaaaaa.poppo.tar.zst"


def custom_areas(config_targets: dict) -> dict[str, tuple[str, ...]]:
    """The custom targets ``backup.targets`` defines: name -> its ``include`` globs."""
    return {name: tuple(setting["include"]) for name, setting in config_targets.items()
            if name not in TARGETS and isinstance(setting, dict) and "include" in setting}


def area_problem(glob: object, places=None) -> str | None:
    """Why a custom target's ``include`` glob is not an area a target may have, or None:
    it must be a plain relative pattern (no ``..``, ``.`` or empty name, not absolute) and
    must not reach poppoarc's own places: ``.poppoarc`` at the root (the journal, staging,
    the lock), the store and the key directory when they lie inside the installation
    (``places``: restore.safety.Places, relative paths).  The rule of a configuration
    (pack) and of an archive's recorded areas (verify, unpack) alike: spec §13 rule 2."""
    if not isinstance(glob, str) or not glob:
        return "an area must be a non-empty pattern"
    if len(glob.encode("utf-8", "surrogatepass")) > MAX_AREA_BYTES or "\0" in glob:
        return f"area {glob[:80]!r} is too long or holds a NUL"
    if glob.startswith("/"):
        return f"area {glob!r} is absolute: it would reach outside the installation"
    parts = glob.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"area {glob!r} has an empty, '.' or '..' name: it must name paths plainly"
    reserved = [(".poppoarc", "poppoarc's own directory .poppoarc")]
    if places is not None:
        reserved += [(place, f"the store ({place})") for place in places.store if place]
        reserved += [(place, f"the key directory ({place})") for place in places.keys if place]
        if "" in places.store:      # the store is the root: its archives are top-level names
            reserved.append((STORE_SAMPLE, "the store's archives (the store is the root)"))
    for place, what in reserved:
        if glob_match(glob, place) or could_match_below(glob, place):
            return f"area {glob!r} reaches {what}"
    return None


def recorded_areas(catalogue) -> dict[str, list[str]]:
    """What an archive records of its custom targets (the manifest's ``areas``): each
    selected one's ``include`` globs."""
    return {rule.target: list(rule.include) for rule in catalogue.rules
            if rule.target not in TARGETS and rule.target in catalogue.selected}


def with_recorded(config_targets: dict, manifest: dict) -> dict:
    """``backup.targets`` as a restore of this archive sees it: a custom target the archive
    records (its manifest's ``areas``, spec §5.2) and this installation does not define
    takes the recorded area; one it defines keeps this installation's area, as a built-in
    target does (an archive made with other settings needs the same settings here)."""
    recorded = manifest.get("areas") or {}
    if not recorded:
        return config_targets
    merged = dict(config_targets)
    for name, include in recorded.items():
        if name not in custom_areas(config_targets):
            merged[name] = {"include": list(include)}
    return merged
