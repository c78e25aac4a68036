"""The compared tools: each knows how to prepare, pack, verify and restore.

Every tool works inside its own fresh directory per round (``Context.work``),
so each ``pack`` is a full backup into an empty archive or repository.  Only
the three measured operations go through ``measure.run``; preparation
(``restic init``, ``borg init``) is untimed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .measure import CommandFailed, Measurement, quick, run, shell

OPERATIONS = ("pack", "verify", "restore", "restore-live")


@dataclass
class Context:
    source: Path      # the tree this tool backs up
    work: Path        # a fresh directory for this tool in this round
    env: dict         # the base environment for child processes
    timeout: float
    threads: int
    live: bool = False   # measure the restore over a live copy (run.py's --live)

    @property
    def logs(self) -> Path:
        return self.work / "logs"


def tree_bytes(path: Path) -> int:
    """Apparent size of a file, or of every regular file under a directory."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                total += os.stat(full).st_size
    return total


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


class Tool:
    key = ""          # command-line name
    label = ""        # table name
    reference = False  # the tar+zstd baseline the ratios divide by
    notes = ""        # how it is run, for README and results.md

    def missing(self) -> str | None:
        """None when the tool can run here, else why not."""
        for binary in self.binaries():
            if shutil.which(binary) is None:
                return f"`{binary}` not found on PATH"
        return None

    def binaries(self) -> tuple[str, ...]:
        return ()

    def version(self, env: dict) -> str:
        return ""

    def env(self, ctx: Context) -> dict:
        return dict(ctx.env)

    def source_for(self, installation: Path, same_files: Path) -> Path:
        return installation

    def prepare(self, ctx: Context) -> None:
        """Untimed set-up before pack (a fresh, empty repository)."""

    def pack(self, ctx: Context) -> tuple[Measurement, int]:
        raise NotImplementedError

    def verify(self, ctx: Context) -> Measurement:
        raise NotImplementedError

    def restore(self, ctx: Context, target: Path) -> Measurement:
        raise NotImplementedError

    restores_live = False       # whether restore_live is measured for this tool
    operations = OPERATIONS     # what is measured of this tool

    def restore_live(self, ctx: Context, live: Path) -> Measurement:
        """Restore the backup over ``live`` (a copy of the source with a day's changes)."""
        raise NotImplementedError

    def _run(self, ctx: Context, op: str, argv: list[str], *, cwd: Path | None = None,
             ok_codes: tuple[int, ...] = (0,)) -> Measurement:
        return run(argv, cwd=cwd or ctx.work, env=self.env(ctx), timeout=ctx.timeout,
                   log_dir=ctx.logs, label=f"{self.key}-{op}", ok_codes=ok_codes)


class Poppoarc(Tool):
    key, label = "poppoarc", "poppoarc"
    notes = ("`python -m poppoarc --root SRC --store STORE pack --json`; `verify ID -q`; "
             "`unpack ID --skip-backup -q` with a fresh empty `--root`. Archives only the "
             "installation's targets; fsyncs its archive and syncs the restored tree.")

    def __init__(self, python: str = sys.executable):
        self.python = python

    def command(self, root: Path, store: Path) -> list[str]:
        return [self.python, "-m", "poppoarc", "--root", str(root), "--store", str(store)]

    def version(self, env: dict) -> str:
        return quick([self.python, "-m", "poppoarc", "--version"], env=env,
                     cwd=env.get("TMPDIR")).strip()

    def env(self, ctx: Context) -> dict:
        env = dict(ctx.env)
        env["POPPOARC_THREADS"] = str(ctx.threads)
        return env

    pack_flags: tuple[str, ...] = ()

    def pack(self, ctx):
        store = ctx.work / "store"
        m = self._run(ctx, "pack", self.command(ctx.source, store)
                      + ["pack", *self.pack_flags, "--json"], ok_codes=(0, 1))
        try:
            doc = json.loads((ctx.logs / f"{self.key}-pack.out").read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or "path" not in doc:
                raise ValueError(f"no archive path in {doc!r:.200}")
        except ValueError as exc:  # exit 1 without JSON: a crash, not a warning
            err = (ctx.logs / f"{self.key}-pack.err").read_text(encoding="utf-8", errors="replace")
            raise CommandFailed(f"{self.key}-pack: exit code {m.exit_code} but no JSON result "
                                f"({exc}):\n{err[-1500:]}") from exc
        self.check(doc)
        self.archive = Path(doc["path"])
        m.extra.update(id=doc["id"], files=doc.get("files"), duration_ms=doc.get("duration_ms"),
                       warnings=len(doc.get("warnings", [])), reused=doc.get("reused"))
        return m, self.archive.stat().st_size

    def check(self, doc: dict) -> None:
        """A pack result this tool accepts (subclasses: that it is what was asked for)."""

    def verify(self, ctx):
        return self._run(ctx, "verify", self.command(ctx.source, ctx.work / "store")
                         + ["verify", str(self.archive), "-q"])

    def restore(self, ctx, target):
        # unpack stages next to ROOT, so ROOT gets a parent of its own.
        root = target / "root"
        root.mkdir(parents=True)
        m = self._run(ctx, "restore", self.command(root, ctx.work / "store")
                      + ["unpack", str(self.archive), "--skip-backup", "-q"], ok_codes=(0, 1))
        m.extra["restored_root"] = str(root)
        return m

    restores_live = True

    def restore_live(self, ctx, live):
        # --skip-backup: as the peers, no safety archive of the tree it replaces (that is a
        # pack of the live tree; the pack rows measure it)
        return self._run(ctx, "restore-live", self.command(live, ctx.work / "store")
                         + ["unpack", str(self.archive), "--skip-backup", "-q"],
                         ok_codes=(0, 1))


class PoppoarcEncrypted(Poppoarc):
    """The same commands with ``pack --encrypt`` and a passphrase (Argon2id, AES-256-GCM)."""

    key, label = "poppoarc-encrypted", "poppoarc --encrypt"
    restores_live = False
    pack_flags = ("--encrypt",)
    notes = ("As poppoarc, with `pack --encrypt` and `POPPO_BACKUP_KEY` set: every file sealed "
             "in AES-256-GCM segments, the index encrypted; verify and restore decrypt.")

    def env(self, ctx: Context) -> dict:
        env = super().env(ctx)
        env["POPPO_BACKUP_KEY"] = "bench passphrase"
        return env


class PoppoarcIncremental(Poppoarc):
    """An incremental pack of an unchanged tree on a full archive made untimed before it."""

    key, label = "poppoarc-incremental", "poppoarc --incremental (unchanged)"
    restores_live = False
    pack_flags = ("--incremental",)
    notes = ("An untimed full `pack` first, then the timed `pack --incremental --json` of the "
             "same, unchanged tree (every file referenced, every database a zero-block delta); "
             "verify and restore read the two-archive chain.")

    def prepare(self, ctx):
        store = ctx.work / "store"
        quick(self.command(ctx.source, store) + ["pack", "--full", "-q"], env=self.env(ctx),
              cwd=ctx.work, timeout=ctx.timeout, ok_codes=(0, 1))

    def check(self, doc):
        if not doc.get("incremental"):
            raise CommandFailed(f"{self.key}: the pack was not incremental: {doc.get('warnings')}")


class TarZstd(Tool):
    key, label, reference = "tar-zstd", "tar \\| zstd -3", True
    notes = ("`tar -cf - -C SRC . | zstd -3 -T2 -q > OUT`; verify = `zstd -dc OUT | tar -tf - "
             ">/dev/null` (frame checksums + tar structure); restore = `zstd -dc OUT | tar -xf - "
             "-C EMPTY`. Whole installation tree. No fsync.")

    def binaries(self):
        return ("tar", "zstd", "bash")

    def version(self, env):
        tar = quick(["tar", "--version"], env=env).splitlines()[0]
        zstd = quick(["zstd", "--version"], env=env).strip()
        found = re.search(r"v(\d+\.\d+\.\d+)", zstd)
        return f"{tar}; zstd {found.group(1) if found else zstd}"

    def pack(self, ctx):
        self.archive = ctx.work / "archive.tar.zst"
        m = self._run(ctx, "pack", shell(f"tar -cf - -C {_q(ctx.source)} . | "
                                         f"zstd -3 -T{ctx.threads} -q > {_q(self.archive)}"))
        return m, self.archive.stat().st_size

    def verify(self, ctx):
        return self._run(ctx, "verify",
                         shell(f"zstd -dc {_q(self.archive)} | tar -tf - >/dev/null"))

    def restore(self, ctx, target):
        target.mkdir(parents=True)
        return self._run(ctx, "restore", shell(f"zstd -dc {_q(self.archive)} | "
                                               f"tar -xf - -C {_q(target)}"))

    restores_live = True

    def restore_live(self, ctx, live):
        return self._run(ctx, "restore-live", shell(f"zstd -dc {_q(self.archive)} | "
                                                    f"tar -xf - -C {_q(live)}"))


class TarZstdSameFiles(TarZstd):
    key, label, reference = "tar-zstd-same", "tar \\| zstd -3 (poppoarc's files)", False
    restores_live = False
    notes = ("The same pipeline over exactly the files poppoarc archives: the tree "
             "`tar --zstd -xf` makes of a poppoarc archive, minus its `.poppoarc/` folder. "
             "The reference for the size target (poppoarc ≤ 1.02× this).")

    def source_for(self, installation, same_files):
        return same_files


class Restic(Tool):
    key, label = "restic", "restic"
    notes = ("Fresh local repository per round (`restic init`, untimed), so every backup is "
             "full. `restic backup . -q` from SRC; verify = `restic check --read-data`; "
             "restore = `restic restore latest --target EMPTY`. Defaults: repository v2, "
             "compression `auto` (zstd), content-defined chunking + dedup, always encrypted "
             "(AES-256-CTR + Poly1305), uses all cores. Cache in the round's directory.")

    def binaries(self):
        return ("restic",)

    def version(self, env):
        return quick(["restic", "version"], env=env).split(" compiled")[0].strip()

    def env(self, ctx):
        env = dict(ctx.env)
        env.update(RESTIC_PASSWORD="poppoarc-bench", RESTIC_REPOSITORY=str(ctx.work / "repo"),
                   RESTIC_CACHE_DIR=str(ctx.work / "restic-cache"))
        return env

    def prepare(self, ctx):
        quick(["restic", "init", "-q"], env=self.env(ctx), cwd=ctx.work, timeout=ctx.timeout)

    def pack(self, ctx):
        m = self._run(ctx, "pack", ["restic", "backup", ".", "-q"], cwd=ctx.source)
        return m, tree_bytes(ctx.work / "repo")

    def verify(self, ctx):
        return self._run(ctx, "verify", ["restic", "check", "--read-data", "-q"])

    def restore(self, ctx, target):
        target.mkdir(parents=True)
        return self._run(ctx, "restore", ["restic", "restore", "latest", "--target", str(target),
                                          "-q"])

    restores_live = True

    def restore_live(self, ctx, live):
        # restic 0.14 rewrites every file of the snapshot over what is there; it cannot
        # replace an existing symbolic link (certs/current.pem): exit 1 for that one error
        return self._run(ctx, "restore-live", ["restic", "restore", "latest", "--target",
                                               str(live), "-q"], ok_codes=(0, 1))


class ResticIncremental(Restic):
    """restic's second backup of an unchanged tree (its parent snapshot made untimed)."""

    key, label = "restic-incremental", "restic (unchanged 2nd backup)"
    operations = ("pack",)      # verify and restore: as the first backup's tool
    restores_live = False
    notes = ("As restic, with an untimed first `restic backup .` before the timed one: the "
             "second backup of the unchanged tree (parent snapshot found by path), as a "
             "nightly run; verify and restore as restic.")

    def prepare(self, ctx):
        super().prepare(ctx)
        quick(["restic", "backup", ".", "-q"], env=self.env(ctx), cwd=ctx.source,
              timeout=ctx.timeout)


class Borg(Tool):
    key, label = "borg", "borg"
    notes = ("Fresh repository per round, `borg init -e authenticated` (untimed): HMAC-SHA256 "
             "chunk ids and an authenticated manifest, no encryption — the closest to poppoarc's "
             "SHA-256 hashes + signed manifest without encryption. `borg create --compression "
             "zstd,3 REPO::bench .` from SRC; verify = `borg check --verify-data`; restore = "
             "`borg extract` in EMPTY. Buzhash chunking + dedup; single-threaded.")

    def binaries(self):
        return ("borg",)

    def version(self, env):
        return quick(["borg", "--version"], env=env).strip()

    def env(self, ctx):
        env = dict(ctx.env)
        env.update(BORG_PASSPHRASE="poppoarc-bench", BORG_BASE_DIR=str(ctx.work / "borg-base"),
                   BORG_REPO=str(ctx.work / "repo"), BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
                   BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_DISPLAY_PASSPHRASE="no")
        return env

    def prepare(self, ctx):
        quick(["borg", "init", "-e", "authenticated"], env=self.env(ctx), cwd=ctx.work,
              timeout=ctx.timeout)

    def pack(self, ctx):
        # exit 1 is borg's "completed with warnings"
        m = self._run(ctx, "pack", ["borg", "create", "--compression", "zstd,3", "::bench", "."],
                      cwd=ctx.source, ok_codes=(0, 1))
        return m, tree_bytes(ctx.work / "repo")

    def verify(self, ctx):
        return self._run(ctx, "verify", ["borg", "check", "--verify-data"])

    def restore(self, ctx, target):
        target.mkdir(parents=True)
        return self._run(ctx, "restore", ["borg", "extract", "::bench"], cwd=target,
                         ok_codes=(0, 1))


class BorgIncremental(Borg):
    """borg's second archive of an unchanged tree (files cache filled by an untimed first)."""

    key, label = "borg-incremental", "borg (unchanged 2nd create)"
    operations = ("pack",)      # verify and restore: as the first backup's tool
    notes = ("As borg, with an untimed first `borg create ::first .` before the timed "
             "`::bench`: the files cache makes it skip unchanged files; verify and restore as "
             "borg.")

    def prepare(self, ctx):
        super().prepare(ctx)
        quick(["borg", "create", "--compression", "zstd,3", "::first", "."], env=self.env(ctx),
              cwd=ctx.source, timeout=ctx.timeout, ok_codes=(0, 1))


def all_tools() -> list[Tool]:
    return [Poppoarc(), PoppoarcEncrypted(), PoppoarcIncremental(), TarZstd(), TarZstdSameFiles(),
            Restic(), ResticIncremental(), Borg(), BorgIncremental()]


__all__ = ["OPERATIONS", "Context", "Tool", "all_tools", "tree_bytes", "CommandFailed"]
