"""Write-back end to end, read back by exiftool (the independent reader): sidecars, embedding, undo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from catalog.analyzers import Analysis
from catalog.analysis_db import store_analysis
from catalog.config import Config, WritebackSettings
from catalog.db import open_db
from catalog.identity import identity_of
from catalog.scan import scan
from catalog.writeback.stage import writeback
from catalog.writeback.undo import undo

pytestmark = pytest.mark.skipif(not shutil.which("exiftool"), reason="exiftool not installed (CI installs it)")

TAGS = ("sunset", "café", "日本", "beach")
DESCRIPTION = "Un café à Paris"
USER_KEYWORDS = {  # files that already carry keywords of their owner's
    "BlueSquare.jpg": {"Blue Square", "Photoshop"},
    "prairie_falcon.jpg": {"raptors", "birds"},
    "tifftag-photoshop.tiff": {"autumn", "Zwitserland"},
}
EMBEDDABLE = {".jpg", ".jpeg", ".png", ".webp", ".tiff"}


def exiftool(*paths) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", "-charset", "iptc=UTF8", *map(str, paths)],
                         capture_output=True, text=True, timeout=120)
    return {Path(r["SourceFile"]).resolve(): r for r in json.loads(out.stdout or "[]")}


def as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def settings(**writeback_options) -> Config:
    return Config(writeback=WritebackSettings(**writeback_options))


@pytest.fixture
def library(photos, tmp_path):
    """The real photos, scanned, each with a known analysis."""
    db = open_db(tmp_path / "catalog.db")
    scan(db, Config(), [photos / "real"], progress=False)
    for (photo_id,) in db.execute("SELECT id FROM photos").fetchall():
        store_analysis(db, photo_id, Analysis(tags=TAGS, description=DESCRIPTION, provider="test"))
    yield db, photos / "real"
    db.close()


def files_of(root: Path):
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".xmp"))


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sidecars_for_every_photo_never_touch_originals(library):
    db, root = library
    before = snapshot(root)
    summary = writeback(db, settings(), progress=False)
    assert summary.skipped == 0 and summary.written == summary.sidecars == len(before)
    for path, data in before.items():
        assert path.read_bytes() == data  # sidecar mode never touches a photo
    read = exiftool(*(Path(f"{p}.xmp") for p in before))
    for photo in before:
        meta = read[Path(f"{photo}.xmp").resolve()]
        subject = as_list(meta.get("XMP-dc:Subject"))
        assert set(TAGS) <= set(subject), photo.name
        assert USER_KEYWORDS.get(photo.name, set()) <= set(subject), photo.name  # seeded from the photo's XMP
        assert {f"auto|{t}" for t in TAGS} <= set(as_list(meta.get("XMP-lr:HierarchicalSubject")))
        assert {f"auto/{t}" for t in TAGS} <= set(as_list(meta.get("XMP-digiKam:TagsList")))
        assert meta.get("XMP-dc:Description") == (own_description(before[photo]) or DESCRIPTION), photo.name


def own_description(data: bytes) -> str | None:
    """The description the photo's owner already gave it (never overwritten by ours)."""
    from catalog.writeback.xmp import find_xmp_packet, read_xmp

    packet = find_xmp_packet(data)
    return read_xmp(packet).description if packet else None


def test_embed_round_trip_read_by_exiftool(library):
    db, root = library
    originals = {p: (identity_of(p).digest, _pixels(p)) for p in files_of(root)}
    descriptions = {p: own_description(p.read_bytes()) for p in originals}
    summary = writeback(db, settings(mode="embed"), progress=False)
    assert summary.skipped == 0, summary.changes
    read = exiftool(*originals)
    for photo, (digest, pixels) in originals.items():
        meta = read[photo.resolve()]
        if photo.suffix.lower() not in EMBEDDABLE:  # HEIC, GIF: a sidecar instead, with a note
            assert Path(f"{photo}.xmp").exists(), photo.name
            continue
        assert identity_of(photo).digest == digest, f"{photo.name}: image data changed"
        assert _pixels(photo) == pixels, f"{photo.name}: decoded pixels changed"
        subject = set(as_list(meta.get("XMP-dc:Subject")))
        assert set(TAGS) <= subject and USER_KEYWORDS.get(photo.name, set()) <= subject, photo.name
        assert {f"auto|{t}" for t in TAGS} <= set(as_list(meta.get("XMP-lr:HierarchicalSubject"))), photo.name
        xp = str(meta.get("IFD0:XPKeywords", ""))
        assert all(t in xp for t in TAGS), (photo.name, xp)
        if photo.suffix.lower() != ".webp":  # WebP has no IPTC
            iptc = set(as_list(meta.get("IPTC:Keywords")))
            assert set(TAGS) <= iptc, (photo.name, iptc)
            assert USER_KEYWORDS.get(photo.name, set()) <= iptc | subject
        assert meta.get("XMP-dc:Description") == (descriptions[photo] or DESCRIPTION), photo.name
    # The ledger follows the writes: a rescan reads nothing again.
    rescan = scan(db, Config(), [root], progress=False)
    assert rescan.changed == 0 and rescan.new == 0 and rescan.bytes_hashed == 0
    assert not list(root.rglob(".catalog-*.tmp"))


def _pixels(path: Path) -> bytes | None:
    try:
        with Image.open(path) as img:
            return img.tobytes()
    except Exception:
        return None


def test_stale_own_tags_replaced_user_tags_kept_and_idempotent(library):
    db, root = library
    writeback(db, settings(mode="both"), progress=False)
    falcon = root / "prairie_falcon.jpg"
    photo_id = db["files"].get(str(falcon))["photo_id"]
    store_analysis(db, photo_id, Analysis(tags=("sunset", "mountain"), description="A falcon", provider="test"))
    summary = writeback(db, settings(mode="both"), paths=[str(falcon)], progress=False)
    assert summary.written == 2
    for target in (falcon, Path(f"{falcon}.xmp")):
        subject = set(as_list(exiftool(target)[target.resolve()].get("XMP-dc:Subject")))
        assert {"sunset", "mountain"} <= subject and not {"café", "日本", "beach"} & subject
        assert USER_KEYWORDS["prairie_falcon.jpg"] <= subject
    iptc = set(as_list(exiftool(falcon)[falcon.resolve()].get("IPTC:Keywords")))
    assert "mountain" in iptc and "café" not in iptc and {"raptors", "birds"} <= iptc
    # Nothing new: nothing written, nothing touched.
    state = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    again = writeback(db, settings(mode="both"), progress=False)
    assert again.written == 0 and again.skipped == 0 and again.unchanged == 2 * again.files
    assert state == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_undo_restores_byte_identical_files(library):
    db, root = library
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    summary = writeback(db, settings(mode="both"), progress=False)
    assert summary.written > 0
    result = undo(db, summary.run_id)
    assert result.skipped == 0 and result.restored == summary.written
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    assert after == before  # photos byte-identical, same mtimes; new sidecars gone
    assert scan(db, Config(), [root], progress=False).changed == 0
    assert db.execute("SELECT COUNT(*) FROM writeback_state").fetchone()[0] == 0


def test_files_that_cannot_be_written_are_reported_and_untouched(library, photos, tmp_path):
    db, root = library
    locked = root / "jolla.jpg"
    locked.chmod(0o444)
    bad = root / "hopper_bad_exif.jpg"
    shutil.copy(photos / "edge/hopper_bad_exif.jpg", bad)
    scan(db, Config(), [root], progress=False)
    store_analysis(db, db["files"].get(str(bad))["photo_id"], Analysis(tags=TAGS, provider="test"))
    before = {p: p.read_bytes() for p in (locked, bad)}
    summary = writeback(db, settings(mode="embed"), progress=False)
    skipped = {Path(c["path"]).name: c["message"] for c in summary.changes if c["status"] == "skipped"}
    assert set(skipped) == {"jolla.jpg", "hopper_bad_exif.jpg"}
    assert "read-only" in skipped["jolla.jpg"]
    assert "EXIF" in skipped["hopper_bad_exif.jpg"]
    assert {p: p.read_bytes() for p in (locked, bad)} == before
    assert not list(root.rglob(".catalog-*.tmp"))


def test_mirror_tree_and_base_names(library, tmp_path):
    db, root = library
    mirror = tmp_path / "sidecars"
    writeback(db, settings(sidecar_dir=str(mirror), sidecar_name="base"), progress=False)
    assert (mirror / "dup" / "el_torcal_rocks.xmp").exists()
    assert (mirror / "DSCN0010.xmp").exists()
    assert not list(root.rglob("*.xmp"))


def test_cli_dry_run_embed_and_undo(library, tmp_path):
    db, root = library
    env = {**os.environ, "CATALOG_DB": str(tmp_path / "catalog.db")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "catalog", "writeback", *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=300)

    before = snapshot(root)
    dry = run("--dry-run", "--mode", "embed")
    assert dry.returncode == 0, dry.stderr
    assert "+sunset" in dry.stdout and "+café" in dry.stdout and "Would write" in dry.stdout
    assert snapshot(root) == before
    done = run("--mode", "embed", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["embedded"] > 20 and result["skipped"] == 0
    undone = run("--undo", result["run_id"])
    assert undone.returncode == 0, undone.stderr
    assert {p: d for p, d in snapshot(root).items() if not p.name.endswith(".xmp")} == {
        p: d for p, d in before.items()}
    missing = run("--undo", 9999)
    assert missing.returncode == 1 and "wrote nothing back" in missing.stderr
