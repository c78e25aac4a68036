"""Packing an installation into one archive.

``steps.py`` is the pack as a list of steps (``pack_locked``); ``plan.py`` decides what
the pack does before its body; ``walk.py`` is the walk; ``body.py`` writes the body,
with ``databases.py`` for the databases and ``share.py`` for a target's share written by
a helper (``subtree.py``: a helper that walks one target's directories first).  Where
the helpers run is the parallelism's choice (``poppoarc.parallel``), never what is
written.

``pack``, ``pack_locked`` and ``PackResult`` are ``steps``'s, imported when first used:
a helper process imports ``pack.share`` and ``pack.body`` without the rest (and without
cryptography, for its memory).
"""

__all__ = ["PackResult", "pack", "pack_locked"]


def __getattr__(name: str):
    if name in __all__:
        from . import steps
        return getattr(steps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
