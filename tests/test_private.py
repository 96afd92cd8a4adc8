"""Owner-only files: folders created 0700, files 0600, loose files of ours tightened, never a reason to stop."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess

import pytest

from catalog import private


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_folders_and_files_are_created_owner_only(tmp_path):
    previous = os.umask(0o022)  # the usual umask, which would give 0755 and 0644
    try:
        private.make_dirs(tmp_path / "a" / "b")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    assert private.create_file(tmp_path / "a" / "b" / "c.db") is True
    assert mode(tmp_path / "a" / "b" / "c.db") == 0o600
    assert private.create_file(tmp_path / "a" / "b" / "c.db") is False  # an existing file is left as it is
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError):
        private.make_dirs(tmp_path / "plain")


def test_a_loose_file_is_tightened_with_a_warning(tmp_path, caplog):
    path = tmp_path / "c.db"
    path.write_text("x")
    path.chmod(0o664)
    with caplog.at_level(logging.INFO, logger="catalog.private"):
        private.tighten(path, "the catalogue")
    assert mode(path) == 0o600
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "0664" in caplog.text


def test_a_file_whose_mode_cannot_change_is_not_fatal(tmp_path, caplog):
    """chattr +i refuses chmod even to root: the file stays as it is and the command goes on."""
    path = tmp_path / "c.db"
    path.write_text("x")
    path.chmod(0o644)
    chattr = shutil.which("chattr")
    if not chattr or subprocess.run([chattr, "+i", path], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        with caplog.at_level(logging.INFO, logger="catalog.private"):
            private.tighten(path, "the catalogue")
        assert mode(path) == 0o644
        assert [r.levelname for r in caplog.records] == ["INFO"] and "keeps it so" in caplog.text
    finally:
        subprocess.run([chattr, "-i", path], check=True)
