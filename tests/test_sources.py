"""Analysis sources: the migration of today's catalogues, one row per source, the merged cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from catalog.analysis_db import store_analysis
from catalog.analyzers import Analysis
from catalog.settings import Config
from catalog.db import open_db
from catalog.enrichers import Enrichment
from catalog.scan import scan
from catalog.search import connect, search
from catalog.sources import enricher_row, sources_of, store_rows

BEFORE = "38493e96e1d37ad713a6b024f38af7f380793d73"  # main before `analyses` (its last migration: m009)
ANALYSIS_COLUMNS = ("analysis_status", "attempts", "tags", "description", "objects", "dominant_color", "palette",
                    "scene", "mood", "safe_adult", "safe_violence", "shape", "provider", "model", "tokens_used",
                    "processing_time_ms", "analysed_at", "raw_response")
GPS = ["DSCN0010.jpg", "iphone_hdr_YES.jpg", "87_OSError.jpg", "landscape_1.jpg", "hopper.gif"]


def test_migration_moves_todays_analyses_into_rows_without_loss(photos, tmp_path, old_code):
    library = tmp_path / "lib"
    library.mkdir()
    for name in GPS:
        shutil.copy(photos / "real" / name, library / name)
    (library / "broken.jpg").write_bytes((photos / "real" / "DSCN0010.jpg").read_bytes()[:3000])
    db_path = tmp_path / "old.db"
    env = {**os.environ, "PYTHONPATH": str(old_code(BEFORE)), "CATALOG_DB": str(db_path)}
    for args in (["scan", library], ["analyze"]):  # today's code stores real offline analyses
        done = subprocess.run([sys.executable, "-m", "catalog", *map(str, args)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode in (0, 1), done.stderr
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        assert "analyses" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        before = {r["id"]: dict(r) for r in conn.execute(f"SELECT id, {', '.join(ANALYSIS_COLUMNS)} FROM photos")}
    assert sum(r["analysis_status"] == "done" for r in before.values()) == len(GPS)

    db = open_db(db_path)  # migrates
    after = {r["id"]: dict(r) for r in db.query(f"SELECT id, {', '.join(ANALYSIS_COLUMNS)} FROM photos")}
    assert after == before  # the photos' own columns are the cache: unchanged
    rows = {r["photo_id"]: r for r in db.query("SELECT * FROM analyses")}
    assert set(rows) == {i for i, r in before.items() if r["analysis_status"] == "done"}
    for photo_id, row in rows.items():
        old = before[photo_id]
        assert (row["source"], row["kind"], row["produced_at"]) == ("offline", "backend", old["analysed_at"])
        assert row["raw"] == old["raw_response"] and json.loads(row["raw"])
        for column in ("tags", "description", "objects", "dominant_color", "palette", "scene", "mood",
                       "safe_adult", "safe_violence", "shape", "provider", "model", "tokens_used",
                       "processing_time_ms"):
            assert row[column] == old[column], column
    # Search and the gallery still find them; the gallery has a place column.
    assert db.execute("SELECT COUNT(*) FROM gallery WHERE place IS NULL").fetchone()[0] == len(GPS)
    db.close()
    conn = connect(db_path)
    some_tag = json.loads(next(iter(rows.values()))["tags"])[0]
    assert search(conn, some_tag), some_tag
    assert search(conn, "DSCN0010")  # file names are still searched


def scanned(photos, tmp_path, names=GPS):
    library = tmp_path / "lib"
    library.mkdir()
    for name in names:
        shutil.copy(photos / "real" / name, library / name)
    db = open_db(tmp_path / "c.db")
    scan(db, Config(), [library], progress=False)
    return db, {name: db["files"].get(str(library / name))["photo_id"] for name in names}


def test_each_source_is_its_own_row_and_the_merge_reads_them_all(photos, tmp_path):
    db, ids = scanned(photos, tmp_path)
    photo = ids["DSCN0010.jpg"]
    store_analysis(db, photo, Analysis(tags=("Hills", "town"), description="old", provider="imgtags",
                                       model="v1", safe_adult="UNKNOWN"), source="imgtags")
    with db.atomic():
        store_rows(db, [
            enricher_row(photo, Enrichment("places", provider="reverse_geocode 1", model="GeoNames",
                                           tags=("arezzo", "tuscany", "italy", "hills"), place="Arezzo, Tuscany, Italy",
                                           city="Arezzo", region="Tuscany", country="Italy")),
            enricher_row(photo, Enrichment("safety", provider="nudenet 3", model="320n", safe_adult="VERY_UNLIKELY")),
        ])
    cached = db["photos"].get(photo)
    assert json.loads(cached["tags"]) == ["Hills", "town", "arezzo", "tuscany", "italy"]  # back-end first, no "hills"
    assert (cached["place"], cached["safe_adult"], cached["description"]) == (
        "Arezzo, Tuscany, Italy", "VERY_UNLIKELY", "old")  # UNKNOWN from the back-end: safety's answer
    # A better model for the back-end replaces its row only; the enrichers' rows stay.
    store_analysis(db, photo, Analysis(tags=("castle",), description="new", provider="imgtags", model="v2",
                                       safe_adult="UNLIKELY"), source="imgtags")
    rows = {r["source"]: r for r in sources_of(db, photo)}
    assert list(rows) == ["imgtags", "places", "safety"]
    assert (rows["imgtags"]["model"], rows["imgtags"]["tags"]) == ("v2", ["castle"])
    assert rows["safety"]["safe_adult"] == "VERY_UNLIKELY" and rows["places"]["city"] == "Arezzo"
    cached = db["photos"].get(photo)
    assert json.loads(cached["tags"]) == ["castle", "arezzo", "tuscany", "italy", "hills"]
    assert (cached["safe_adult"], cached["model"], cached["description"]) == ("UNLIKELY", "v2", "new")
    assert db.execute("SELECT COUNT(*) FROM analyses WHERE photo_id = ?", [photo]).fetchone()[0] == 3
    db.close()
    conn = connect(tmp_path / "c.db")
    assert [r["id"] for r in search(conn, "arezzo")] == [photo]
    assert search(conn, "town") == []  # the stale back-end tag is gone from search too


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_writeback_takes_every_source_and_records_its_provenance(photos, tmp_path, mode, exiftool):
    """Keywords from all sources; catalog:Sources says who made them; a better model replaces only
    its own stale keywords, never the user's."""
    from catalog.settings import WritebackSettings
    from catalog.writeback.stage import writeback

    library = tmp_path / "lib"
    library.mkdir()
    photo_path = library / "DSCN0010.jpg"
    shutil.copy(photos / "real" / "DSCN0010.jpg", photo_path)
    exiftool.run("-q", "-overwrite_original", "-XMP-dc:Subject=Family", "-XMP-dc:Subject=Town", photo_path)
    db = open_db(tmp_path / "c.db")
    config = Config(writeback=WritebackSettings(mode=mode))
    scan(db, config, [library], progress=False)
    photo = db["files"].get(str(photo_path))["photo_id"]
    store_analysis(db, photo, Analysis(tags=("hills", "town"), provider="imgtags", model="v1"), source="imgtags")
    with db.atomic():
        store_rows(db, [enricher_row(photo, Enrichment("places", provider="reverse_geocode 1.6", model="GeoNames",
                                                       tags=("arezzo", "italy"), place="Arezzo, Tuscany, Italy"))])
    target = photo_path if mode == "embed" else library / "DSCN0010.jpg.xmp"

    def written():
        result = writeback(db, config, progress=False)
        assert result.skipped == 0, result.changes
        if mode == "embed":
            scan(db, config, [library], progress=False)  # the ledger follows our own write
        facts = exiftool.read(target)[target.resolve()]
        return exiftool.listed(facts.get("XMP-dc:Subject")), exiftool.listed(facts.get("XMP-catalog:Sources"))

    subject, provenance = written()
    assert subject == ["Family", "Town", "hills", "arezzo", "italy"]  # "town" is the user's "Town"
    first = {r["source"]: r["produced_at"] for r in sources_of(db, photo)}
    assert provenance == [f"imgtags; imgtags v1; {first['imgtags']}; hills, town",
                          f"places; reverse_geocode 1.6 GeoNames; {first['places']}; arezzo, italy"]
    # A better model: its stale keyword goes, the user's stay, the places keywords stay.
    store_analysis(db, photo, Analysis(tags=("castle", "town"), provider="imgtags", model="v2"), source="imgtags")
    subject, provenance = written()
    assert subject == ["Family", "Town", "arezzo", "italy", "castle"]
    now = {r["source"]: r["produced_at"] for r in sources_of(db, photo)}
    assert now["imgtags"] > first["imgtags"] and now["places"] == first["places"]
    assert provenance[0] == f"imgtags; imgtags v2; {now['imgtags']}; castle, town"
    assert written() == (subject, provenance)  # idempotent
    db.close()


def test_catalog_enrichers_overrides_the_list_for_one_run(monkeypatch):
    from catalog.config import load_config
    from catalog.errors import ConfigError

    monkeypatch.setenv("CATALOG_ENRICHERS", " places, text ")
    assert load_config().analysis.enrichers == ("places", "text")
    monkeypatch.setenv("CATALOG_ENRICHERS", "")
    assert load_config().analysis.enrichers == ()
    monkeypatch.setenv("CATALOG_ENRICHERS", "places,ocr")
    with pytest.raises(ConfigError, match="CATALOG_ENRICHERS: unknown 'ocr'"):
        load_config()
