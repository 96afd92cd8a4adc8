"""The catalogue's read-only questions (catalog/queries.py), asked in-process of a scanned library."""

from __future__ import annotations

import re
import shutil

import pytest

from catalog.browse.metadata import QUERIES
from catalog.settings import Config
from catalog.errors import CatalogError
from catalog.queries import (catalogue_stats, duplicate_groups, duplicate_page, file_record, library_counts,
                             recent_runs)
from catalog.scan import scan


@pytest.fixture
def scanned(photos, db):
    scan(db, Config(), [photos], progress=False)
    return db


def test_stats_count_photos_files_formats_and_errors(scanned, photos):
    stats = catalogue_stats(scanned)
    assert stats["photos"] == 40 and stats["by_format"]["JPEG"] >= 30
    assert stats["duplicate_files"] == stats["files"] - stats["photos"] > 0
    assert stats["errors_by_kind"] == {"decompression_bomb": 2, "truncated": 2, "empty": 1, "not_an_image": 1}
    assert len(stats["errors"]) == 6 and stats["errors"] == sorted(stats["errors"], key=lambda e: e["path"])
    assert stats["missing"] == 0 and stats["bytes"] > 0
    assert {k: stats[k] for k in ("photos", "duplicate_files")} == library_counts(scanned)
    (photos / "real/DSCN0010.jpg").unlink()
    scan(scanned, Config(), [photos], progress=False)
    assert catalogue_stats(scanned)["missing"] == 1


def test_duplicate_groups_are_the_browsers_too(scanned, photos):
    groups = list(duplicate_groups(scanned))
    torcal = next(g for g in groups if str(photos / "real/el_torcal_rocks.jpg") in g["paths"])
    assert torcal["copies"] == 2 and torcal["paths"] == sorted(torcal["paths"])
    waste = [(g["copies"] - 1) * g["size"] for g in groups]
    assert waste == sorted(waste, reverse=True)
    canned = [dict(r) for r in scanned.query(QUERIES["duplicates"]["sql"])]
    assert [(r["photo_id"], r["copies"], r["bytes_each"]) for r in canned] == [
        (g["photo_id"], g["copies"], g["size"]) for g in groups]


def test_file_record_has_photo_copies_and_refuses_unknown_paths(scanned, photos, tmp_path):
    record = file_record(scanned, str(photos / "real/el_torcal_rocks.jpg"))
    assert record["photo"]["camera_make"] == "SONY" and "path_bytes" not in record["file"]
    assert record["copies"] == [str(photos / "real/dup/el_torcal_rocks.jpeg")]
    broken = [e["path"] for e in catalogue_stats(scanned)["errors"]][0]
    assert file_record(scanned, broken)["photo"] is None
    with pytest.raises(CatalogError, match="is not in the catalogue"):
        file_record(scanned, str(tmp_path / "unknown.jpg"))


def test_recent_runs_newest_first_with_counts(scanned, photos):
    scan(scanned, Config(), [photos], progress=False)
    runs = recent_runs(scanned, 5)
    assert [r["command"] for r in runs] == ["scan", "scan"] and runs[0]["id"] > runs[1]["id"]
    assert runs[0]["counts"]["unchanged"] == runs[1]["counts"]["new"] > 0
    assert len(recent_runs(scanned, 1)) == 1


def recount(db) -> dict:
    """The figures the maintained counters (m014) stand for, counted over every row."""
    by_status = dict(db.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())
    ok_files, ok_bytes = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE status = 'ok'").fetchone()
    by_format = {row[0] or "unknown": row[1] for row in db.execute(
        "SELECT p.format, COUNT(DISTINCT p.id) FROM photos p JOIN files f ON f.photo_id = p.id "
        "WHERE f.status = 'ok' GROUP BY p.format")}
    sets = {row[0]: (row[1], row[2]) for row in db.execute(
        "SELECT photo_id, COUNT(*), MAX(size) FROM files WHERE status = 'ok' GROUP BY photo_id HAVING COUNT(*) > 1")}
    return {"files_by_status": by_status, "files": ok_files, "bytes": ok_bytes, "by_format": by_format,
            "photos": sum(by_format.values()), "sets": sets}


def counted(db) -> dict:
    stats = catalogue_stats(db)
    groups, totals = duplicate_page(db, None)
    assert totals["sets"] == len(groups) and totals["files"] == sum(g["copies"] for g in groups)
    assert totals["wasted"] == sum((g["copies"] - 1) * g["size"] for g in groups)
    return {"files_by_status": stats["files_by_status"], "files": stats["files"], "bytes": stats["bytes"],
            "by_format": stats["by_format"], "photos": stats["photos"],
            "sets": {g["photo_id"]: (g["copies"], g["size"]) for g in groups}}


def test_kept_counts_match_a_recount_as_files_come_go_move_and_change(scanned, photos):
    """stats and duplicates read counters the writes keep (m014): after every kind of change a
    scan records they equal a count over every row."""
    assert counted(scanned) == recount(scanned) and recount(scanned)["sets"]
    real = photos / "real"
    shutil.copy(real / "landscape_1.jpg", real / "copy_a.jpg")  # a new duplicate set
    shutil.copy(real / "landscape_1.jpg", real / "copy_b.jpg")  # ... of three
    shutil.copy(real / "jolla.jpg", real / "jolla_copy.jpg")
    (real / "dup/el_torcal_rocks.jpeg").unlink()  # a set shrinks to one file: no longer a set
    (real / "DSCN0010.jpg").rename(real / "renamed.jpg")  # moved
    (real / "kodak-dc240.jpg").unlink()  # its photo is gone from the library
    scan(scanned, Config(), [photos], progress=False)
    after = recount(scanned)
    assert counted(scanned) == after
    assert after["sets"][next(iter(after["sets"]))][0] >= 2 and len(after["sets"]) == 2
    (real / "copy_b.jpg").write_bytes((real / "hopper.gif").read_bytes())  # content change: another photo
    (real / "jolla_copy.jpg").write_bytes((real / "jolla.jpg").read_bytes()[:-2000])  # now unreadable
    shutil.copy(real / "sony-d700.jpg", real / "kodak-dc240.jpg")  # a path comes back with other content
    scan(scanned, Config(), [photos], progress=False)
    assert counted(scanned) == recount(scanned)
    scanned.execute("UPDATE photos SET format = 'MPO' WHERE id = (SELECT photo_id FROM files "
                    "WHERE status = 'ok' ORDER BY path LIMIT 1)")
    scanned.execute("UPDATE files SET size = size + 100 WHERE status = 'ok'")  # write-back rewrote them
    scanned.execute("UPDATE files SET status = 'missing' WHERE photo_id = (SELECT photo_id FROM duplicate_sets "
                    "ORDER BY copies DESC LIMIT 1)")  # every copy of a set gone in one statement
    scanned.execute("DELETE FROM files WHERE path = (SELECT MIN(path) FROM files WHERE status = 'ok')")
    assert counted(scanned) == recount(scanned) and "MPO" in recount(scanned)["by_format"]


def test_stats_and_a_page_of_duplicates_read_no_whole_table(scanned):
    """At a million photos a pass over `files` or `photos` costs seconds: stats and the duplicates
    page read the counters, the duplicate sets' index and a few small ranges, never a whole table."""
    statements = []
    scanned.conn.set_trace_callback(statements.append)
    catalogue_stats(scanned)
    duplicate_page(scanned, 20)
    scanned.conn.set_trace_callback(None)
    plans = [(s, row[3]) for s in statements if s.lstrip().upper().startswith("SELECT")
             for row in scanned.execute(f"EXPLAIN QUERY PLAN {s}")]
    assert plans
    whole = [(s, plan) for s, plan in plans if re.match(r"SCAN (files|photos|f|p)\b", plan)]
    assert whole == []
