"""Shared fixtures: copies of the shared test photos, a fresh catalogue, a clean environment, no proxies,
the `catalog` command, its code from an older commit, and the outside programs that check our work
(exiftool, Chromium): skipped when missing on a developer's machine, a failure under CI (CI=true)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def missing(what: str):
    """An outside program the test needs is not here: skip it, except under CI, where it fails."""
    if IN_CI:
        pytest.fail(f"CI: {what}")
    pytest.skip(what)


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
def run_catalog():
    """`run_catalog(*args, env={...})`: the real `catalog` command in a child process, as a user or cron
    starts it (this environment plus `env`, nothing on its input)."""

    def run(*args, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "catalog", *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=timeout, stdin=subprocess.DEVNULL)

    return run


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


class ExifTool:
    """exiftool, the independent reader (and the other program) our metadata writes are checked with."""

    def __init__(self, path: str):
        self.path = path

    def run(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        """exiftool with these arguments; its bytes out (a failure fails the test)."""
        done = subprocess.run([self.path, *map(str, args)], capture_output=True, timeout=timeout)
        assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
        return done

    def read(self, *paths, options=()) -> dict[Path, dict]:
        """What exiftool reads from these files (one process for all), by resolved path, in order, with
        group-qualified names such as XMP-dc:Subject; `options` such as "-a" or "-validate" add to it."""
        out = subprocess.run([self.path, "-j", "-G1", "-struct", "-charset", "iptc=UTF8", *options,
                              *map(str, paths)], capture_output=True, timeout=120).stdout
        found = json.loads(out.decode("utf-8", "replace") or "[]", strict=False)
        return {Path(r["SourceFile"]).resolve(): r for r in found}

    @staticmethod
    def listed(value) -> list[str]:
        """A tag's values as a list of text (exiftool gives one value bare, a number as a number)."""
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@pytest.fixture(scope="session")
def exiftool() -> ExifTool:
    """The tests that read our writes back with exiftool ask for it; no other test needs it."""
    path = shutil.which("exiftool")
    if path is None:
        missing("exiftool is not installed (apt-get install libimage-exiftool-perl; CI installs it)")
    return ExifTool(path)


@pytest.fixture
def chromium():
    """Debian's Chromium under Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        missing(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
