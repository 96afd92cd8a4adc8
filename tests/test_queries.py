"""The catalogue's read-only questions (catalog/queries.py), asked in-process of a scanned library."""

from __future__ import annotations

import pytest

from catalog.browse.metadata import QUERIES
from catalog.settings import Config
from catalog.errors import CatalogError
from catalog.queries import catalogue_stats, duplicate_groups, file_record, library_counts, recent_runs
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
