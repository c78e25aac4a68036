"""The helper half of a pack (``PackJob`` inherits it): part of one target handed to a
second process when that shortens the pack, and that process's frames spliced in.

The share goes to the helper that walked one target's directories (``pack_subtree``),
if there is one, else to a new one (``pack_helper``).  Either way the helper packs its
share into frames and index records of its own; ``_splice`` copies them in after this
process's first records of the target, or writes the share here when the helper failed.
"""

from __future__ import annotations

from itertools import islice

from .format.writer import BodyWriter
from .pack_helper import NOT_HELPED, TargetHelper, choose_share
from .pack_subtree import helper_plan
from .snapshot.catalogue import TARGETS


class HelperSteps:
    """Methods of ``PackJob`` for a helper's share; the state they use is ``PackJob``'s."""

    def _start_helper(self, groups) -> TargetHelper | None:
        """Hand part of a target to a helper process when that shortens the pack: the
        one that walked the target's directory, if any (told its share now), else a new one."""
        subtree, self.subtree = self.subtree, None
        if self.helper_level is None:
            if subtree is not None:
                subtree.close()
            return None
        work = [(t, groups.count(t), self.target_bytes.get(t, 0), t not in NOT_HELPED)
                for t in TARGETS if t in self.selected]
        chosen = choose_share(work) if subtree is None else \
            helper_plan(work, subtree.target if subtree.aligned else None, subtree.linked)
        if chosen is None:
            if subtree is not None:
                subtree.close()
            return None
        target, first = chosen
        sealing = None
        if self.seal_all:
            # Where the helper's records will start if every record before them is written
            # (one per walk record, and the generated environment member); _splice checks.
            before = TARGETS[:TARGETS.index(target)]
            base = len(self.index) + first + sum(groups.count(t) + (t == "config")
                                                 for t in before if t in self.selected)
            sealing = {"key": self.sealer.data_key.hex(), "archive_id": self.sealer.archive_id,
                       "mtime_ns": self.archive_mtime_ns, "index_base": base}
        if subtree is not None:
            return subtree.share(target, first, self.helper_level, sealing,
                                 islice(groups.group(target), first, None))
        return TargetHelper.start(self._root_text, target, first,
                                  islice(groups.group(target), first, None),
                                  self.helper_level, self.scratch_dir, sealing)

    def _splice(self, writer: BodyWriter, helper: TargetHelper,
                plain_path: bool) -> tuple[int, tuple[int, int]]:
        """The helper's share, after this process's first records of the target: its
        frames and index records copied in, or, if the helper failed, written here
        from the records it was given.  Returns its content bytes and the range of
        the target's whole frame group."""
        start, _ = writer.end_frame()
        part = helper.result()
        if part is not None and helper.index_base not in (None, len(self.index)):
            part = None     # a record before it is missing: its sealed positions are off
        if part is None:
            size = self.write_records(writer, helper.target, helper.records(), plain_path)
            end = writer.end_frame()
        else:
            end = writer.add_frames(part.data, part.data_length)
            self.index.extend_encoded(part.index, part.entries)
            for message in part.warnings:
                self.warnings.add(message)
            self.warnings.skipped.extend(part.skipped)
            self.files += part.files
            self.bytes_done += part.size
            size = part.size
            if self.progress:
                self.progress(self.bytes_done, self.bytes_total, None)
        return size, (start, end[0] + end[1] - start)
