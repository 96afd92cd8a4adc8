"""Replace a file so that readers see the old bytes or the new ones, never a mix.

Temp file in the same folder, fsync, the original's permissions (and owner when
we may), atomic rename, fsync of the folder. The temp file never outlives a failure.
"""

from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, data: bytes, *, mtime_ns: int | None = None) -> os.stat_result:
    """Write `data` to `path` atomically; returns the new file's stat."""
    folder = os.path.dirname(path) or "."
    try:
        before = os.stat(path)
    except FileNotFoundError:
        before = None
    fd, temp = tempfile.mkstemp(prefix=".catalog-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before is not None:
            os.chmod(temp, before.st_mode & 0o7777)
            try:
                os.chown(temp, before.st_uid, before.st_gid)
            except PermissionError:  # not ours to give away: keep our ownership
                pass
        else:
            os.chmod(temp, 0o666 & ~_umask())
        if mtime_ns is not None:
            os.utime(temp, ns=(mtime_ns, mtime_ns))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return os.stat(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
