"""Measuring a fault case: what the server charged for, what the catalogue kept, where a key leaked."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

CRASH_MARKS = ("Traceback (most recent call last)", "RecursionError", "OverflowError",
               "UnicodeEncodeError", "Segmentation fault", "catalog: internal error")


def run_cli(*args, env: dict[str, str], timeout: float = 300, cwd=None, text: bool = True
            ) -> subprocess.CompletedProcess:
    """The real `catalog` command in a child process, as a user or cron would start it.

    `text=False` keeps stdout and stderr as the raw bytes a terminal would receive.
    """
    return subprocess.run([sys.executable, "-m", "catalog", *map(str, args)], capture_output=True,
                          text=text, env={**os.environ, **env}, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def crashes(result: subprocess.CompletedProcess) -> int:
    """1 when a command died of a signal or printed a traceback or an internal error."""
    out, err = result.stdout or "", result.stderr or ""
    text = (out if isinstance(out, str) else out.decode("utf-8", "replace")) + (
        err if isinstance(err, str) else err.decode("utf-8", "replace"))
    return int(result.returncode < 0 or any(mark in text for mark in CRASH_MARKS))


def charged(server) -> Counter:
    """How many times the server charged for each uploaded image (by its sha256)."""
    seen: Counter = Counter()
    for record in server.requests:
        if record.paid:
            image = record.fields.get("image") if record.fields else None
            seen[image["sha256"] if image else repr(record.json)] += 1
    return seen


def paid_twice(server) -> int:
    """Images charged for more than once (each extra charge counts)."""
    return sum(n - 1 for n in charged(server).values() if n > 1)


def stored_answers(db_path: os.PathLike, provider: str = "imgtags") -> int:
    """Photos whose answer from `provider` the catalogue kept: as an analysis, or as the raw
    answer of a failure (an answer that was paid for but could not be stored as fields)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM photos WHERE (analysis_status = 'done' AND provider = ?) "
                            "OR (analysis_status = 'failed' AND raw_response IS NOT NULL)",
                            [provider]).fetchone()[0]


def answers_lost(server, db_path: os.PathLike) -> int:
    """Distinct images the server charged for that the catalogue did not keep."""
    return max(0, len(charged(server)) - stored_answers(db_path))


def key_places(key: str, *, texts=(), files=()) -> int:
    """How many of these texts and files contain the key in any letter case (files: also their
    -wal/-journal)."""
    needle = key.lower().encode()  # in any letter case: an echo may change it
    found = sum(1 for text in texts if text and key.lower() in text.lower())
    for name in files:
        for path in (Path(name), Path(f"{name}-wal"), Path(f"{name}-journal")):
            try:
                found += needle in path.read_bytes().lower()
            except OSError:
                pass
    return found


def scanned_library(folder: Path, originals: Path, names: list[str]) -> Path:
    """Copies of these photos scanned once into `folder`/template.db (each case copies the database)."""
    for name in names:
        shutil.copy(originals / name, folder / name)
    result = run_cli("scan", folder, env={"CATALOG_DB": str(folder / "template.db"), "CATALOG_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    return folder / "template.db"
