"""Browsing as an attacker: crafted links, rebinding Host names, odd searches, writes, fts3_tokenizer, plain datasette."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
from audit import CRASH_MARKS
from test_browse import (ODD_SEARCHES, _entry_point_path, build_catalogue, catalog_serve, request,
                         serving)
from test_browser import CRAFTED_LINKS, click_crafted_links, open_page, violations

FOREIGN_HOSTS = ["attacker.example", "attacker.example:{port}", "127.0.0.1.nip.io:{port}",
                 "localhost.attacker.example:{port}", "localhost:{other}", "[::1]:{other}",
                 "192.0.2.1:{port}", "", "::1", "evil@localhost:{port}"]
METHODS = ("POST", "PUT", "DELETE", "PATCH")
WRITE_PATHS = ("/catalog/duplicates", "/catalog/gallery", "/catalog", "/catalog/photos.json")
TOKENIZER_CALLS = ("select fts3_tokenizer('simple') as p", "select FTS3_TOKENIZER('porter') as p",
                   "select fts3_tokenizer('x', x'4141414141414141') as p")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return build_catalogue(tmp_path_factory.mktemp("fault-browser"))


def server_crashes(log_path, statuses) -> int:
    """5xx answers, and tracebacks in the server's own log."""
    text = log_path.read_text()
    return sum(s >= 500 for s in statuses) + sum(text.count(mark) for mark in CRASH_MARKS)


def test_crafted_popup_links(chromium, catalogue, tmp_path, figures):
    """A `?sql=` link whose map popup links to `javascript:`, clicked, with own SQL on and off."""
    with catalog_serve(catalogue, tmp_path) as (server, port, _log):
        refused = request(port, "/catalog?sql=" + quote("select 1 as latitude, 2 as longitude"))[0]
        page = open_page(chromium, server)
        clicked_off = click_crafted_links(page, server, CRAFTED_LINKS)
        ran_off = int(bool(page.evaluate("window.__pwned")))
    with catalog_serve(catalogue, tmp_path, "--allow-sql") as (server, port, log):
        page = open_page(chromium, server)
        clicked_on = click_crafted_links(page, server, CRAFTED_LINKS)
        ran_on = page.evaluate("window.__pwned") or 0
        blocked = sum(v.startswith("script-src") for v in violations(page))
        figures.crashes = server_crashes(log, [])
    figures.note = (f"{ran_off + ran_on} of {len(CRAFTED_LINKS)} crafted links ran: own SQL off, "
                    f"the link is refused ({refused}, {clicked_off} clicked); with --allow-sql all "
                    f"{clicked_on} clicked, CSP refused {blocked}")
    assert refused == 403 and clicked_on == len(CRAFTED_LINKS) and ran_off == ran_on == 0


def test_rebinding_host_names(catalogue, tmp_path, figures):
    """DNS rebinding: requests to the served port naming another host."""
    with catalog_serve(catalogue, tmp_path) as (_server, port, log):
        hosts = [h.format(port=port, other=port + 1) for h in FOREIGN_HOSTS]
        statuses = [request(port, "/catalog/gallery.json", host=h)[0] for h in hosts]
        figures.crashes = server_crashes(log, statuses)
    served = sum(s < 400 for s in statuses)
    figures.note = f"{served} of {len(hosts)} foreign Host names served (all others 400)"
    assert served == 0 and set(statuses) == {400}


def test_odd_searches(catalogue, tmp_path, figures):
    """FTS syntax in the search box: lone quotes, NEAR(, a bare OR or -, NUL, SQL text."""
    with catalog_serve(catalogue, tmp_path) as (_server, port, log):
        statuses = [request(port, "/catalog/gallery?_search=" + quote(q))[0] for q in ODD_SEARCHES]
        figures.crashes = server_crashes(log, statuses)
    answered = statuses.count(200)
    figures.note = f"{answered} of {len(ODD_SEARCHES)} odd searches answered 200"
    assert answered == len(ODD_SEARCHES)


def test_writes_over_http(catalogue, tmp_path, figures):
    """POST, PUT, DELETE, PATCH to canned queries, tables and the database."""
    with catalog_serve(catalogue, tmp_path) as (_server, port, log):
        before = catalogue.read_bytes()
        statuses = [request(port, path, method=m)[0] for m in METHODS for path in WRITE_PATHS]
        figures.crashes = server_crashes(log, statuses)
        unchanged = catalogue.read_bytes() == before
    figures.note = f"{statuses.count(405)} of {len(statuses)} answered 405; catalogue unchanged: {unchanged}"
    assert statuses.count(405) == len(statuses) and unchanged


def test_fts3_tokenizer(catalogue, tmp_path, figures):
    """SQLite's fts3_tokenizer (hands out a pointer; installs one), with own SQL on."""
    with catalog_serve(catalogue, tmp_path, "--allow-sql") as (_server, port, log):
        answers = [request(port, f"/catalog.json?sql={quote(sql)}&_shape=array") for sql in TOKENIZER_CALLS]
        figures.crashes = server_crashes(log, [a[0] for a in answers])
    ran = sum(status == 200 for status, _headers, _body in answers)
    figures.note = f"{ran} of {len(TOKENIZER_CALLS)} calls ran (refused: not authorized)"
    assert ran == 0 and all("not authorized" in body for _status, _headers, body in answers)


def test_plain_datasette(catalogue, tmp_path, figures):
    """`datasette catalog.db` without `catalog serve`: the same rules through the entry points."""
    env = {"PYTHONPATH": os.pathsep.join([str(_entry_point_path(tmp_path)),
                                          os.environ.get("PYTHONPATH", "")])}
    with serving(["datasette", "serve", str(catalogue)], tmp_path / "datasette.log", env=env) as (
            _server, port, log):
        checks = {
            "own SQL": request(port, "/catalog.json?sql=select+1")[0] == 403,
            "POST": request(port, "/catalog/duplicates", method="POST")[0] == 405,
            "foreign Host": request(port, "/catalog/gallery", host="attacker.example")[0] == 400,
            "lone quote": request(port, "/catalog/gallery?_search=%22")[0] == 200,
            "CSP": "'unsafe-inline'" not in request(port, "/catalog/gallery")[1]
                   .get("content-security-policy", "'unsafe-inline'").split("style-src")[0],
        }
        figures.crashes = server_crashes(log, [])
    held = [name for name, ok in checks.items() if ok]
    figures.note = f"{len(held)} of {len(checks)} rules held ({', '.join(held)})"
    assert len(held) == len(checks)
