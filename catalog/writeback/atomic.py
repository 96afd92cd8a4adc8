"""The one way write-back touches a file: read it safely, replace it atomically, never through a link.

Reads open with O_NOFOLLOW | O_NONBLOCK and check the type on the descriptor (a symlink, a FIFO
or a folder is refused, never followed or waited on), bounded by a size limit, and return the
file's fingerprint (size, mtime, inode). `atomic_write` puts the bytes in a temp file in the same
folder (O_EXCL), fsyncs it, gives it the original's permissions (and owner when we may), lets
the caller journal it ahead (`before_rename` sees the temp file's final stat), checks that the
target is still the file that was read (no lost update), renames it over the target, then
fsyncs the folder. Everything before the rename leaves the target untouched and removes the
temp file; nothing after the rename raises, so a write that happened is never reported as not
happened (a folder that refuses fsync, as some network mounts do, only gets a log line).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass

from catalog.errors import ChangedMeanwhile, NotRegularFile, WriteBackError
from catalog.libfile import open_library_file

log = logging.getLogger("catalog.writeback")


@dataclass(frozen=True)
class Fingerprint:
    """What must not change between reading a file and replacing it."""

    size: int
    mtime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


ABSENT = None  # the expected state of a file that did not exist when it was read


def fingerprint(path: str) -> Fingerprint | None:
    """The file's fingerprint without following a link (None: nothing there)."""
    try:
        return Fingerprint.of(os.lstat(path))
    except FileNotFoundError:
        return None


def read_file(path: str, *, limit: int | None = None, what: str = "the file") -> tuple[bytes, Fingerprint]:
    """Bytes and fingerprint of a regular file, never through a symlink nor blocking on a FIFO
    (catalog.libfile opens it, as it opens every library file)."""
    try:
        f = open_library_file(path, follow_symlinks=False)
    except NotRegularFile as exc:
        if exc.errno == errno.ELOOP:
            raise WriteBackError(f"{what} is a symbolic link: not read or written through it") from None
        raise WriteBackError(f"{what} is not a regular file: left alone") from None
    with f:
        st = os.fstat(f.fileno())
        if limit is not None and st.st_size > limit:
            raise WriteBackError(f"{what} is {st.st_size:,} bytes, over the {limit:,}-byte limit: left alone")
        data = f.read() if limit is None else f.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise WriteBackError(f"{what} grew over the {limit:,}-byte limit while read: left alone")
        return data, Fingerprint.of(os.fstat(f.fileno()))


def atomic_write(path: str, data: bytes, *, mtime_ns: int | None = None,
                 expect: Fingerprint | None | bool = False,
                 before_rename: Callable[[os.stat_result], None] | None = None) -> os.stat_result:
    """Replace `path` with `data` atomically; returns the new file's stat.

    `expect`: the fingerprint the file had when it was read (None: it did not exist); if it
    differs just before the rename, nothing is written (another program wrote meanwhile).
    False skips that check. `path` itself must not be a symlink (resolve it first).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    before = os.lstat(path) if os.path.lexists(path) else None
    if before is not None and not stat.S_ISREG(before.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(before.st_mode) else "not a regular file"
        raise WriteBackError(f"{path} is {kind}: not written through it")
    temp = os.path.join(folder, f".catalog-{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    try:
        try:
            if before is not None:
                os.fchmod(fd, stat.S_IMODE(before.st_mode))
                try:
                    os.fchown(fd, before.st_uid, before.st_gid)
                except PermissionError:  # not ours to give away: keep our ownership
                    pass
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            os.fsync(fd)
            written = os.fstat(fd)
            if before_rename is not None:
                before_rename(written)
            if expect is not False and fingerprint(path) != expect:
                raise ChangedMeanwhile("changed by another program while we wrote it: left alone, "
                                       "tried again next run")
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        _sync_folder(folder)
        return written
    finally:
        os.close(fd)


def remove(path: str, *, expect: Fingerprint) -> None:
    """Delete a file we created, only if it is still the one we know."""
    if fingerprint(path) != expect:
        raise WriteBackError("changed by another program: left alone")
    os.unlink(path)
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def sweep(folder: str) -> int:
    """Remove the temp files a killed write left in `folder` (call only under the catalogue lock)."""
    removed = 0
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".catalog-") and n.endswith(".tmp")]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed += 1
        except OSError:
            pass
    return removed


def inside(path: str, folders) -> bool:
    """Whether the real location of `path` (links resolved) lies in one of `folders` (also resolved)."""
    real = os.path.realpath(path)
    for folder in folders:
        top = os.path.realpath(folder)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def _sync_folder(folder: str) -> None:
    """Make the rename durable; a folder that cannot be synced (EINVAL on some network mounts)
    does not undo a rename that happened, so it is logged, never raised."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        log.info("cannot open %s to sync it: %s", folder, exc.strerror or exc)
        return
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EROFS):
            log.warning("%s: the folder could not be synced (%s); the file was written",
                        folder, exc.strerror or exc)
    finally:
        os.close(dir_fd)
