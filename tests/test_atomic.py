"""Atomic replace: old or new bytes, never a mix; permissions kept; no temp file left on failure."""

from __future__ import annotations

import os

import pytest

from catalog.writeback.atomic import atomic_write
from catalog.writeback.tiffifd import WriteBackError


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
