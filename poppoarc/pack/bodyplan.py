"""How a pack's body is written, decided before it starts (``plan.py``, ``steps.py``) and
read by ``body.Body``; also what a share's helper gets (``share.pack_share``), so this
module imports nothing a helper should not carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..parallel import Parallelism


@dataclass(frozen=True)
class Sealing:
    """How an encrypted archive seals its files."""

    sealer: object                  # crypto.sealer.Sealer: the archive's data key
    everything: bool                # the whole archive (scope "archive"), else the secrets
    secrets: frozenset = frozenset()   # the secret files' paths (sealed in either scope)
    mtime_ns: int = 0               # the tar mtime of sealed objects: the archive's time
    index_base: int = 0             # a share's records start at this index position


@dataclass(frozen=True)
class BodyPlan:
    """How the body is written."""

    sealing: Sealing | None = None
    parent: object = None           # archives.parent.ParentBase of an incremental
    check_content: bool = False     # compare an unchanged file's content, not its stat
    # Page digests cost a hash pass over every database and ~0.5 % of the archive; only
    # an archive that may become an incremental's parent needs them (§12.4).
    block_digests: bool = True
    # A safety archive must save whatever is there, damaged databases included (they are
    # often why the restore happens); a normal backup refuses them.
    keep_damaged_databases: bool = False
    share_level: int | None = None  # a helper's compression level; None: no share
    scratch_dir: Path | None = None     # a helper's temporary files (beside the archive)
    parallel: Parallelism = field(default_factory=Parallelism)
