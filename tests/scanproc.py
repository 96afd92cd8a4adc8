"""A `catalog scan` in its own process group, the processes under it, and small photos to keep it busy."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image


def tiny_jpegs(folder: Path, count: int) -> None:
    """`count` distinct small JPEGs with a camera in their EXIF, 200 a folder."""
    rng = random.Random(count)
    for i in range(count):
        sub = folder / f"f{i // 200:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        exif[0x010F], exif[0x0112] = "Canon", 1 + i % 8
        Image.frombytes("RGB", (24, 16), rng.randbytes(24 * 16 * 3)).save(sub / f"{i:05d}.jpg", quality=80, exif=exif)


def descendants(pid: int) -> set[int]:
    """Every process under `pid` (children, their children, ...), from /proc."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie waiting for its reaper counts as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def scan_env(db: Path) -> dict[str, str]:
    return {**os.environ, "CATALOG_DB": str(db), "XDG_CONFIG_HOME": str(db.parent / "xdg")}


def start_scan(root: Path, db: Path) -> subprocess.Popen:
    """`catalog scan --json` (worker processes, the default), in its own process group as a terminal runs it."""
    return subprocess.Popen([sys.executable, "-m", "catalog", "scan", "--json", str(root)], env=scan_env(db),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def wait_for_rows(db: Path, child: subprocess.Popen, seconds: float = 120) -> tuple[int, set[int]]:
    """Wait until the scan has written its first batch; its rows and the processes under it then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                rows = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        except sqlite3.Error:
            rows = 0
        if rows:
            return rows, descendants(child.pid)
        time.sleep(0.05)
    pytest.fail(f"the scan wrote nothing in {seconds} s (exit {child.poll()})")
