"""Similar photos: fingerprints, the four relations on generated pairs, the keeper, and the index."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from catalog.analysis_db import store_analysis
from catalog.analyzers import Analysis
from catalog.settings import Config
from catalog.containers import BrokenImage
from catalog.db import open_db
from catalog.imagefacts import read_facts
from catalog.scan import scan
from catalog.similar.classify import (BURST_SECONDS, COPY_DISTANCE, Candidate, burst_mates, keeper,
                                      relation)
from catalog.similar.fingerprint import (Fingerprint, distance, fingerprint_file, fingerprint_image,
                                         from_db, to_db)
from catalog.similar.groups import bursts, copy_source, near_groups, similar_to
from catalog.similar.store import backfill_fingerprints
from file_audit import opened_under
from similar_pairs import COPIES, DISTINCT, EDITS, undecodable_png, upright, variants


def candidate(path: Path, **changes) -> Candidate:
    with open(path, "rb") as f:
        facts = read_facts(f, max_image_pixels=10**9)
    camera = " ".join(x for x in (facts.camera_make, facts.camera_model) if x) or None
    found = Candidate(str(path), fingerprint_file(path), facts.width, facts.height, facts.taken_at, camera,
                      path.stat().st_size, facts.format)
    return replace(found, **changes)


@pytest.fixture(scope="module")
def real(shared_photos) -> Path:
    return shared_photos / "real"


@pytest.fixture(scope="module")
def originals(real) -> dict[str, Candidate]:
    return {name: candidate(real / name) for name in DISTINCT}


@pytest.fixture(scope="module")
def transformed(real, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Every copy and edit of every distinct photo, as files (made once for the module)."""
    dest = tmp_path_factory.mktemp("variants")
    return {(name, kind): path for name in DISTINCT
            for kind, path in variants(real / name, dest, {**COPIES, **EDITS}).items()}


def test_db_form_round_trips_every_64_bit_hash():
    for h in (0, 1, 2**63 - 1, 2**63, 2**64 - 1, 0xDEADBEEFCAFEF00D):
        v = to_db(h)
        assert -(2**63) <= v < 2**63 and from_db(v) == h
    with pytest.raises(ValueError):
        to_db(2**64)


def test_fingerprint_is_of_the_upright_picture(real):
    """landscape_1..8 store the scene in the eight EXIF orientations: one upright hash."""
    prints = [fingerprint_file(real / f"landscape_{n}.jpg") for n in range(1, 9)]
    assert {round(p.aspect, 4) for p in prints} == {round(600 / 450, 4)}
    assert max(distance(prints[1].phash, p.phash) for p in prints[1:]) <= 1  # 2..8: one JPEG re-save apart
    assert all(0 <= p.phash < 2**64 and 0 <= p.tone < 2**24 for p in prints)
    # the same picture handed over decoded (fingerprint_image) gives the same fingerprint
    assert fingerprint_image(upright(real / "landscape_6.jpg")).phash == prints[5].phash


def test_fingerprint_of_an_undecodable_file_is_brokenimage(photos, tmp_path):
    for name in ("truncated_jpeg.jpg", "not_an_image_pdf.jpg", "decompression_bomb.gif", "empty.jpg"):
        with pytest.raises(BrokenImage):
            fingerprint_file(photos / "edge" / name)
    with pytest.raises(OSError):
        fingerprint_file(tmp_path / "gone.jpg")


def test_fingerprint_of_an_odd_mode_picture():
    """16-bit grey is scaled, not clipped to white; transparency goes onto white."""
    grey16 = Image.linear_gradient("L").resize((64, 48)).convert("I").point(lambda v: v * 257)
    eight = Image.linear_gradient("L").resize((64, 48))
    assert distance(fingerprint_image(grey16).phash, fingerprint_image(eight).phash) == 0
    clear = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    assert fingerprint_image(clear).rgb == (255, 255, 255)


@pytest.mark.parametrize("kind", sorted(COPIES))
def test_copies_are_copies(kind, originals, transformed):
    """Resized, re-encoded, converted, rotated: `copy`, on every distinct photo but one graphic."""
    missed = [name for name in DISTINCT
              if relation(originals[name], candidate(transformed[name, kind])) != "copy"]
    # a 360x216 flat-colour graphic resized to 90x54 or as WebP: its hash drifts 17 / 9 bits
    assert missed == (["BlueSquare.jpg"] if kind in ("resize25", "webp") else [])


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_edits_are_edits_never_copies_of_real_photos(kind, originals, transformed):
    said = {name: relation(originals[name], candidate(transformed[name, kind])) for name in DISTINCT}
    # known limits: a crop of a flat grey picture is its copy; a +10 % on a near-white graphic
    # moves its mean colour by 2 levels; one 3 % crop moves the hash 13 bits (edit stops at 12)
    allowed = {("crop3", "67-0_length_string.jpg"): "copy", ("bright10", "BlueSquare.jpg"): "copy",
               ("crop3", "Issue_280_dotnet.png"): None}
    wrong = {name: r for name, r in said.items() if r != allowed.get((kind, name), "edit")}
    assert wrong == {}


def test_one_scene_with_another_digit_drawn_on_it_is_an_edit_not_a_copy(real):
    """landscape_2..8: one scene, each with its own digit; the mean cells hardly differ, one cell does."""
    shots = [candidate(real / f"landscape_{i}.jpg") for i in range(2, 9)]
    kinds = [relation(a, b) for a, b in itertools.combinations(shots, 2)]
    # 21 pairs were all copies before the single-cell rule; one pair of look-alike digits stays in reach
    assert kinds.count("copy") <= 1 and kinds.count("edit") >= 20, kinds


def test_distinct_photos_are_never_related(originals):
    related = [(a, b, relation(originals[a], originals[b])) for a, b in itertools.combinations(DISTINCT, 2)]
    assert [r for r in related if r[2]] == []


def test_two_shots_are_never_copies_whatever_the_pixels(originals, transformed):
    """Another capture time or another camera tells two shots apart: at most a burst."""
    original = originals["DSCN0010.jpg"]
    twin = candidate(transformed["DSCN0010.jpg", "jpeg60"])
    assert relation(original, twin) == "copy"
    assert original.taken_at and original.camera
    later = replace(twin, taken_at=original.taken_at[:-2] + "59")
    assert relation(original, later) == "similar"
    assert relation(original, replace(twin, camera="Canon EOS R5")) == "similar"


def test_burst_frames(real, tmp_path):
    """A burst: one camera, a second apart, the subject moving a little each frame."""
    scene = upright(real / "jolla.jpg")
    w, h = scene.size
    frames = []
    for i in range(5):
        frame = scene.crop((i * w // 100, 0, w - (4 - i) * w // 100, h))  # a 1 % pan per frame
        path = tmp_path / f"frame{i}.jpg"
        frame.save(path, quality=90)
        frames.append(candidate(path, taken_at=f"2024-05-01T10:00:{i:02d}", camera="Jolla Jolla"))
    for a, b in itertools.combinations(frames, 2):
        assert relation(a, b) == "burst", (a.id, b.id, distance(a.fingerprint.phash, b.fingerprint.phash))
    far = replace(frames[1], taken_at=f"2024-05-01T10:00:{BURST_SECONDS + 1:02d}")
    assert not burst_mates(frames[0], far)
    assert relation(frames[0], replace(frames[1], camera="Nokia 3310")) != "burst"


def test_keeper_rules_in_their_order():
    fp = Fingerprint(phash=1, aspect=1.5, tone=0)

    def c(id, w=300, fmt="JPEG", taken=None, camera=None, gps=False):
        return Candidate(id, fp, w, w * 2 // 3, taken, camera, 1000, fmt, has_gps=gps)

    assert keeper([c("small", 200), c("big", 600, "PNG"), c("mid", 400)]).id == "big"  # resolution first
    assert keeper([c("png", fmt="PNG"), c("webp", fmt="WEBP"), c("heic", fmt="HEIF")]).id == "heic"
    assert keeper([c("late", taken="2020-01-02T00:00:00"), c("none"), c("early", taken="2020-01-01T00:00:00")]).id == "early"
    assert keeper([c("bare"), c("rich", camera="Canon", gps=True), c("some", camera="Canon")]).id == "rich"
    assert keeper([c("b"), c("a")]).id == "a"  # a stable choice
    with pytest.raises(ValueError):
        keeper([])


def test_copy_distance_is_the_documented_constant():
    a = Candidate("a", Fingerprint(0, 1.0, 0), 100, 100, None, None, 1, "JPEG")
    near = replace(a, id="b", fingerprint=Fingerprint((1 << COPY_DISTANCE) - 1, 1.0, 0))
    far = replace(a, id="c", fingerprint=Fingerprint((1 << (COPY_DISTANCE + 1)) - 1, 1.0, 0))
    assert relation(a, near) == "copy" and relation(a, far) == "edit"


# -- the catalogue: scan, backfill, groups ---------------------------------------------------------

BEFORE = "05837c0ededf479ef8e5f79dd2c66f42c1c0a7ed"  # main before fingerprints (its last migration: m010)
REPO = Path(__file__).resolve().parents[1]


def burst_frame(scene: Image.Image, i: int, path: Path) -> Path:
    """Frame i of a burst: a 1 % pan each, one camera, a second apart (EXIF Make, Model, date)."""
    w, h = scene.size
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R6"
    exif.get_ifd(0x8769)[0x9003] = f"2024:05:01 10:00:{i:02d}"
    scene.crop((i * w // 100, 0, w - (4 - i) * w // 100, h)).save(path, quality=90, exif=exif)
    return path


@pytest.fixture
def library(real, tmp_path) -> Path:
    """DSCN0010 with two copies and a crop, two distinct photos, a burst of three, one undecodable PNG."""
    lib = tmp_path / "lib"
    (lib / "exports").mkdir(parents=True)
    for name in ("DSCN0010.jpg", "kodak-dc240.jpg", "el_torcal_rocks.jpg"):
        shutil.copy(real / name, lib / name)
    variants(real / "DSCN0010.jpg", lib / "exports", {k: {**COPIES, **EDITS}[k] for k in ("resize50", "png", "crop3")})
    scene = upright(real / "prairie_falcon.jpg")
    for i in range(3):
        burst_frame(scene, i, lib / f"burst{i}.jpg")
    undecodable_png(lib / "broken pixels.png")
    return lib


def photo_of(db, path: Path) -> str:
    return db["files"].get(str(path))["photo_id"]


def test_scan_fingerprints_and_groups_are_read_back(library, db):
    summary = scan(db, Config(), [library], progress=False)
    assert summary.errors == 0 and summary.fingerprinted == 0  # all made by the scan's own decode
    rows = {r["path"]: r for r in db.query(
        "SELECT f.path, p.phash, p.aspect, p.tone, p.detail, p.fingerprint_error FROM files f "
        "JOIN photos p ON p.id = f.photo_id")}
    broken = rows.pop(str(library / "broken pixels.png"))
    assert broken["phash"] is None and "cannot decode the picture" in broken["fingerprint_error"]
    assert all(r["phash"] is not None and r["fingerprint_error"] is None and len(r["detail"]) == 256
               for r in rows.values()), rows
    original = photo_of(db, library / "DSCN0010.jpg")
    assert from_db(db["photos"].get(original)["phash"]) == fingerprint_file(library / "DSCN0010.jpg").phash

    exports = {k: photo_of(db, library / "exports" / f"DSCN0010-{k}.{'png' if k == 'png' else 'jpg'}")
               for k in ("resize50", "png", "crop3")}
    (group,) = near_groups(db)
    said = [(c.id, r) for c, r in group]
    assert said[0] == (original, None)  # the keeper: the largest, and JPEG beats its PNG conversion
    assert sorted(said[1:3]) == sorted([(exports["png"], "copy"), (exports["resize50"], "copy")])
    assert said[3] == (exports["crop3"], "edit")
    (run,) = bursts(db)
    assert [c.id for c in run] == [photo_of(db, library / f"burst{i}.jpg") for i in range(3)]
    assert run[0].camera == "Canon Canon EOS R6" and run[0].taken_at == "2024-05-01T10:00:00"

    related = similar_to(db, original)
    assert sorted((c.id, r) for c, r, _ in related[:2]) == sorted([(exports["png"], "copy"),
                                                                   (exports["resize50"], "copy")])
    assert related[0][2] <= related[1][2]  # nearest first among the copies
    assert (related[2][0].id, related[2][1]) == (exports["crop3"], "edit") and len(related) == 3
    assert similar_to(db, photo_of(db, library / "kodak-dc240.jpg")) == []
    assert similar_to(db, "no such photo") == []

    # copy_source: only an analysed photo, only a copy
    assert copy_source(db, exports["resize50"]) is None  # nothing analysed yet
    store_analysis(db, original, Analysis(tags=("tree",), provider="offline", model="m"))
    assert copy_source(db, exports["resize50"]) == original
    assert copy_source(db, exports["png"]) == original
    assert copy_source(db, exports["crop3"]) is None  # an edit never reuses
    assert copy_source(db, photo_of(db, library / "burst1.jpg")) is None
    assert copy_source(db, original) is None  # not a copy of itself


def old_catalogue(library: Path, tmp_path: Path) -> Path:
    """A catalogue scanned by the code before fingerprints (main at BEFORE), from git."""
    archive = subprocess.run(["git", "archive", BEFORE, "catalog"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {BEFORE[:10]} is not in this clone: {archive.stderr.decode().strip()}")
    tree = tmp_path / "old-code"
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(tree, filter="data")
    db_path = tmp_path / "old.db"
    env = {**os.environ, "PYTHONPATH": str(tree), "CATALOG_DB": str(db_path)}
    done = subprocess.run([sys.executable, "-m", "catalog", "scan", str(library)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db_path) as conn:
        assert "phash" not in {r[1] for r in conn.execute("PRAGMA table_info(photos)")}
    return db_path


def test_backfill_of_a_catalogue_made_before_fingerprints(library, tmp_path):
    db = open_db(old_catalogue(library, tmp_path))  # migrates: every fingerprint NULL
    try:
        assert db.execute("SELECT COUNT(*) FROM photos WHERE phash IS NOT NULL").fetchone()[0] == 0
        with opened_under(library) as (opened, _listed):
            summary = scan(db, Config(), [library], progress=False)
        assert summary.unchanged == summary.files_seen == 10 and summary.new == summary.changed == 0
        assert summary.fingerprinted == 9  # the undecodable PNG is recorded, not counted
        assert sorted(opened) == sorted(set(opened)) and len(opened) == 10  # each file once
        missing = db.execute("SELECT COUNT(*) FROM photos WHERE phash IS NULL AND fingerprint_error IS NULL")
        assert missing.fetchone()[0] == 0
        broken = db["photos"].get(photo_of(db, library / "broken pixels.png"))
        assert broken["phash"] is None and broken["fingerprint_error"]
        # the same fingerprints as a scan of the files today
        for name in ("DSCN0010.jpg", "burst2.jpg"):
            assert from_db(db["photos"].get(photo_of(db, library / name))["phash"]) == \
                fingerprint_file(library / name).phash
        assert len(near_groups(db)) == 1 and len(bursts(db)) == 1
        # a rescan of the unchanged library opens no file: nothing is fingerprinted again
        with opened_under(library) as (opened, _listed):
            summary = scan(db, Config(), [library], progress=False)
        assert opened == [] and summary.fingerprinted == 0
    finally:
        db.close()


def test_backfill_leaves_an_unreadable_file_for_next_time(library, tmp_path):
    db = open_db(old_catalogue(library, tmp_path))
    try:
        victim = library / "kodak-dc240.jpg"
        kept = victim.read_bytes()
        victim.unlink()
        os.mkfifo(victim)  # a FIFO where the photo was: opening it must neither hang nor crash
        summary = backfill_fingerprints(db, Config())
        assert (summary.made, summary.undecodable, summary.unreadable) == (8, 1, 1)
        assert db["photos"].get(photo_of(db, victim))["phash"] is None
        victim.unlink()
        victim.write_bytes(kept)
        with opened_under(library) as (opened, _listed):
            summary = backfill_fingerprints(db, Config())
        assert (summary.made, summary.undecodable, summary.unreadable) == (1, 0, 0)
        assert opened == [str(victim)]
    finally:
        db.close()
