"""Regrouping a few changed photos gives exactly the groups and numbering a full regroup gives (issue 14)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest

from catalog.db import open_db
from catalog.similar.browsing import refresh_groups, regroup_all, regroup_changed
from catalog.similar.fingerprint import to_db
from catalog.similar.groups import bursts, near_groups

CAMERAS = ("Canon EOS R6", "Apple iPhone 12", "SONY ILCE-7M3")
SHAPES = ((4000, 3000), (3000, 4000), (1920, 1080))


def _flip(h: int, bits: int, rng: random.Random) -> int:
    for b in rng.sample(range(64), bits):
        h ^= 1 << b
    return h


class Library:
    """A catalogue of synthetic photos (fingerprints and facts, one file each): pictures with
    copies and edits a few bits apart, bursts a second apart, and unrelated photos."""

    def __init__(self, path, seed: int):
        self.db, self.rng, self.n = open_db(path), random.Random(seed), 0
        self.pictures: list[dict] = []

    def photo(self, like: dict | None = None, *, bits: int = 0, tone: int = 0, seconds: int = 0) -> str:
        rng = self.rng
        if like is None:
            w, h = rng.choice(SHAPES)
            like = {"phash": rng.getrandbits(64), "width": w, "height": h, "tone": rng.getrandbits(24),
                    "detail": rng.randbytes(256), "camera_make": rng.choice(CAMERAS),
                    "taken_at": f"2021-0{rng.randint(1, 3)}-1{rng.randint(0, 2)}T{rng.randint(6, 19):02}:"
                                f"{rng.randint(0, 59):02}:{rng.randint(0, 50):02}"}
        self.n += 1
        photo_id = f"{self.n:04d}{rng.getrandbits(32):08x}"
        taken = (datetime.fromisoformat(like["taken_at"]) + timedelta(seconds=seconds)).isoformat()
        row = {"id": photo_id, "format": "JPEG", "width": like["width"], "height": like["height"],
               "taken_at": taken, "camera_make": like["camera_make"], "first_seen": "2024-01-01",
               "phash": to_db(_flip(like["phash"], bits, rng)), "aspect": like["width"] / like["height"],
               "tone": (like["tone"] + tone) & 0xFFFFFF, "detail": like["detail"]}
        self.db["photos"].insert(row)
        self.pictures.append({**like, "phash": row["phash"] % 2**64, "taken_at": taken})  # the next may drift on
        self.db["files"].insert({"path": f"/lib/{photo_id}.jpg", "root": "/lib", "folder": "/lib",
                                 "name": f"{photo_id}.jpg", "photo_id": photo_id, "size": 1000, "mtime_ns": 1,
                                 "status": "ok", "first_seen": "2024-01-01", "last_seen": "2024-01-01"})
        return photo_id

    def related(self) -> str:
        """A copy, an edit or the next burst frame of an existing picture."""
        like = self.rng.choice(self.pictures)
        kind = self.rng.choice(("copy", "edit", "burst"))
        if kind == "copy":
            return self.photo(like, bits=self.rng.randint(0, 4))
        if kind == "edit":
            return self.photo(like, bits=self.rng.randint(2, 7), tone=0x101010)
        return self.photo(like, bits=self.rng.randint(3, 12), seconds=self.rng.randint(1, 6))

    def present(self) -> list[str]:
        return [i for (i,) in self.db.execute("SELECT photo_id FROM files WHERE status = 'ok'").fetchall()]

    def listing(self) -> list[tuple]:
        """What the browser shows: each group's photos and relations, in the listing's order."""
        return self.db.execute("SELECT kind, listed, photo_ids, relations FROM similar_groups "
                               "ORDER BY kind, listed").fetchall()

    def mutate(self, changes: int) -> None:
        """Add, remove, bring back and alter photos, `changes` times."""
        rng, db = self.rng, self.db
        for _ in range(changes):
            what = rng.choice(("new", "related", "related", "gone", "back", "refingerprint", "redate", "reday"))
            ids = self.present()
            if what == "new":
                self.photo()
            elif what == "related":
                self.related()
            elif what == "gone" and ids:
                db.execute("UPDATE files SET status = 'missing' WHERE photo_id = ?", [rng.choice(ids)])
            elif what == "back":
                db.execute("UPDATE files SET status = 'ok' WHERE rowid IN "
                           "(SELECT rowid FROM files WHERE status = 'missing' ORDER BY random() LIMIT 1)")
            elif what == "refingerprint" and ids:
                victim = rng.choice(ids)
                (h,) = db.execute("SELECT phash FROM photos WHERE id = ?", [victim]).fetchone()
                db.execute("UPDATE photos SET phash = ? WHERE id = ?", [to_db(_flip(h % 2**64, rng.randint(1, 9), rng)),
                                                                          victim])
            elif what == "redate" and ids:
                db.execute("UPDATE photos SET taken_at = substr(taken_at, 1, 17) || printf('%02d', ?) WHERE id = ?",
                           [rng.randint(0, 59), rng.choice(ids)])
            elif what == "reday" and ids:  # its clock was wrong: another day, often out of a burst
                shots = [i for (i,) in db.execute("SELECT photo_id FROM photo_groups WHERE kind = 'burst'")]
                db.execute("UPDATE photos SET taken_at = substr(taken_at, 1, 8) || printf('%02d', ?) "
                           "|| substr(taken_at, 11) WHERE id = ?", [rng.randint(13, 14), rng.choice(shots or ids)])
        db.conn.commit()


@pytest.mark.parametrize("seed", range(6))
def test_incremental_regroup_equals_full_regroup(tmp_path, seed):
    """Random libraries, rounds of a few additions, removals and changes: the groups kept a few
    at a time are the groups, and the numbers, regrouping everything gives."""
    lib = Library(tmp_path / "catalog.db", seed)
    for _ in range(120):
        lib.photo()
    for _ in range(160):
        lib.related()
    refresh_groups(lib.db)  # the first time: everything
    assert lib.db.execute("SELECT COUNT(*) FROM group_changes").fetchone() == (0,)
    assert lib.listing(), "the library has groups"
    for _ in range(8):
        lib.mutate(lib.rng.randint(1, 6))
        (upto,) = lib.db.execute("SELECT MAX(rowid) FROM group_changes").fetchone()
        if upto is None:
            continue
        regroup_changed(lib.db, upto)
        incremental = lib.listing()
        regroup_all(lib.db)
        assert incremental == lib.listing()
        assert [[c.id for c, _ in g] for g in near_groups(lib.db)] == [
            json.loads(ids) for kind, _, ids, _ in lib.listing() if kind == "near"]
        assert len(bursts(lib.db)) == sum(kind == "burst" for kind, *_ in lib.listing())


def test_nothing_noted_nothing_regrouped(tmp_path):
    """With no change noted, refresh keeps the stored groups as they are and reads no fingerprint."""
    lib = Library(tmp_path / "catalog.db", 1)
    for _ in range(30):
        lib.related() if lib.pictures else lib.photo()
    refresh_groups(lib.db)
    before = lib.listing()
    lib.db.execute("UPDATE files SET last_seen = '2024-02-02'")  # a no-change rescan's writes
    lib.db.conn.commit()
    assert lib.db.execute("SELECT COUNT(*) FROM group_changes").fetchone() == (0,)
    assert refresh_groups(lib.db) == {"near_groups": sum(k == "near" for k, *_ in before),
                                      "bursts": sum(k == "burst" for k, *_ in before)}
    assert lib.listing() == before


def test_a_scan_regroups_only_the_groups_its_changes_touch(tmp_path, shared_photos):
    """`catalog scan` after a copy is added and a file removed: the touched groups are made again
    (new ids), the untouched one keeps its id, and the listing is what a full regroup gives."""
    import shutil

    from click.testing import CliRunner
    from similar_pairs import COPIES, variants

    from catalog.cli import cli

    root = tmp_path / "library"
    for name in ("DSCN0010.jpg", "el_torcal_rocks.jpg", "canon_hdr_NO.jpg"):
        folder = root / name.split(".")[0]
        folder.mkdir(parents=True)
        shutil.copy(shared_photos / "real" / name, folder / name)
        variants(shared_photos / "real" / name, folder, {"resize50": COPIES["resize50"]})
    database = tmp_path / "catalog.db"

    def scan():
        result = CliRunner().invoke(cli, ["--db", str(database), "scan", str(root)])
        assert result.exit_code == 0, result.output

    def ids(db):
        return {json.loads(p)[0]: n for n, p in db.execute(
            "SELECT group_no, json_group_array(photo_id) FROM (SELECT * FROM photo_groups WHERE kind = 'near' "
            "ORDER BY group_no, position) GROUP BY group_no").fetchall()}

    scan()
    db = open_db(database)
    before = ids(db)
    assert len(before) == 3
    variants(shared_photos / "real" / "DSCN0010.jpg", root / "DSCN0010", {"png": COPIES["png"]})
    next((root / "canon_hdr_NO").glob("*resize50*")).unlink()
    scan()
    after = ids(db)
    assert db.execute("SELECT COUNT(*) FROM group_changes").fetchone() == (0,)
    kept = [k for k in before if before[k] == after.get(k)]
    assert len(kept) == 1 and len(after) == 2  # el_torcal's group untouched; canon's gone; DSCN0010's anew
    shown = "SELECT kind, listed, photos, thumbnails, paths, relations, photo_ids FROM similar_groups ORDER BY kind, listed"
    listing = db.execute(shown).fetchall()
    regroup_all(db)
    assert db.execute(shown).fetchall() == listing


def test_an_upgraded_catalogue_lists_the_groups_it_stored_in_order(tmp_path):
    """A catalogue whose groups were stored before m016 (numbered, without `listed`): after the
    upgrade they list in the order a regroup gives, with nothing regrouped."""
    import sqlite_utils

    from catalog.schema import migrations

    path = tmp_path / "catalog.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m016_incremental_groups")
    lib = Library.__new__(Library)
    lib.db, lib.rng, lib.n, lib.pictures = old, random.Random(3), 0, []
    for _ in range(60):
        lib.photo()
    for _ in range(90):
        lib.related()
    rows = [{"kind": "near", "group_no": n, "position": p, "photo_id": c.id, "relation": said}
            for n, group in enumerate(near_groups(old), 1) for p, (c, said) in enumerate(group)]
    rows += [{"kind": "burst", "group_no": n, "position": p, "photo_id": c.id, "relation": None}
             for n, run in enumerate(bursts(old), 1) for p, c in enumerate(run)]
    old["photo_groups"].insert_all(rows)
    old.conn.close()
    db = open_db(path)
    shown = "SELECT kind, listed, photo_ids, relations FROM similar_groups ORDER BY kind, listed"
    upgraded = db.execute(shown).fetchall()
    assert len(upgraded) > 10 and db.execute("SELECT COUNT(*) FROM group_changes").fetchone() == (0,)
    regroup_all(db)
    assert db.execute(shown).fetchall() == upgraded
