"""Owner-only files: the catalogue, its lock and Prefect's home are created 0600/0700, loose ones tightened.

On a shared NAS box other local users must not read the catalogue (paths, places,
descriptions) nor Prefect's database (run parameters, logs, summaries). Folders we
create are 0700 and files 0600; a file of ours that is readable by others is
tightened once, with a log line. Files and folders we did not create and do not
own are left as they are.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("catalog.private")

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(path: str | os.PathLike) -> None:
    """Create `path` and any missing parents as 0700; existing folders are left alone."""
    missing = []
    folder = Path(path).absolute()
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            pass
    if not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))


def create_file(path: str | os.PathLike) -> bool:
    """Create an empty 0600 file unless one exists; True when we created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def tighten(path: str | os.PathLike, what: str) -> None:
    """Take group/other access off `path` if we own it (with a log line); leave it otherwise."""
    try:
        info = os.stat(path)
    except OSError:  # missing, or not ours to look at: nothing we could change
        return
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if not loose:
        return
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        log.info("%s %s is readable by other users (mode %04o) and not ours to change", what, path, mode)
        return
    try:
        os.chmod(path, mode & ~0o077)
        tightened = not stat.S_IMODE(os.stat(path).st_mode) & 0o077
    except OSError:
        tightened = False
    if tightened:
        log.warning("%s %s was readable by other users (mode %04o): now %04o, owner only",
                    what, path, mode, mode & ~0o077)
    else:  # a share that ignores modes, an immutable file: never a reason to stop
        log.info("%s %s is readable by other users (mode %04o) and its filesystem keeps it so", what, path, mode)
