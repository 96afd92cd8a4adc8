"""`catalog serve` in a real browser: headless Chromium (Debian's) driven by Playwright.

Outside CI these tests skip when Chromium is missing; under CI (CI=true) they fail instead
(conftest.py's `chromium`), so a runner without a browser cannot pass them by skipping.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from test_browse import build_catalogue, catalog_serve

# Each `javascript:` link would mark the page if it ran; spellings a browser still runs.
MARK = "document.title='pwned';window.__pwned=(window.__pwned||0)+1;void 0"
CRAFTED_LINKS = [f"javascript:{MARK}", f"  JaVaScRiPt:{MARK}", f"java\tscript:{MARK}"]
# Every CSP refusal on the page, recorded before any of the page's own scripts runs.
WATCH_VIOLATIONS = """window.__violations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"""


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    return build_catalogue(tmp_path_factory.mktemp("browser"))


def open_page(browser, base: str):
    """A page that reaches nothing but our server (map tiles are refused) and records CSP refusals."""
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.route("**/*", lambda route: route.continue_()
               if route.request.url.startswith(base) else route.abort())
    page.add_init_script(WATCH_VIOLATIONS)
    return page


def violations(page) -> list[str]:
    return page.evaluate("window.__violations")


def test_search_facets_map_and_thumbnails_in_a_real_browser(chromium, catalogue, tmp_path):
    with catalog_serve(catalogue, tmp_path) as (server, _port, log):
        assert f"{server}/catalog/gallery" in log.read_text()  # it says where to point the browser
        page = open_page(chromium, server)
        page.goto(f"{server}/catalog/gallery")
        assert page.locator("h1").inner_text().startswith("Gallery")
        page.wait_for_selector(".leaflet-marker-icon, .marker-cluster", timeout=15000)  # the map
        assert page.evaluate("window.DATASETTE_ALLOW_FACET") is True  # Datasette's inline script ran

        # A facet narrows the gallery: the first tag in the tags facet.
        facet = page.locator(".facet-info[data-column=tags] li a").first
        with page.expect_navigation():
            facet.click()
        assert "tags__arraycontains=" in page.url
        assert page.locator("table.rows-and-columns tbody tr").count() >= 1

        page.goto(f"{server}/catalog/gallery")
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
        assert violations(page) == []  # the policy let every script the page needs run

        # A lone quote in the search box is text: a page, not an error.
        page.fill("input[name=_search]", '"')
        with page.expect_navigation() as navigation:
            page.press("input[name=_search]", "Enter")
        assert navigation.value.status == 200 and page.locator("h1").inner_text().startswith("Gallery")

        # A thumbnail leads to the photo's own page, which shows it larger.
        page.goto(f"{server}/catalog/gallery?_search=nikon")
        page.locator(".catalog-thumb a").first.click()
        page.wait_for_load_state()
        assert "/catalog/photos/" in page.url
        page.wait_for_function("() => { const i = document.querySelector('.catalog-thumb-large img');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=15000)
        page.goto(f"{server}/catalog/duplicates")
        assert page.locator(".catalog-thumb img").count() == 1 and violations(page) == []


def crafted_query(links: list[str]) -> str:
    """The attack: a `?sql=` link whose rows carry a map popup with a `javascript:` link."""
    rows = " UNION ALL ".join(
        f"SELECT {40 + i} AS latitude, {-3 - i} AS longitude, json_object('title', 'open me {i}', "
        f"'link', '{link.replace(chr(39), chr(39) * 2)}') AS popup" for i, link in enumerate(links))
    return "/catalog?sql=" + quote(rows)


def click_crafted_links(page, base: str, links: list[str]) -> int:
    """Open the crafted page, then per marker: click it (popup), click its link. Returns how
    many links were clicked; the page records whether any script ran."""
    clicked = 0
    for i in range(len(links)):
        page.goto(base + crafted_query(links[i:i + 1]))
        if page.locator("body.query").count() == 0:  # refused: there is no map to click
            continue
        page.wait_for_selector(".leaflet-marker-icon", timeout=15000)
        page.locator(".leaflet-marker-icon").first.click()
        link = page.locator(".leaflet-popup-content a")
        link.wait_for(timeout=5000)
        assert link.get_attribute("href").strip().lower().replace("\t", "").startswith("javascript:")
        link.click()
        page.wait_for_timeout(300)
        clicked += 1
        assert page.evaluate("window.__pwned") is None and page.title() != "pwned", links[i]
    return clicked


def test_crafted_popup_link_runs_no_script_own_sql_off(chromium, catalogue, tmp_path):
    with catalog_serve(catalogue, tmp_path) as (server, _port, _log):
        page = open_page(chromium, server)
        response = page.goto(server + crafted_query(CRAFTED_LINKS))
        assert response.status == 403 and page.locator(".leaflet-marker-icon").count() == 0
        assert click_crafted_links(page, server, CRAFTED_LINKS) == 0
        assert page.evaluate("window.__pwned") is None


def test_crafted_popup_link_runs_no_script_even_with_own_sql_on(chromium, catalogue, tmp_path):
    """The second layer alone: with --allow-sql the popup link is there, and the policy stops it."""
    with catalog_serve(catalogue, tmp_path, "--allow-sql") as (server, _port, _log):
        page = open_page(chromium, server)
        assert click_crafted_links(page, server, CRAFTED_LINKS) == len(CRAFTED_LINKS)
        assert any(v.startswith("script-src") for v in violations(page))  # refused, not missed
