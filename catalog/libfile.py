"""Reading a library file: never blocks on a FIFO, never maps it, and notices it changing underfoot.

Every reader of a user's photo (scan, identity, upload preparation) opens it through
`open_library_file`: the open does not block (O_NONBLOCK), and the type is checked on
the open descriptor, so a file swapped for a FIFO, socket or device after the folder
was listed is refused instead of hanging a thread in fifo_open. Large files are read
through `FileView` (pread into small blocks), never mmap: a file truncated while it
is read raises `FileChanged` here, where a mapping would kill the process with SIGBUS.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import BinaryIO, Iterator

from catalog.errors import FileChanged, NotRegularFile

CHUNK = 4 << 20  # hashing reads: big enough to stream at disk speed, small enough to stay flat
BLOCK = 64 << 10  # header reads (segment and chunk walks) are served from one cached block
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symlink"}


def open_library_file(path: str | os.PathLike, *, follow_symlinks: bool = True) -> BinaryIO:
    """A buffered reader on a regular file; raises NotRegularFile for anything else, at once."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise NotRegularFile(errno.ELOOP, "not a regular file any more (now a symlink)") from None
        if exc.errno == errno.ENXIO:  # what opening a socket, or a device with no driver, says
            raise NotRegularFile(errno.ENXIO, "not a regular file any more (a socket or a device)") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise NotRegularFile(errno.EINVAL, f"not a regular file any more (now {what})")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def identity_stat(f: BinaryIO) -> tuple[int, int, int]:
    """What says "the same file, unchanged": size, mtime and inode of the open descriptor."""
    st = os.fstat(f.fileno())
    return st.st_size, st.st_mtime_ns, st.st_ino


def read_all(f: BinaryIO, size: int) -> bytes:
    """The whole file in one read(); FileChanged if it is not `size` bytes long any more."""
    data = f.read(size + 1)
    if len(data) != size:
        raise FileChanged(errno.EIO, f"the file changed while it was read ({size:,} bytes "
                                     f"when opened, {len(data):,} read)")
    return data


class FileView:
    """A large file as a read-only byte sequence over pread: len, indexing and slicing.

    Header walks touch a few bytes here and there (one cached block); bulk ranges are
    streamed with `chunks`. A read that comes up short means the file shrank underneath
    us: FileChanged, never a signal.
    """

    def __init__(self, f: BinaryIO, size: int):
        self._fd, self._size = f.fileno(), size
        self._block_at, self._block = -1, b""

    def __len__(self) -> int:
        return self._size

    def _read(self, start: int, length: int) -> bytes:
        data = os.pread(self._fd, length, start)
        if len(data) != length:
            raise FileChanged(errno.EIO, f"the file shrank while it was read (expected "
                                         f"{self._size:,} bytes, it ends before {start + length:,})")
        return data

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step != 1:
                raise ValueError("FileView slices have no step")
            if stop <= start:
                return b""
            if start >= self._block_at and stop <= self._block_at + len(self._block):
                return self._block[start - self._block_at : stop - self._block_at]
            if stop - start > BLOCK:
                return self._read(start, stop - start)
            self._block_at = start
            self._block = self._read(start, min(BLOCK, self._size - start))
            return self._block[: stop - start]
        if key < 0:
            key += self._size
        if not 0 <= key < self._size:
            raise IndexError("FileView index out of range")
        return self[key : key + 1][0]

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """[start, stop) in CHUNK-sized reads (each releases the GIL while the kernel copies)."""
        while start < stop:
            n = min(CHUNK, stop - start)
            yield self._read(start, n)
            start += n
