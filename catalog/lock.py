"""One writer at a time per catalogue: an advisory lock file beside the database.

`flock` is released by the kernel when its process dies, however it dies, so a
lock left by a killed run is simply free again; the file's contents (pid, host,
command, start time) only serve the message shown to whoever is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from catalog import db as catalog_db
from catalog import private
from catalog.errors import CatalogError, CatalogueBusy


def lock_path(database: Path) -> Path:
    return Path(f"{database}.lock")


@contextmanager
def exclusive(database: Path, command: str):
    """Hold the catalogue's writer lock for the block; refuse at once if another run holds it."""
    path = lock_path(database)
    try:
        private.make_dirs(path.parent)
        private.tighten(path, "the lock file")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, private.FILE_MODE)
    except OSError as exc:
        raise CatalogError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CatalogueBusy(_busy_message(path, database)) from None
        previous = _read(fd)
        if previous and previous.get("pid") and not previous.get("released"):
            # The holder died without releasing (kill -9, power cut): the kernel dropped
            # its flock, so the lock is ours now.
            import logging

            logging.getLogger("catalog.lock").warning(
                "taking over the lock of an earlier %s (pid %s, started %s) that did not finish",
                previous.get("command"), previous.get("pid"), previous.get("started"))
        _write(fd, {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                    "started": catalog_db.now()})
        try:
            yield
        finally:
            info = _read(fd) or {}
            _write(fd, {**info, "released": catalog_db.now()})
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        return json.loads(data) if data else None
    except (OSError, ValueError):
        return None


def _write(fd: int, info: dict) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    os.fsync(fd)


def _busy_message(path: Path, database: Path) -> str:
    info: dict = {}
    for _ in range(25):  # a holder that has just taken the lock writes its name a moment later
        try:
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if info.get("pid") and not info.get("released"):
            break
        time.sleep(0.01)
    else:
        return f"another run has just started working on {database}. Try again when it has finished."
    who = f"`catalog {info.get('command', '?')}` (pid {info.get('pid', '?')} on {info.get('host', '?')})"
    return (f"another run is already working on {database}: {who}, running since "
            f"{info.get('started', 'an unknown time')}. Try again when it has finished.")
