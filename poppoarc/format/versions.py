"""Format versions: what differs between the archives each version holds (spec/FORMAT.md §15).

An archive names its version in the manifest's ``format``, which a reader takes before
anything else (§5.3): a name not in ``VERSIONS`` is ``UnsupportedFormat`` (a newer poppoarc
wrote it), and every other byte is read by the rules of the version it names.  This table
is the one place those rules differ; code asks ``of(manifest)`` and reads a field, never
compares format names.  Everything not listed here is the same in every version, the
reader's confinement (restore/safety.py) and limits (§13, §14) included: an old archive
gets no rule a new one does not.

A writer writes ``CURRENT`` only.  Archives of an earlier version are read for as long as
they may be an operator's backups: removing a version from ``VERSIONS`` makes them
unrestorable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FormatVersion:
    name: str                   # the manifest's "format" (§5.2)
    index_format: str           # the index header line's "format" (§5.4)
    incremental_note: bool      # an incremental's body begins with .poppoarc/README (§12.8)
    index_warnings: bool        # a plain index header may list the run's warnings (§5.4)
    # a bundled file with ``bundle: 0`` and no ``sealed`` continues the bundle before it
    # (§11.4): poppoarc 0.1 wrote that after a bundle's leading empty files
    zero_offset_continues: bool
    # the manifest may record custom targets' areas (``areas``, §5.2): targets beyond the six
    custom_targets: bool


# Written by poppoarc 0.1 (the released version, commit 8dd70ef).
FORMAT_1 = FormatVersion("poppoarc/1", "poppoarc-index/1", incremental_note=False,
                         index_warnings=False, zero_offset_continues=True,
                         custom_targets=False)
# The incremental note, the run's warnings in the index header, bundle offsets never 0.
# (custom targets came later in version 2: an archive without ``areas`` has only the six)
FORMAT_2 = FormatVersion("poppoarc/2", "poppoarc-index/2", incremental_note=True,
                         index_warnings=True, zero_offset_continues=False,
                         custom_targets=True)

CURRENT = FORMAT_2
VERSIONS = {version.name: version for version in (FORMAT_1, FORMAT_2)}
READABLE = ", ".join(VERSIONS)          # for messages: "poppoarc/1, poppoarc/2"


def named(name: object) -> FormatVersion | None:
    """The version a manifest's ``format`` names, or None (not one this poppoarc reads)."""
    return VERSIONS.get(name) if isinstance(name, str) else None


def of(manifest: dict) -> FormatVersion:
    """The version of a manifest that passed ``validate_manifest`` (so it is known)."""
    return VERSIONS[manifest["format"]]
