"""Real filesystem faults for tests: a full disk (tiny tmpfs), a read-only mount, an immutable file.

Each needs root with CAP_SYS_ADMIN / CAP_LINUX_IMMUTABLE (the test container has them); where
the system refuses, the test is skipped with the reason: a fake fault would prove nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def _while(path: Path, setup: list[tuple[str, ...]], undo: tuple[str, ...], why: str):
    """Run the `setup` commands (skipping the test with `why` if one is refused), yield, then `undo`."""
    try:
        for command in setup:
            done = _run(*command)
            if done.returncode:
                pytest.skip(f"{why} ({done.stderr.strip()})")
        yield path
    finally:
        _run(*undo)


def tmpfs(path: Path, size: str = "4m"):
    """A fresh tmpfs of `size` mounted at `path` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    return _while(path, [("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))],
                  ("umount", "-l", str(path)), "cannot mount a tmpfs here: needs root")


def read_only(path: Path):
    """`path` (a folder) bind-mounted read-only over itself: every write answers EROFS."""
    return _while(path, [("mount", "--bind", str(path), str(path)), ("mount", "-o", "remount,bind,ro", str(path))],
                  ("umount", "-l", str(path)), "cannot bind-mount read-only here: needs root")


def immutable(path: Path):
    """`path` marked immutable (chattr +i): not even root may replace or rename over it."""
    return _while(path, [("chattr", "+i", str(path))], ("chattr", "-i", str(path)),
                  "chattr +i is not supported here")


def fill(folder: Path) -> Path:
    """Fill the filesystem holding `folder` until it answers ENOSPC; returns the filler file."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:  # the last few blocks
                f.write(b"\0" * 512)
    os.sync()
    return filler
