"""Atomic replace: old or new bytes, never a mix; permissions kept; no temp file left on failure."""

from __future__ import annotations

import os

import pytest

from catalog.writeback.atomic import atomic_write, read_file, sweep
from catalog.errors import WriteBackError


def test_replaces_and_keeps_permissions(tmp_path):
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"old")
    target.chmod(0o640)
    st = atomic_write(str(target), b"new bytes")
    assert target.read_bytes() == b"new bytes" and st.st_size == 9
    assert (target.stat().st_mode & 0o777) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["photo.jpg"]


def test_sets_the_requested_mtime(tmp_path):
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"old")
    atomic_write(str(target), b"restored", mtime_ns=1_600_000_000_123_456_789)
    assert target.stat().st_mtime_ns == 1_600_000_000_123_456_789


def test_failure_leaves_the_original_and_no_temp_file(tmp_path):
    target = tmp_path / "photo.jpg"
    target.mkdir()  # os.replace cannot put a file over a non-empty folder
    (target / "inside").write_bytes(b"x")
    with pytest.raises(WriteBackError, match="not a regular file"):  # never replaced, never followed
        atomic_write(str(target), b"new")
    assert sorted(os.listdir(tmp_path)) == ["photo.jpg"] and (target / "inside").read_bytes() == b"x"


def test_a_write_by_someone_else_since_the_read_is_not_overwritten(tmp_path):
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"as read")
    _, seen = read_file(str(target))
    target.write_bytes(b"theirs, longer")  # another program saves it meanwhile
    with pytest.raises(WriteBackError, match="another program"):
        atomic_write(str(target), b"ours", expect=seen)
    assert target.read_bytes() == b"theirs, longer" and os.listdir(tmp_path) == ["photo.jpg"]
    with pytest.raises(WriteBackError, match="another program"):  # expected absent, now present
        atomic_write(str(target), b"ours", expect=None)
    assert atomic_write(str(target), b"ours", expect=read_file(str(target))[1]).st_size == 4


def test_links_fifos_and_oversized_files_are_never_read_or_written_through(tmp_path):
    elsewhere = tmp_path / "elsewhere.xmp"
    elsewhere.write_bytes(b"someone else's")
    link = tmp_path / "IMG.JPG.xmp"
    link.symlink_to(elsewhere)
    with pytest.raises(WriteBackError, match="symbolic link"):
        read_file(str(link))
    with pytest.raises(WriteBackError, match="symbolic link"):
        atomic_write(str(link), b"ours")
    assert link.is_symlink() and elsewhere.read_bytes() == b"someone else's"
    fifo = tmp_path / "pipe.xmp"
    os.mkfifo(fifo)
    with pytest.raises(WriteBackError, match="not a regular file"):
        read_file(str(fifo))  # no writer: a blocking open would hang here
    big = tmp_path / "big.xmp"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    with pytest.raises(WriteBackError, match="limit"):
        read_file(str(big), limit=1 << 20)


def test_a_full_disk_leaves_the_original_and_no_temp_file(tmp_path):
    """A real ENOSPC from a tiny tmpfs, at write or at fsync."""
    from fsfaults import fill, tmpfs

    with tmpfs(tmp_path / "disk", size="256k") as disk:
        target = disk / "photo.jpg"
        target.write_bytes(b"old")
        fill(disk)
        with pytest.raises(OSError, match="No space"):
            atomic_write(str(target), b"x" * 65536)
        assert target.read_bytes() == b"old" and sorted(os.listdir(disk)) == ["filler.bin", "photo.jpg"]


def test_leftover_temp_files_are_swept(tmp_path):
    (tmp_path / ".catalog-0123456789abcdef.tmp").write_bytes(b"half")
    (tmp_path / "photo.jpg").write_bytes(b"keep")
    assert sweep(str(tmp_path)) == 1 and os.listdir(tmp_path) == ["photo.jpg"]
