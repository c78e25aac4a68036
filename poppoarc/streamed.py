"""A JSON array made item by item while it is written.

``inspect --entries --json`` of 100,000 entries built the whole document first: 100,000
dicts and one 30 MB string, 360 MB of memory.  A result's ``to_json`` puts a
``StreamedArray`` where such a list goes, and ``ui.output.write_json`` writes its items
as they are made, in exactly the bytes ``json.dumps(..., indent=2)`` gives the list.
"""

from __future__ import annotations

from typing import Callable, Iterable


class StreamedArray:
    """The items of a JSON array, made on demand; each iteration makes them again."""

    def __init__(self, make_items: Callable[[], Iterable]):
        self._make_items = make_items

    def __iter__(self):
        return iter(self._make_items())
