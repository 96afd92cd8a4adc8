"""`catalog serve` in a real browser: headless Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_browse import build_catalogue

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`catalog serve` on a real catalogue, as a user would start it."""
    database = build_catalogue(tmp_path)
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "catalog", "--db", str(database), "serve",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/versions.json", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"catalog serve did not start:\n{log.read()}")
                time.sleep(0.2)
        log.seek(0)
        assert f"{base}/catalog/gallery" in log.read()  # it says where to point the browser
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_search_and_thumbnails_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            # Nothing leaves this machine: map tiles and anything not ours are refused.
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(server) else route.abort())
            page.goto(f"{server}/catalog/gallery")
            assert page.locator("h1").inner_text().startswith("Gallery")
            page.wait_for_selector(".leaflet-marker-icon, .marker-cluster", timeout=15000)  # the map

            page.fill("input[name=_search]", "nikon")
            with page.expect_navigation():
                page.press("input[name=_search]", "Enter")
            assert "_search=nikon" in page.url
            rows = page.locator("table.rows-and-columns tbody tr")
            assert rows.count() == 2
            assert "DSCN0010.jpg" in page.locator("table.rows-and-columns").inner_text()

            page.locator(".catalog-thumb img").last.scroll_into_view_if_needed()
            page.wait_for_function("""() => {
                const imgs = [...document.querySelectorAll('.catalog-thumb img')];
                return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
            }""", timeout=15000)
            sizes = page.evaluate("[...document.querySelectorAll('.catalog-thumb img')]"
                                  ".map(i => [i.naturalWidth, i.naturalHeight])")
            assert len(sizes) == 2 and all(max(size) == 256 for size in sizes)
            shot = tmp_path / "gallery-search-nikon.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # A thumbnail leads to the photo's own page, which shows it larger.
            page.locator(".catalog-thumb a").first.click()
            page.wait_for_load_state()
            assert "/catalog/photos/" in page.url
            page.wait_for_function("() => { const i = document.querySelector('.catalog-thumb-large img');"
                                   " return i && i.complete && i.naturalWidth > 0; }", timeout=15000)
        finally:
            browser.close()
