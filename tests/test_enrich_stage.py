"""The analysis stage with its enrichers, end to end through the real CLI on real GPS photos."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from catalog.enrichers import REGISTRY, unavailable

pytestmark = pytest.mark.skipif(bool(unavailable(REGISTRY)), reason="; ".join(unavailable(REGISTRY).values()))
PHOTOS = ["DSCN0010.jpg", "87_OSError.jpg", "iphone_hdr_YES.jpg", "hopper.gif", "landscape_1.jpg"]


def sources(db_path, name) -> dict[str, dict]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return {r["source"]: dict(r) for r in conn.execute(
            "SELECT a.* FROM analyses a JOIN files f ON f.photo_id = a.photo_id WHERE f.name = ?", [name])}


def test_enrichers_run_on_every_analysed_photo_and_each_source_is_replaced_alone(photos, tmp_path, run_catalog):
    library = tmp_path / "lib"
    library.mkdir()
    for name in PHOTOS:
        shutil.copy(photos / "real" / name, library / name)
    db = tmp_path / "c.db"
    env = {"CATALOG_DB": str(db), "CATALOG_ENRICHERS": ",".join(REGISTRY)}
    assert run_catalog("scan", library, env=env).returncode == 0
    first = run_catalog("analyze", "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["analysed"], summary["enriched"]) == (5, 5)
    arezzo = sources(db, "DSCN0010.jpg")
    assert set(arezzo) == {"offline", *REGISTRY}
    assert (arezzo["places"]["place"], arezzo["places"]["kind"]) == ("Arezzo, Tuscany, Italy", "enricher")
    assert arezzo["faces"]["faces"] == 0 and arezzo["safety"]["safe_adult"] == "VERY_UNLIKELY"
    assert "GeoNames" in arezzo["places"]["model"] and arezzo["places"]["provider"].startswith("reverse_geocode")
    assert sources(db, "hopper.gif")["faces"]["faces"] == 1
    assert "bottom" in sources(db, "landscape_1.jpg")["text"]["text"].split("\n")
    assert sources(db, "iphone_hdr_YES.jpg")["places"]["city"] == "Madrid"

    shown = run_catalog("show", library / "DSCN0010.jpg", env=env)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if "source places" in x)
    assert "GeoNames" in line and arezzo["places"]["produced_at"] in line and "arezzo" in line
    for query, expected in (("arezzo", "DSCN0010.jpg"), ("bottom", "landscape_1.jpg"), ("portrait", "hopper.gif"),
                            ("madrid", "iphone_hdr_YES.jpg")):
        found = run_catalog("search", query, env=env)
        assert found.stdout.splitlines()[0].startswith(str(library / expected)), (query, found.stdout)

    # Only the back-end's row is replaced; the enrichers' rows stay as they were and do not run again.
    again = run_catalog("analyze", "--analyzer", "offline", "--reanalyze", library / "DSCN0010.jpg", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["analysed"], json.loads(again.stdout)["enriched"]) == (1, 0)
    after = sources(db, "DSCN0010.jpg")
    assert after["offline"]["produced_at"] > arezzo["offline"]["produced_at"]
    assert all(after[n] == arezzo[n] for n in REGISTRY)
    # An enricher by name: only its row.
    dry = run_catalog("analyze", "--analyzer", "places", "--reanalyze", "--dry-run", library / "DSCN0010.jpg", env=env)
    assert "Would run the places enricher on 1 analysed photos" in dry.stdout, dry.stdout + dry.stderr
    places = run_catalog("analyze", "--analyzer", "places", "--reanalyze", library / "DSCN0010.jpg", "--json", env=env)
    assert places.returncode == 0, places.stderr
    assert json.loads(places.stdout)["enriched"] == 1
    last = sources(db, "DSCN0010.jpg")
    assert last["places"]["produced_at"] > after["places"]["produced_at"] and last["places"]["city"] == "Arezzo"
    assert all(last[n] == after[n] for n in ("offline", "text", "safety", "faces"))
