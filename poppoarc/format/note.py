"""The note an incremental archive opens its body with (spec/FORMAT.md §12.8).

Plain ``tar`` lists and extracts an incremental archive without an error, but
what it extracts is not the installation: unchanged files live in ancestors and
changed databases are page deltas.  So the first body member of an incremental
is ``.poppoarc/README``, a text that says so, listed right after the manifest
by ``tar -tvf``.  It belongs to no index record; its bytes are a pure function
of the manifest (id, parent, time), so a reader re-encodes and compares them
like every header (§4.2): it carries nothing a writer could choose.
"""

from __future__ import annotations

from . import tarheader

NOTE_NAME = ".poppoarc/README"
NOTE_MODE = 0o644

_TEXT = """\
THIS IS AN INCREMENTAL POPPOARC ARCHIVE: {id}

It stores only what changed since its parent archive, {parent}
(incremental {depth} after a full archive). Files that did not change are not
in this tar at all, and databases that changed hold only their changed pages,
under .poppoarc/delta/. Extracting it with tar gives an incomplete
installation, without any error saying so.

Restore it with poppoarc, with every archive of its chain in the same store:

    poppoarc unpack {id}

これは poppoarc の増分アーカイブです。親アーカイブ {parent}
以降に変わった分だけを含むため、tar で展開してもインストールは元に戻りません
(変わっていないファイルは含まれず、データベースは変わったページだけです)。
チェーンのすべてのアーカイブを同じ保存先に置き、poppoarc unpack {id}
で復元してください。
"""


def note_text(archive_id: str, parent: dict) -> bytes:
    """The note's content for an archive and its manifest ``parent`` reference."""
    return _TEXT.format(id=archive_id, parent=parent["id"], depth=parent["depth"]).encode("utf-8")


def note_member(archive_id: str, parent: dict, seconds: int) -> bytes:
    """Header, content and padding of the note: what the body of an incremental begins with.
    ``seconds``: the manifest ``timestamp`` in whole seconds."""
    text = note_text(archive_id, parent)
    return (tarheader.member_header(NOTE_NAME, tarheader.REGULAR, mode=NOTE_MODE,
                                    size=len(text), mtime=seconds)
            + text + bytes(tarheader.padding(len(text))))
