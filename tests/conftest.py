"""Shared fixtures: copies of the shared test photos, a fresh catalogue, a clean environment, no proxies,
the catalogue's code from an older commit, exiftool and the `catalog` command."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """Tests never reach past 127.0.0.1 and never read the developer's own settings."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("CATALOG_CONFIG", "CATALOG_DB", "IMGTAGS_API_KEY", "IMGTAGS_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    # Enricher workers take seconds to start: only the tests about them turn them on.
    monkeypatch.setenv("CATALOG_ENRICHERS", "")


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    if not SHARED_PHOTOS.is_dir():
        pytest.fail(f"test photos not found at {SHARED_PHOTOS} (expected ../shared/photos)")
    return SHARED_PHOTOS


@pytest.fixture
def photos(tmp_path, shared_photos) -> Path:
    """A writable copy of ../shared/photos (real/ and edge/), never the original."""
    dest = tmp_path / "photos"
    shutil.copytree(shared_photos, dest, ignore=shutil.ignore_patterns("*.md"))
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


@pytest.fixture
def db(tmp_path):
    """A fresh, fully migrated catalogue in tmp_path, closed after the test."""
    from catalog.db import open_db

    catalogue = open_db(tmp_path / "catalog.db")
    yield catalogue
    catalogue.close()


@pytest.fixture
def old_code(tmp_path):
    """`old_code(COMMIT)`: the `catalog` package as it was at that commit, from git (a PYTHONPATH)."""

    def extract(commit: str) -> Path:
        archive = subprocess.run(["git", "archive", commit, "catalog"], cwd=REPO, capture_output=True)
        if archive.returncode != 0:
            pytest.skip(f"commit {commit[:10]} is not in this clone: {archive.stderr.decode().strip()}")
        tree = tmp_path / f"code-{commit[:10]}"
        tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(tree, filter="data")
        return tree

    return extract
