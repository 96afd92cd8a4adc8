"""Browsing in Datasette: the gallery, facets, search, thumbnails, map, canned queries, read-only."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from catalog.analyze import analyze
from catalog.browse.metadata import QUERIES, build_metadata
from catalog.browse.server import make_datasette
from catalog.cli import cli
from catalog.config import Config
from catalog.db import open_db
from catalog.errors import AnalysisFailed
from catalog.scan import scan
from catalog.search import connect
from catalog.search import search as catalog_search
from catalog.thumbnails import make_thumbnail

SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "photos" / "real"
SHOWN_TABLES = ("gallery", "photos", "files", "runs", "thumbnails")


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
            summary = analyze(db, Config(), progress=False)
            assert (summary.analyzer, summary.analysed, summary.failed) == ("offline", 34, 0)
            scan(db, Config(), [library, extra / "refused"], progress=False)
            assert analyze(db, Config(), analyzer=FailingAnalyzer(), progress=False).failed == 1
            scan(db, Config(), [library, extra / "refused", extra / "waiting"], progress=False)
    finally:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
    return path


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    return build_catalogue(tmp_path_factory.mktemp("browse"))


class Client:
    """Datasette's own test client, driven from synchronous tests."""

    def __init__(self, path: Path, **settings):
        self.ds = make_datasette(path, settings=settings)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.ds.invoke_startup())

    def get(self, url: str):
        return self.loop.run_until_complete(self.ds.client.get(url))

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


def test_failed_analysis_keeps_its_thumbnail(client):
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
    assert {"datasette-cluster-map", "catalog.browse.plugin"} <= plugins


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


def test_read_only(client, catalogue):
    before = hashlib.sha256(catalogue.read_bytes()).hexdigest()
    runs = client.json("/catalog/runs.json?_shape=objects")["rows"]
    # Arbitrary SQL is for reading only.
    for sql in ("INSERT INTO runs (command, started_at, status) VALUES ('x', 'y', 'ok')",
                "DELETE FROM photos", "UPDATE files SET status = 'missing'", "DROP VIEW gallery",
                "PRAGMA query_only = 0"):
        response = client.get(f"/catalog.json?sql={sql}")
        assert response.status_code == 400, sql
    assert client.json("/catalog.json?sql=SELECT+count(*)+AS+n+FROM+photos&_shape=array") == [{"n": 36}]
    # What a writable canned query, a plugin or Datasette 1.0's write API would do: the
    # database's write connection. It cannot write either, even after lifting query_only.
    # (num_sql_threads=0: the same connect(), without a write thread that never ends.)
    writer = Client(catalogue, num_sql_threads=0)
    db = writer.ds.get_database("catalog")
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        writer.run(db.execute_write("DELETE FROM runs"))

    def sneaky(conn):
        conn.execute("PRAGMA query_only = 0")
        with conn:
            conn.execute("DELETE FROM runs")

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        writer.run(db.execute_write_fn(sneaky))
    writer.close()
    assert client.json("/catalog/runs.json?_shape=objects")["rows"] == runs
    assert hashlib.sha256(catalogue.read_bytes()).hexdigest() == before


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
    from catalog.db import migrations

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
