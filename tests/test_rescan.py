"""A rescan of a library of many folders: nothing opened, nothing rewritten, and what went is still noticed."""

from __future__ import annotations

import os
import shutil

from catalog.db import open_db
from catalog.queries import file_row
from catalog.scan import scan
from catalog.settings import Config
from file_audit import opened_under

FOLDERS = 30  # 3 trips x 10 days, 4 photos and a note in each
PER_FOLDER = 4


def build_library(root, shared_photos):
    """Nested folders of photos (copies of one real JPEG: duplicates are still files of their own)."""
    source = shared_photos / "real" / "jolla.jpg"
    for trip in range(FOLDERS // 10):
        for day in range(10):
            folder = root / f"trip {trip}" / f"day {day:02d}"
            folder.mkdir(parents=True)
            for n in range(PER_FOLDER):
                shutil.copy2(source, folder / f"IMG_{n:04d}.jpg")
            (folder / "notes.txt").write_text("not a photo")
    return root


def files(db):
    return [tuple(r) for r in db.execute("SELECT * FROM files ORDER BY path").fetchall()]


def folders_seen(db):
    return dict(db.execute("SELECT path, last_seen FROM folders").fetchall())


def test_rescan_of_many_folders_opens_no_file_and_rewrites_no_file_row(tmp_path, db, shared_photos):
    root = build_library(tmp_path / "lib", shared_photos)
    first = scan(db, Config(), [root], progress=False)
    assert first.new == FOLDERS * PER_FOLDER and first.errors == 0
    before = files(db)
    with opened_under(root) as (opened, listed):
        again = scan(db, Config(), [root], progress=False)
    assert opened == []  # not one byte of a photo (nor of the notes) read
    assert len(listed) == 1 + 3 + FOLDERS  # the root, the trips, the days: each listed once
    assert (again.unchanged, again.new, again.changed, again.missing, again.bytes_hashed) == (120, 0, 0, 0, 0)
    # One row per folder says when it was listed; not one file row is written.
    assert files(db) == before
    seen = folders_seen(db)
    assert len(seen) == FOLDERS and len(set(seen.values())) == 1
    (now,) = set(seen.values())
    assert now > before[0][11]  # later than the first scan (files.first_seen)
    # A file was last found when its folder was.
    assert file_row(db, str(root / "trip 1" / "day 03" / "IMG_0002.jpg"))["last_seen"] == now


def test_files_and_folders_gone_are_missing_since_the_last_listing(tmp_path, db, shared_photos):
    root = build_library(tmp_path / "lib", shared_photos)
    scan(db, Config(), [root], progress=False)
    scan(db, Config(), [root], progress=False)
    (listed,) = set(folders_seen(db).values())
    (root / "trip 0" / "day 01" / "IMG_0001.jpg").unlink()
    shutil.rmtree(root / "trip 2" / "day 05")
    shutil.rmtree(root / "trip 1")  # a folder of folders
    summary = scan(db, Config(), [root], progress=False)
    assert summary.missing == 1 + PER_FOLDER + 10 * PER_FOLDER
    assert summary.unchanged == (FOLDERS - 11) * PER_FOLDER - 1
    for gone in ("trip 0/day 01/IMG_0001.jpg", "trip 2/day 05/IMG_0000.jpg", "trip 1/day 09/IMG_0003.jpg"):
        row = file_row(db, str(root / gone))
        assert row["status"] == "missing" and row["missing_since"] > listed
        assert row["last_seen"] == listed  # the scan before: the last that found it
    kept = file_row(db, str(root / "trip 0" / "day 01" / "IMG_0002.jpg"))
    assert kept["status"] == "ok" and kept["last_seen"] > listed
    # The missing files stay missing, and a photo put back untouched is present again, unread.
    assert scan(db, Config(), [root], progress=False).missing == 0
    shutil.copy2(shared_photos / "real" / "jolla.jpg", root / "trip 0" / "day 01" / "IMG_0001.jpg")
    back = scan(db, Config(), [root], progress=False)
    assert (back.revived, back.new, back.missing, back.bytes_hashed) == (1, 0, 0, 0)  # same size and mtime
    assert file_row(db, str(root / "trip 0" / "day 01" / "IMG_0001.jpg"))["status"] == "ok"


def test_a_catalogue_from_before_folders_gets_them_and_rescans_unchanged(tmp_path, shared_photos):
    root = build_library(tmp_path / "lib", shared_photos)
    path = tmp_path / "old.db"
    db = open_db(path)
    scan(db, Config(), [root], progress=False)
    # As the catalogue was before migration m013: no folders table, last_seen on every file.
    with db.atomic():
        db.execute("DROP TABLE folders")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm013_folders_seen'")
    db.close()
    db = open_db(path)
    try:
        assert len(folders_seen(db)) == FOLDERS
        summary = scan(db, Config(), [root], progress=False)
        assert (summary.unchanged, summary.missing, summary.new) == (FOLDERS * PER_FOLDER, 0, 0)
        shutil.rmtree(root / "trip 0")
        assert scan(db, Config(), [root], progress=False).missing == 10 * PER_FOLDER
    finally:
        db.close()


def test_the_walks_quick_name_tests_agree_with_fnmatch_and_splitext():
    """The walk tests every name of the library: its cheaper tests must say what the slow ones say."""
    import fnmatch
    import itertools

    from catalog.walk import _image_name, _matcher

    patterns = ['.*', '@eaDir', 'lost+found', '.Trash-*', '*.tmp', '*~', 'a*b', '*', 'x?y', '[ab]*', 'ab*', 'ab?',
                '*b', '*[*', '']
    names = ['.hidden', '@eaDir', 'x.tmp', 'a~', 'lost+found', '.Trash-1000', 'IMG_0001.jpg', 'ab', 'abc', 'axb',
             'xzy', 'b', '', '*', '[ab]', 'a*b', 'x.TMP', 'cb', '.jpg', '..jpg', '.a.jpg', 'a..JPG', 'jpg', 'a.jpgx']
    for chosen in itertools.permutations(patterns, 3):
        excluded = _matcher(chosen)
        for name in names:
            assert bool(excluded(name)) == any(fnmatch.fnmatchcase(name, p) for p in chosen), (chosen, name)
    extensions = (".jpg", ".png", ".tar.gz")
    image_name = _image_name(extensions)
    for name in names + ["a.tar.gz", "b.gz", "c.PNG"]:
        assert image_name(name) == (os.path.splitext(name)[1].lower() in extensions), name
