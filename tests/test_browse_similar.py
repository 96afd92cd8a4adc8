"""Browsing near-duplicates and bursts in Datasette: groups side by side, the keeper first (issue 13)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from similar_pairs import COPIES, EDITS, variants
from test_browse import Client
from test_similar_commands import burst

from catalog.browse.metadata import QUERIES, build_metadata
from catalog.cli import cli

ORIGINALS = ("DSCN0010.jpg", "el_torcal_rocks.jpg")


def invoke(database: Path, *args: str):
    result = CliRunner().invoke(cli, ["--db", str(database), *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, shared_photos):
    """Two pictures with copies and an edit each, a burst; scanned, with thumbnails but one."""
    base = tmp_path_factory.mktemp("browse-similar")
    root = base / "library"
    for name in ORIGINALS:
        folder = root / Path(name).stem
        folder.mkdir(parents=True)
        shutil.copy(shared_photos / "real" / name, folder / name)
        variants(shared_photos / "real" / name, folder, {k: COPIES[k] for k in ("resize50", "png")})
        variants(shared_photos / "real" / name, folder, {"crop3": EDITS["crop3"]})
    burst(shared_photos / "real" / "kodak-dc240.jpg", root / "burst")
    database = base / "catalog.db"
    invoke(database, "scan", str(root))
    invoke(database, "thumbnails")
    with sqlite3.connect(database) as conn:  # one photo still waiting for its thumbnail
        conn.execute("DELETE FROM thumbnails WHERE photo_id = (SELECT photo_id FROM files WHERE name = ?)",
                     ["el_torcal_rocks-png.png"])
    return database, root


@pytest.fixture
def client(catalogue):
    c = Client(catalogue[0])
    yield c
    c.close()


def rows(client, name: str) -> list[dict]:
    return client.json(f"/catalog/{name}.json?_shape=objects&_size=max")["rows"]


def test_near_duplicates_query_shows_each_group_keeper_first(client):
    groups = rows(client, "near_duplicates")
    assert len(groups) == len(ORIGINALS)
    for group in groups:
        paths, ids = json.loads(group["paths"]), json.loads(group["photo_ids"])
        relations, thumbs = json.loads(group["relations"]), json.loads(group["thumbnails"])
        assert Path(paths[0]).name in ORIGINALS and relations[0] is None  # the keeper first
        assert sorted(relations[1:]) == ["copy", "copy", "edit"] and group["photos"] == 4
        assert [t for t in thumbs if t] == [i for i, t in zip(ids, thumbs) if t]  # same order as the ids
    torcal = next(g for g in groups if json.loads(g["paths"])[0].endswith("el_torcal_rocks.jpg"))
    assert json.loads(torcal["thumbnails"]).count(None) == 1  # the one without a thumbnail yet


def test_near_duplicates_page_shows_thumbnails_side_by_side(client):
    page = client.get("/catalog/near_duplicates")
    assert page.status_code == 200 and "Near-duplicates" in page.text
    assert page.text.count('class="catalog-strip"') == len(ORIGINALS)
    assert page.text.count('class="catalog-missing"') == 1
    for group in rows(client, "near_duplicates"):  # the thumbnails in the group's order, keeper first
        shown = [i for i in json.loads(group["thumbnails"]) if i]
        positions = [page.text.index(f"/-/thumbnails/{i}.jpg") for i in shown]
        assert positions == sorted(positions)
    for photo_id in re.findall(r'/-/thumbnails/([0-9a-f]+)\.jpg', page.text):
        assert client.get(f"/-/thumbnails/{photo_id}.jpg").status_code == 200


def test_bursts_query_and_the_view(client):
    (shots,) = rows(client, "bursts")
    assert shots["photos"] == 3
    assert [Path(p).name for p in json.loads(shots["paths"])] == ["burst_0.jpg", "burst_1.jpg", "burst_2.jpg"]
    assert client.get("/catalog/bursts").text.count('class="catalog-strip"') == 1
    view = client.json("/catalog/similar_groups.json?_shape=objects&_facet=kind")
    assert {r["kind"] for r in view["rows"]} == {"near", "burst"}
    page = client.get("/catalog/similar_groups").text
    assert page.count('class="catalog-strip"') == 3 and "Similar photos" in page
    assert {"near_duplicates", "bursts"} <= set(QUERIES)


def test_metadata_describes_the_group_tables(catalogue):
    tables = build_metadata()["databases"]["catalog"]["tables"]
    conn = sqlite3.connect(catalogue[0])
    for name in ("similar_groups", "photo_groups"):
        assert tables[name]["title"] and tables[name]["description"]
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
        assert columns and set(columns) <= set(tables[name]["columns"]), name
    analyses = [row[1] for row in conn.execute("PRAGMA table_info(analyses)")]
    assert "copied_from" in analyses and set(analyses) <= set(tables["analyses"]["columns"])


def test_the_groups_follow_the_library(catalogue, tmp_path):
    """A rescan after a copy is deleted shows the group without it: the browser reads what the scan stored."""
    database, root = catalogue
    work = tmp_path / "catalog.db"
    shutil.copy(database, work)
    (root / "DSCN0010" / "DSCN0010-png.png").rename(tmp_path / "moved-away.png")
    try:
        invoke(work, "scan", str(root))
    finally:
        (tmp_path / "moved-away.png").rename(root / "DSCN0010" / "DSCN0010-png.png")
    c = Client(work)
    try:
        groups = rows(c, "near_duplicates")
        dscn = next(g for g in groups if json.loads(g["paths"])[0].endswith("DSCN0010.jpg"))
        assert dscn["photos"] == 3 and not any(p.endswith("-png.png") for p in json.loads(dscn["paths"]))
    finally:
        c.close()
