"""Browsing in Datasette: the gallery, facets, search, thumbnails, map, canned queries, read-only,
and what the guard refuses (own SQL, other Host names, POST, fts3_tokenizer), also under plain
`datasette` started through the entry points."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import types
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from datasette import hookimpl
from datasette.plugins import pm
from PIL import Image

from catalog.analyze import analyze
from catalog.browse.metadata import QUERIES, build_metadata
from catalog.browse.server import make_datasette
from catalog.cli import cli
from catalog.settings import AnalysisSettings, Config
from catalog.db import open_db
from catalog.errors import AnalysisFailed
from catalog.scan import scan
from catalog.errors import SearchError
from catalog.search import connect
from catalog.search import search as catalog_search
from catalog.thumbnails import fill_thumbnails, make_thumbnail

SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "photos" / "real"
SHOWN_TABLES = ("gallery", "photos", "analyses", "files", "folders", "runs", "thumbnails")


class FailingAnalyzer:
    """Refuses every photo, as an API answering 422 would."""

    name = "failing"

    def analyze(self, image):
        raise AnalysisFailed("HTTP 422: the service could not read this image", permanent=True)


def build_catalogue(base: Path) -> Path:
    """The real photos (34 unique + 1 duplicate) analysed offline, plus one photo whose
    analysis failed and one still pending. Returns the database path."""
    library = base / "photos"
    shutil.copytree(SHARED_REAL, library, ignore=shutil.ignore_patterns("*.md"))
    for path in library.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    extra = base / "extra"
    (extra / "refused").mkdir(parents=True)
    (extra / "waiting").mkdir()
    Image.new("RGB", (900, 600), (30, 90, 200)).save(extra / "refused" / "blue_wall.jpg")
    Image.new("RGB", (300, 500), (240, 200, 20)).save(extra / "waiting" / "yellow_door.png")
    path = base / "catalog.db"
    db = open_db(path)
    try:
        with pytest.MonkeyPatch.context() as env:  # the offline analyzer, whatever the shell has
            env.delenv("IMGTAGS_API_KEY", raising=False)
            env.delenv("CATALOG_CONFIG", raising=False)
            scan(db, Config(), [library], progress=False)
            places = Config(analysis=AnalysisSettings(enrichers=("places",)))  # GPS -> place, for its facet
            summary = analyze(db, places, progress=False)
            assert (summary.analyzer, summary.analysed, summary.failed) == ("offline", 34, 0)
            scan(db, Config(), [library, extra / "refused"], progress=False)
            assert analyze(db, places, analyzer=FailingAnalyzer(), progress=False).failed == 1
            assert fill_thumbnails(db, Config(), progress=False).made == 35  # not yet the waiting one
            scan(db, Config(), [library, extra / "refused", extra / "waiting"], progress=False)
    finally:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
    return path


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    return build_catalogue(tmp_path_factory.mktemp("browse"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], log_path: Path, ready: str = "/-/versions.json", env=None):
    """A real server started as a user would (`catalog serve`, `datasette`), on a free port:
    yields (base URL, port, log path); stopped afterwards."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", *command, "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                           **(env or {})})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with urllib.request.urlopen(base + ready, timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"{' '.join(command)} did not start:\n{log.read()}")
                time.sleep(0.2)
        yield base, port, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def catalog_serve(database: Path, tmp_path: Path, *options: str):
    """`catalog serve` on a real catalogue, as a user would start it."""
    return serving(["catalog", "--db", str(database), "serve", *options], tmp_path / "serve.log")


def request(port: int, path: str, *, method: str = "GET", host: str | None = None):
    """A real HTTP request to the served port, with any Host header: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": f"127.0.0.1:{port}" if host is None else host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode("utf-8", "replace")
    finally:
        conn.close()


class Client:
    """Datasette's own test client, driven from synchronous tests."""

    def __init__(self, path: Path, **options):
        self.ds = make_datasette(path, **options)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.ds.invoke_startup())

    def get(self, url: str, **kwargs):
        return self.loop.run_until_complete(self.ds.client.get(url, **kwargs))

    def json(self, url: str):
        response = self.get(url)
        assert response.status_code == 200, response.text
        return response.json()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def close(self):
        self.ds.get_database("catalog").close()
        if self.ds.executor is not None:
            self.ds.executor.shutdown(wait=True)  # no threads left behind for later tests
        self.loop.close()


@pytest.fixture
def client(catalogue):
    c = Client(catalogue)
    yield c
    c.close()


def gallery(client, query: str = "") -> list[dict]:
    return client.json(f"/catalog/gallery.json?_shape=objects&_size=max{query}")["rows"]


def test_gallery_page_and_json(client):
    page = client.get("/catalog/gallery")
    assert page.status_code == 200
    assert "<h1" in page.text and "Gallery" in page.text
    assert page.text.count('class="catalog-thumb"') == 35  # every photo but the pending one
    assert 'class="catalog-swatch"' in page.text and 'class="catalog-tags"' in page.text
    rows = gallery(client)
    assert len(rows) == 36  # 34 real photos (the duplicate is one row), refused, waiting
    nikon = next(r for r in rows if r["path"].endswith("/DSCN0010.jpg"))
    assert nikon["camera"].lower().startswith("nikon") and nikon["year"] == nikon["taken"][:4]
    assert "nikon" in json.loads(nikon["tags"]) and nikon["color"].startswith("#")
    assert nikon["orientation"] == "landscape" and nikon["status"] == "done"
    assert nikon["latitude"] and nikon["longitude"] and nikon["thumbnail"] == nikon["photo_id"]
    torcal = next(r for r in rows if r["path"].endswith("el_torcal_rocks.jpeg"))
    assert torcal["copies"] == 2
    statuses = {r["path"].rsplit("/", 1)[1]: r["status"] for r in rows}
    assert statuses["blue_wall.jpg"] == "failed" and statuses["yellow_door.png"] == "pending"
    waiting = next(r for r in rows if r["path"].endswith("yellow_door.png"))
    assert waiting["thumbnail"] is None and waiting["orientation"] == "portrait"
    assert client.get("/").status_code == 200 and "Photo catalogue" in client.get("/").text


def test_metadata_titles_and_describes_every_column_shown(client, catalogue):
    tables = build_metadata()["databases"]["catalog"]["tables"]
    conn = sqlite3.connect(catalogue)
    for name in SHOWN_TABLES:
        assert tables[name]["title"] and tables[name]["description"]
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
        assert set(columns) <= set(tables[name]["columns"]), name
    page = client.get("/catalog/photos").text
    assert "Photos (all fields)" in page and "BLAKE3 hash of its image content" in page
    index = client.json("/catalog.json")
    hidden = {t["name"] for t in index["tables"] if t["hidden"]}
    assert {"photo_text", "_sqlite_migrations", "photo_text_fts"} <= hidden


def test_default_facets(client):
    data = client.json("/catalog/gallery.json?_facet_size=max")
    facets = data["facet_results"]
    assert {"tags", "scene", "mood", "orientation", "camera", "year", "status"} <= set(facets)
    assert facets["tags"]["type"] == "array"
    tag_counts = {v["value"]: v["count"] for v in facets["tags"]["results"]}
    assert tag_counts["landscape"] >= 20
    assert {v["value"] for v in facets["status"]["results"]} == {"done", "failed", "pending"}
    assert any(v["value"].lower().startswith("nikon") for v in facets["camera"]["results"])
    places = {v["value"] for v in facets["place"]["results"]}  # the GPS photos, named by the places enricher
    assert {"Arezzo, Tuscany, Italy", "Madrid, Spain", "Helsinki, Uusimaa, Finland"} <= places
    # Choosing a tag from the facet filters the gallery to it.
    nikon = gallery(client, "&tags__arraycontains=nikon")
    assert nikon and all("nikon" in json.loads(r["tags"]) for r in nikon)


@pytest.mark.parametrize("query", ["nikon", "landscape -nikon", "canon OR nikon", "dup", "summer*"])
def test_search_box_uses_the_catalog_search_index_and_language(client, catalogue, query):
    from urllib.parse import quote

    found = {r["photo_id"] for r in gallery(client, f"&_search={quote(query)}")}
    conn = connect(catalogue)
    try:
        expected = {r["id"] for r in catalog_search(conn, query, limit=1000)}
    finally:
        conn.close()
    assert found == expected and found


def test_search_finds_a_known_photo(client):
    paths = [r["path"] for r in gallery(client, "&_search=nikon")]
    assert any(p.endswith("/DSCN0010.jpg") for p in paths)
    in_dup_folder = [r["path"] for r in gallery(client, "&_search=dup")]
    assert any(p.endswith("/dup/el_torcal_rocks.jpeg") for p in in_dup_folder)
    page = client.get("/catalog/gallery?_search=nikon")
    assert page.status_code == 200 and 'name="_search"' in page.text and "DSCN0010.jpg" in page.text


def test_thumbnails_served_as_images(client):
    rows = [r for r in gallery(client) if r["thumbnail"]]
    sizes = []
    for row in rows:
        response = client.get(f"/-/thumbnails/{row['thumbnail']}.jpg")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG" and max(image.size) <= 256
        sizes.append(len(response.content))
        if max(row["width"], row["height"]) >= 256:
            assert max(image.size) == 256
    assert len(rows) == 35 and max(sizes) < 40_000 and sum(sizes) / len(sizes) < 16_000
    # Upright: a photo stored sideways (EXIF orientation 6) gets a portrait thumbnail.
    canon = next(r for r in rows if r["path"].endswith("canon_hdr_NO.jpg"))
    upright = Image.open(io.BytesIO(client.get(f"/-/thumbnails/{canon['photo_id']}.jpg").content))
    assert upright.height > upright.width
    assert client.get("/-/thumbnails/0123abc.jpg").status_code == 404
    # Row pages show them too: the photo's own page and the thumbnails table.
    row_page = client.get(f"/catalog/photos/{canon['photo_id']}").text
    assert f"/-/thumbnails/{canon['photo_id']}.jpg" in row_page
    assert client.get("/catalog/thumbnails").text.count("/-/thumbnails/") >= 35


def test_thumbnail_of_odd_input():
    rgba = io.BytesIO()
    Image.new("RGBA", (600, 300), (255, 0, 0, 0)).save(rgba, "PNG")
    thumb = make_thumbnail(rgba.getvalue())
    assert (thumb.width, thumb.height) == (256, 128)
    assert Image.open(io.BytesIO(thumb.jpeg)).getpixel((5, 5)) == (255, 255, 255)  # transparent: white
    assert make_thumbnail(b"not an image") is None


def test_failed_analysis_still_has_its_thumbnail(client):
    failed = client.json("/catalog/failed_analyses.json?_shape=objects")["rows"]
    assert len(failed) == 1 and failed[0]["path"].endswith("blue_wall.jpg")
    assert "422" in failed[0]["error"] and failed[0]["permanent"] == 1
    assert failed[0]["thumbnail"] == failed[0]["photo_id"]


def test_map_plugin_on_the_gallery(client):
    page = client.get("/catalog/gallery").text
    assert "datasette-cluster-map.js" in page
    assert 'DATASETTE_CLUSTER_MAP_LATITUDE_COLUMN = "latitude"' in page
    assert 'DATASETTE_CLUSTER_MAP_LONGITUDE_COLUMN = "longitude"' in page
    located = gallery(client, "&latitude__notblank=1")
    assert len(located) >= 5 and all(-90 <= r["latitude"] <= 90 for r in located)
    plugins = {p["name"] for p in client.json("/-/plugins.json")}
    assert "datasette-cluster-map" in plugins
    assert {"catalog.browse.plugin", "catalog.browse.guard"} <= plugins or "catalog" in plugins


def test_canned_queries_run(client):
    listed = {q["name"] for q in client.json("/catalog.json")["queries"]}
    assert set(QUERIES) <= listed
    results = {name: client.json(f"/catalog/{name}.json?_shape=objects")["rows"] for name in QUERIES}
    (dup,) = results["duplicates"]
    assert dup["copies"] == 2 and len(json.loads(dup["paths"])) == 2 and dup["thumbnail"]
    assert {r["status"] for r in results["not_analysed"]} == {"failed", "pending"}
    assert results["file_errors"] == []
    spend = results["spend_per_run"]
    assert [r["command"] for r in spend] == ["analyze", "analyze"]
    assert spend[-1]["analysed"] == 34 and spend[-1]["tokens"] == 0 and spend[-1]["requests"] == 0
    assert len(results["recently_added"]) == 36
    assert results["recently_added"][0]["path"].endswith("yellow_door.png")
    page = client.get("/catalog/duplicates").text
    assert 'class="catalog-thumb"' in page


def test_read_only(catalogue):
    before = hashlib.sha256(catalogue.read_bytes()).hexdigest()
    client = Client(catalogue, allow_sql=True)
    runs = client.json("/catalog/runs.json?_shape=objects")["rows"]
    # Arbitrary SQL, when allowed at all, is for reading only.
    for sql in ("INSERT INTO runs (command, started_at, status) VALUES ('x', 'y', 'ok')",
                "DELETE FROM photos", "UPDATE files SET status = 'missing'", "DROP VIEW gallery",
                "PRAGMA query_only = 0", "ATTACH DATABASE '/etc/hostname' AS h"):
        response = client.get(f"/catalog.json?sql={quote(sql)}")
        assert response.status_code == 400, sql
    assert client.json("/catalog.json?sql=SELECT+count(*)+AS+n+FROM+photos&_shape=array") == [{"n": 36}]
    client.close()
    # What a writable canned query, a plugin or Datasette 1.0's write API would do: the
    # database's write connection. It cannot write, lift query_only, or even after taking the
    # authoriser off and lifting query_only, write through mode=ro.
    # (num_sql_threads=0: the same connect(), without a write thread that never ends.)
    writer = Client(catalogue, settings={"num_sql_threads": 0})
    db = writer.ds.get_database("catalog")
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        writer.run(db.execute_write("DELETE FROM runs"))
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        writer.run(db.execute_write("PRAGMA query_only = 0"))

    def sneaky(conn):
        conn.set_authorizer(None)
        conn.execute("PRAGMA query_only = 0")
        with conn:
            conn.execute("DELETE FROM runs")

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        writer.run(db.execute_write_fn(sneaky))
    writer.close()
    reader = Client(catalogue)
    assert reader.json("/catalog/runs.json?_shape=objects")["rows"] == runs
    reader.close()
    assert hashlib.sha256(catalogue.read_bytes()).hexdigest() == before


def test_own_sql_is_off_by_default_ready_made_queries_work(client, catalogue):
    for url in ("/catalog.json?sql=select+1", "/catalog?sql=select+1",
                "/catalog/gallery.json?_where=1=1"):
        assert client.get(url).status_code == 403, url
    assert 'name="sql"' not in client.get("/catalog").text  # no SQL box on the database page
    assert all(client.get(f"/catalog/{name}.json").status_code == 200 for name in QUERIES)
    assert client.get("/catalog/gallery.json?_search=nikon").status_code == 200
    allowed = Client(catalogue, allow_sql=True)
    try:
        assert allowed.json("/catalog.json?sql=select+1+as+n&_shape=array") == [{"n": 1}]
    finally:
        allowed.close()


def test_fts3_tokenizer_is_not_callable(catalogue):
    """Its one-argument form returns a pointer into the process (an ASLR leak)."""
    client = Client(catalogue, allow_sql=True)
    try:
        for sql in ("select fts3_tokenizer('simple') as p", "select FTS3_Tokenizer('porter') as p",
                    "select fts3_tokenizer('evil', x'4141414141414141') as p"):
            response = client.get(f"/catalog.json?sql={quote(sql)}&_shape=array")
            assert response.status_code == 400 and "not authorized" in response.text, sql
        db = client.ds.get_database("catalog")
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            client.run(db.execute("select fts3_tokenizer('simple')"))
    finally:
        client.close()


ODD_SEARCHES = ['"', '""', '"golden', 'golden"', "NEAR(", "nikon AND", "OR", "*", "-", "-night",
                "sun'", "^nikon", "nikon:", "(", "a\x00b", "photo_text_fts MATCH 1"]


@pytest.mark.parametrize("query", ODD_SEARCHES)
def test_search_box_takes_any_text_as_catalog_search_does(client, catalogue, query):
    response = client.get(f"/catalog/gallery.json?_shape=objects&_size=max&_search={quote(query)}")
    assert response.status_code == 200, response.text
    conn = connect(catalogue)
    try:
        expected = {r["id"] for r in catalog_search(conn, query, limit=1000)}
    except SearchError:  # `catalog search` says there is nothing to look for: the box finds nothing
        expected = set()
    finally:
        conn.close()
    assert {r["photo_id"] for r in response.json()["rows"]} == expected
    assert client.get(f"/catalog/gallery?_search={quote(query)}").status_code == 200


def test_post_is_refused_cleanly(client):
    for path in ("/catalog/duplicates", "/catalog/gallery", "/catalog", "/catalog/duplicates.json"):
        response = client.run(client.ds.client.post(path, data={"x": "1"}))
        assert response.status_code == 405, path
        assert response.headers["allow"] == "GET, HEAD" and "read-only" in response.text


def failing_page_plugin() -> types.ModuleType:
    """A plugin with a page that fails as a bug would, holding a local the console must never show."""

    async def broken():
        private_local = "LOCAL-VALUE-9f3a"  # noqa: F841 (what rich's show_locals would print)
        raise RuntimeError("kaboom in the page")

    plugin = types.ModuleType("failing_page")
    plugin.register_routes = hookimpl(lambda: [(r"^/-/broken$", broken)])
    return plugin


def test_a_failing_page_shows_no_traceback_or_locals_anywhere(catalogue, capfd, caplog):
    """A bug: a plain 500 page and one log line; a 404 and a bad query: Datasette's page, a quiet console."""
    plugin = failing_page_plugin()
    pm.register(plugin, name="test-failing-page")
    client = Client(catalogue, allow_sql=True)
    try:
        capfd.readouterr()
        with caplog.at_level(logging.WARNING, logger="catalog.browse"):
            broken = client.get("/-/broken")
            missing = client.get("/catalog/no_such_table")
            missing_json = client.get("/catalog/no_such_table.json")
            bad_sql = client.get("/catalog.json?sql=select+nonsense+from")
    finally:
        client.close()
        pm.unregister(plugin)
    console = capfd.readouterr()
    assert broken.status_code == 500 and "Internal error" in broken.text
    assert "kaboom" not in broken.text and "LOCAL-VALUE" not in broken.text
    assert missing.status_code == 404 and "Table not found" in missing.text and "<h1>" in missing.text
    assert missing_json.status_code == 404 and missing_json.json()["ok"] is False
    assert bad_sql.status_code == 400 and bad_sql.json()["error"] == "incomplete input"
    for text in (console.out, console.err, caplog.text):
        assert "Traceback" not in text and "LOCAL-VALUE" not in text and "locals" not in text, text
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "internal error on GET /-/broken: RuntimeError: kaboom in the page"


def _script_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def test_content_security_policy_allows_exactly_the_pages_own_scripts(client):
    for url in ("/catalog/gallery", "/catalog/photos", "/catalog/duplicates", "/catalog", "/",
                "/catalog/gallery?_search=nikon", "/catalog/no-such-table"):
        response = client.get(url)
        policy = dict(part.strip().split(" ", 1) for part in
                      response.headers["content-security-policy"].split(";"))
        scripts = policy["script-src"].split()
        assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
        assert "'self'" in scripts and policy["object-src"] == "'none'"
        inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", response.text, re.S)
        assert inline and all(_script_hash(s) in scripts for s in inline), url
        assert "https://*.tile.openstreetmap.org" in policy["img-src"]  # the map's tiles
        assert response.headers["x-content-type-options"] == "nosniff"


def test_host_allow_list_on_a_real_server(catalogue, tmp_path):
    """DNS rebinding: a page on attacker.example whose name now points at this machine."""
    with catalog_serve(catalogue, tmp_path, "--allow-host", "photos.home.arpa") as (_, port, _log):
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                     "photos.home.arpa", f"photos.home.arpa:{port}"):
            assert request(port, "/catalog/gallery", host=host)[0] == 200, host
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}",
                     f"localhost.attacker.example:{port}", f"127.0.0.1:{port + 1}", "", "[::1",
                     f"evil@127.0.0.1:{port}"):
            status, _headers, body = request(port, "/catalog/gallery", host=host)
            assert status == 400 and "Host" in body and "<html" not in body, host
        assert request(port, "/-/thumbnails/x.jpg", host="attacker.example")[0] == 400


def _entry_point_path(tmp_path: Path) -> Path:
    """This tree's pyproject entry points, where importlib.metadata finds them (the shared
    venv's install may predate them); Datasette loads them as it loads any plugin."""
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    points = project["project"]["entry-points"]["datasette"]
    info = tmp_path / "entry" / "catalog_entry_points-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: catalog-entry-points\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[datasette]\n" + "".join(f"{name} = {target}\n" for name, target in points.items()))
    return info.parent


def test_plain_datasette_gets_the_same_rules_through_the_entry_points(catalogue, tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(_entry_point_path(tmp_path)),
                                          os.environ.get("PYTHONPATH", "")])}
    with serving(["datasette", "serve", str(catalogue)], tmp_path / "datasette.log", env=env) as (
            _, port, _log):
        status, headers, body = request(port, "/catalog/gallery?_search=nikon")
        assert status == 200 and "Gallery" in body and body.count('class="catalog-thumb"') == 2
        assert request(port, "/catalog/gallery?_search=" + quote('"'))[0] == 200
        assert "script-src 'self' 'sha256-" in headers["content-security-policy"]
        assert request(port, "/catalog.json?sql=select+1")[0] == 403
        assert request(port, "/catalog/duplicates", method="POST")[0] == 405
        assert request(port, "/catalog/gallery", host="attacker.example")[0] == 400
        status, _, body = request(port, "/catalog/duplicates.json?_shape=array")
        assert status == 200 and len(json.loads(body)) == 1
        thumbnail = json.loads(request(port, "/catalog/gallery.json?_shape=array&_size=1")[2])[0]
        assert request(port, f"/-/thumbnails/{thumbnail['thumbnail']}.jpg")[0] == 200


def test_not_immutable_shows_what_the_nightly_run_writes(client, catalogue, tmp_path):
    copy = tmp_path / "live.db"
    source = sqlite3.connect(catalogue)
    source.backup(target := sqlite3.connect(copy))
    source.close()
    target.close()
    live = Client(copy)
    try:
        before = len(live.json("/catalog/runs.json?_shape=objects")["rows"])
        writer = open_db(copy)  # the nightly run, while Datasette is serving
        writer.execute("INSERT INTO runs (command, started_at, status) VALUES ('scan', 'now', 'ok')")
        writer.conn.commit()
        writer.close()
        assert len(live.json("/catalog/runs.json?_shape=objects")["rows"]) == before + 1
    finally:
        live.close()


def test_serve_needs_a_catalogue(tmp_path):
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "serve"])
    assert result.exit_code == 1 and "no catalogue" in result.output
    assert "--host" in CliRunner().invoke(cli, ["serve", "--help"]).output


def test_serve_upgrades_an_older_catalogue_first(tmp_path):
    import sqlite_utils

    from catalog.browse.server import ensure_schema
    from catalog.schema import migrations

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m005_thumbnails_and_gallery")
    old.close()
    ensure_schema(path)
    tables = sqlite_utils.Database(path).table_names() + sqlite_utils.Database(path).view_names()
    assert {"thumbnails", "gallery"} <= set(tables)


def test_search_start_up_does_not_import_datasette():
    code = ("import sys; import catalog.cli; "
            "assert 'datasette' not in sys.modules and 'PIL' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)
