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
def tmpfs(path: Path, size: str = "4m"):
    """A fresh tmpfs of `size` mounted at `path` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


@contextlib.contextmanager
def read_only(path: Path):
    """`path` (a folder) bind-mounted read-only over itself: every write answers EROFS."""
    bound = _run("mount", "--bind", str(path), str(path))
    if bound.returncode:
        pytest.skip(f"cannot bind-mount here ({bound.stderr.strip()}): needs root")
    try:
        remount = _run("mount", "-o", "remount,bind,ro", str(path))
        if remount.returncode:
            pytest.skip(f"cannot remount read-only here ({remount.stderr.strip()})")
        yield path
    finally:
        _run("umount", "-l", str(path))


@contextlib.contextmanager
def immutable(path: Path):
    """`path` marked immutable (chattr +i): not even root may replace or rename over it."""
    done = _run("chattr", "+i", str(path))
    if done.returncode:
        pytest.skip(f"chattr +i is not supported here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        _run("chattr", "-i", str(path))


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
