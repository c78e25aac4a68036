"""The building blocks of a demo installation: its scales and clock, sentence pools,
and ``Tree``, which writes files with explicit modes and mtimes.

Every timestamp derives from ``BASE_TIME`` and every random choice from a stream
seeded per part (``installation`` says why), so a tree is identical for a scale
and seed.
"""

from __future__ import annotations

import json
import os
import random
import time
from functools import lru_cache
from pathlib import Path

SCALES = ("tiny", "small", "medium", "manyfiles")
# Approximate total bytes; manyfiles is a tiny base plus MANY_FILES small JSON files.
SCALE_BYTES = {"tiny": 1 << 20, "small": 20 << 20, "medium": 500 << 20, "manyfiles": 1 << 20}
MANY_FILES = 100_000
MANY_PER_DIR = 2_000
BASE_TIME = 1_750_334_400            # 2025-06-19 12:00:00 UTC, the "now" of every tree
DAY = 86_400

# Share of the scale's bytes per part.  About 10 % is incompressible (PNG-ish
# assets, tar.gz archives, rotated .gz logs); the history database dominates,
# as it does in real installations.
SHARES = {"history_db": 0.47, "poppo_db": 0.04, "ccla_db": 0.03, "security_db": 0.03,
          "cache_db": 0.01, "logs": 0.09, "rotated": 0.02, "access": 0.05, "assets": 0.05,
          "archives": 0.04, "ccla": 0.05, "ccag": 0.04, "ccpm": 0.03, "state": 0.02}
ROTATED_DAYS = {"tiny": 3, "small": 7, "medium": 14, "manyfiles": 3}

EN_WORDS = ("issue label comment agent queue task retry backup restore config token rate limit "
            "github claude process worker session timeout memory dashboard health check schedule "
            "snapshot archive error warning repair pattern analysis document template priority "
            "pending running completed failed request response webhook branch commit review merge "
            "cache index metric alert notify cleanup rotate compress verify signature manifest "
            "target database state the a to of for with after before while because when was is "
            "will has been could not successfully again").split()
JA_WORDS = ("処理 完了 エラー 再試行 タスク イシュー ラベル バックアップ 復元 設定 エージェント ログ 分析 "
            "文書 生成 監視 通知 状態 確認 実行 失敗 成功 開始 終了 待機 接続 応答 要求 更新 削除 保存 "
            "検証 署名 暗号化 圧縮 展開 定期実行 優先度 キュー 制限 時間 メモリ 使用量 コメント 学習 修復 "
            "パターン 品質").split()
JA_PARTICLES = ("を", "が", "の", "に", "は", "で", "と", "から")
JA_ENDINGS = ("しました。", "します。", "できます。", "されています。", "が必要です。", "を確認してください。")
TASK_TYPES = ("claude-cli", "issue-process", "comment-process", "pr-review", "ccla-analysis",
              "ccag-docs", "ccpm-review", "cleanup")
# Sixteen slots so that four random bits pick a status with realistic weights.
STATUSES = ("success",) * 12 + ("failed", "failed", "timeout", "cancelled")
LEVELS = ("info",) * 10 + ("debug",) * 3 + ("warn", "warn", "error")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=None)
def date_text(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY))


@lru_cache(maxsize=1)
def _clock_times() -> list[str]:
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY)]


def iso(t: float) -> str:
    """ISO-8601 UTC with milliseconds; table lookups, as strftime per log line is slow."""
    s = int(t)
    day, rest = divmod(s, DAY)
    return f"{date_text(day)}T{_clock_times()[rest]}.{int((t - s) * 1000):03d}Z"


def clf(t: float) -> str:
    """Common Log Format time; month names from a table, not the locale."""
    year, month, day = date_text(int(t) // DAY).split("-")
    return f"{day}/{MONTHS[int(month) - 1]}/{year}:{iso(t)[11:19]} +0000"


class Pools:
    """Sentence pools built once per tree; records pick whole sentences."""

    def __init__(self, rng: random.Random):
        self.en = [" ".join(rng.choices(EN_WORDS, k=rng.randint(5, 14))).capitalize() + "."
                   for _ in range(4096)]
        self.ja = ["".join(w + rng.choice(JA_PARTICLES) for w in rng.choices(JA_WORDS, k=rng.randint(2, 5)))
                   + rng.choice(JA_WORDS) + rng.choice(JA_ENDINGS) for _ in range(2048)]
        # ASCII without quotes or backslashes, so slices can go straight into JSON strings.
        self.filler = " ".join(rng.choices(self.en, k=8192))
        self.stacks = [self.stack(rng) for _ in range(256)]

    def text(self, rng: random.Random, nbytes: int, ja: bool = False) -> str:
        """About ``nbytes`` of prose (a Japanese character is 3 bytes)."""
        if ja:
            return "".join(rng.choices(self.ja, k=max(1, nbytes // 75)))
        return " ".join(rng.choices(self.en, k=max(1, nbytes // 60)))

    def stack(self, rng: random.Random) -> str:
        frames = "".join(f"\n    at {rng.choice(EN_WORDS)}{rng.choice(EN_WORDS).title()} "
                         f"(/opt/poppo/src/{rng.choice(EN_WORDS)}.js:{rng.randint(1, 900)}:"
                         f"{rng.randint(1, 80)})" for _ in range(rng.randint(4, 12)))
        return f"Error: {rng.choice(self.en)}{frames}"


class Tree:
    """Writes files under ``root`` with explicit modes and mtimes, and counts them."""

    def __init__(self, root: Path, seed: int):
        self.root = str(root)
        self.clock = random.Random(f"{seed}:mtime")
        self.dirs: dict[str, int] = {}
        self.files = 0
        self.bytes = 0

    def abs(self, rel: str) -> str:
        parent = rel.rpartition("/")[0]
        if parent and parent not in self.dirs:
            self.mkdir(parent)
        return os.path.join(self.root, rel)

    def mkdir(self, rel: str, mode: int = 0o755) -> None:
        if rel not in self.dirs:
            os.mkdir(self.abs(rel))
            self.dirs[rel] = mode

    def mtime(self, t: float | None = None) -> int:
        """Nanoseconds; by default some time in the two weeks before BASE_TIME."""
        if t is None:
            return (BASE_TIME - 14 * DAY) * 10**9 + self.clock.randrange(14 * DAY * 10**9)
        return int(t * 1000) * 10**6

    def write(self, rel: str, data: bytes | str, mode: int = 0o644, t: float | None = None) -> None:
        if isinstance(data, str):
            data = data.encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.abs(rel), flags, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)          # the umask must not change the result
            ns = self.mtime(t)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        self.files += 1
        self.bytes += len(data)

    def json(self, rel: str, doc, compact: bool = False, **kwargs) -> None:
        # Bulk data files are written compact: the indenting encoder is pure
        # Python and ~10x slower than the C one.
        layout = {"separators": (",", ":")} if compact else {"indent": 2}
        text = json.dumps(doc, ensure_ascii=False, **layout)
        self.write(rel, text + "\n", **kwargs)

    def adopt(self, rel: str, mode: int = 0o644) -> None:
        """Fix the mode and mtime of a file someone else (SQLite) wrote."""
        path = os.path.join(self.root, rel)
        os.chmod(path, mode)
        ns = self.mtime()
        os.utime(path, ns=(ns, ns))
        self.files += 1
        self.bytes += os.path.getsize(path)

    def symlink(self, rel: str, target: str) -> None:
        path = self.abs(rel)
        os.symlink(target, path)
        ns = self.mtime()
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
        self.files += 1

    def finish(self) -> None:
        """Directory mtimes last, deepest first: creating children changes them."""
        for rel in sorted(self.dirs, key=lambda r: r.count("/"), reverse=True):
            path = os.path.join(self.root, rel)
            os.chmod(path, self.dirs[rel])
            ns = self.mtime()
            os.utime(path, ns=(ns, ns))
        os.utime(self.root, ns=(BASE_TIME * 10**9,) * 2)
