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
from catalog.settings import Config, WritebackSettings
from catalog.db import open_db
from catalog.identity import identity_of
from catalog.scan import scan
from catalog.writeback.stage import writeback
from catalog.writeback.undo import undo
from catalog.writeback.xmp import find_xmp_packet, read_xmp

TAGS = ("sunset", "café", "日本", "beach")
DESCRIPTION = "Un café à Paris"
USER_KEYWORDS = {  # files that already carry keywords of their owner's
    "BlueSquare.jpg": {"Blue Square", "Photoshop"},
    "prairie_falcon.jpg": {"raptors", "birds"},
    "tifftag-photoshop.tiff": {"autumn", "Zwitserland"},
}
EMBEDDABLE = {".jpg", ".jpeg", ".png", ".webp", ".tiff"}


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


def test_sidecars_for_every_photo_never_touch_originals(library, exiftool):
    db, root = library
    before = snapshot(root)
    summary = writeback(db, settings(), progress=False)
    assert summary.skipped == 0 and summary.written == summary.sidecars == len(before)
    for path, data in before.items():
        assert path.read_bytes() == data  # sidecar mode never touches a photo
    read = exiftool.read(*(Path(f"{p}.xmp") for p in before))
    for photo in before:
        meta = read[Path(f"{photo}.xmp").resolve()]
        subject = exiftool.listed(meta.get("XMP-dc:Subject"))
        assert set(TAGS) <= set(subject), photo.name
        assert USER_KEYWORDS.get(photo.name, set()) <= set(subject), photo.name  # seeded from the photo's XMP
        assert {f"auto|{t}" for t in TAGS} <= set(exiftool.listed(meta.get("XMP-lr:HierarchicalSubject")))
        assert {f"auto/{t}" for t in TAGS} <= set(exiftool.listed(meta.get("XMP-digiKam:TagsList")))
        assert meta.get("XMP-dc:Description") == (own_description(before[photo]) or DESCRIPTION), photo.name


def own_description(data: bytes) -> str | None:
    """The description the photo's owner already gave it (never overwritten by ours)."""
    packet = find_xmp_packet(data)
    return read_xmp(packet).description if packet else None


def test_embed_round_trip_read_by_exiftool(library, exiftool):
    db, root = library
    originals = {p: (identity_of(p).digest, _pixels(p)) for p in files_of(root)}
    descriptions = {p: own_description(p.read_bytes()) for p in originals}
    summary = writeback(db, settings(mode="embed"), progress=False)
    assert summary.skipped == 0, summary.changes
    read = exiftool.read(*originals)
    for photo, (digest, pixels) in originals.items():
        meta = read[photo.resolve()]
        if photo.suffix.lower() not in EMBEDDABLE:  # HEIC, GIF: a sidecar instead, with a note
            assert Path(f"{photo}.xmp").exists(), photo.name
            continue
        assert identity_of(photo).digest == digest, f"{photo.name}: image data changed"
        assert _pixels(photo) == pixels, f"{photo.name}: decoded pixels changed"
        subject = set(exiftool.listed(meta.get("XMP-dc:Subject")))
        assert set(TAGS) <= subject and USER_KEYWORDS.get(photo.name, set()) <= subject, photo.name
        assert {f"auto|{t}" for t in TAGS} <= set(exiftool.listed(meta.get("XMP-lr:HierarchicalSubject"))), photo.name
        xp = str(meta.get("IFD0:XPKeywords", ""))
        assert all(t in xp for t in TAGS), (photo.name, xp)
        if photo.suffix.lower() != ".webp":  # WebP has no IPTC
            iptc = set(exiftool.listed(meta.get("IPTC:Keywords")))
            assert set(TAGS) <= iptc, (photo.name, iptc)
            assert USER_KEYWORDS.get(photo.name, set()) <= iptc | subject
        assert meta.get("XMP-dc:Description") == (descriptions[photo] or DESCRIPTION), photo.name
    # The ledger follows the writes: a rescan reads nothing again.
    rescan = scan(db, Config(), [root], progress=False)
    assert rescan.changed == 0 and rescan.new == 0 and rescan.bytes_hashed == 0
    assert not list(root.rglob(".catalog-*.tmp"))


def test_embed_mode_writes_a_sidecar_for_heif_and_gif(library):
    """No lossless embedded writer for HEIF or GIF: the photo stays byte-identical, our tags go to its sidecar."""
    db, root = library
    photos = [root / "IMG_5195.HEIC", root / "hopper.gif"]
    before = {p: p.read_bytes() for p in photos}
    summary = writeback(db, settings(mode="embed"), progress=False)
    notes = {Path(c["path"]).name: c for c in summary.changes if Path(c["path"]) in before}
    for photo, data in before.items():
        assert photo.read_bytes() == data, photo.name
        change = notes[photo.name]
        assert (change["target"], change["kind"], change["status"]) == (f"{photo}.xmp", "sidecar", "write"), change
        assert "wrote a sidecar instead" in change["message"], change
        sidecar = read_xmp(Path(f"{photo}.xmp").read_bytes())
        assert set(TAGS) <= set(sidecar.subject) and sidecar.description == DESCRIPTION, photo.name


def _pixels(path: Path) -> bytes | None:
    try:
        with Image.open(path) as img:
            return img.tobytes()
    except Exception:
        return None


def test_stale_own_tags_replaced_user_tags_kept_and_idempotent(library, exiftool):
    db, root = library
    writeback(db, settings(mode="both"), progress=False)
    falcon = root / "prairie_falcon.jpg"
    photo_id = db["files"].get(str(falcon))["photo_id"]
    store_analysis(db, photo_id, Analysis(tags=("sunset", "mountain"), description="A falcon", provider="test"))
    summary = writeback(db, settings(mode="both"), paths=[str(falcon)], progress=False)
    assert summary.written == 2
    for target in (falcon, Path(f"{falcon}.xmp")):
        subject = set(exiftool.listed(exiftool.read(target)[target.resolve()].get("XMP-dc:Subject")))
        assert {"sunset", "mountain"} <= subject and not {"café", "日本", "beach"} & subject
        assert USER_KEYWORDS["prairie_falcon.jpg"] <= subject
    iptc = set(exiftool.listed(exiftool.read(falcon)[falcon.resolve()].get("IPTC:Keywords")))
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


# --- Faults at the edges: bounded parsing, failed writes, kills, other writers, links ---------

def only(db, root: Path, names, tags=TAGS, description=DESCRIPTION):
    """Keep the analysis of these photos only (others unanalysed), with `tags`."""
    db.execute("UPDATE photos SET analysis_status = 'pending'")
    for name in names:
        photo_id = db["files"].get(str(root / name))["photo_id"]
        store_analysis(db, photo_id, Analysis(tags=tuple(tags), description=description, provider="test"))


def subject_of(exiftool, path: Path) -> set[str]:
    return set(exiftool.listed(exiftool.read(path)[path.resolve()].get("XMP-dc:Subject")))


def test_deep_and_huge_sidecars_are_skipped_and_the_run_goes_on(library):
    """A 1,000-level sidecar and a 300 MB one are each skipped with a message; the rest is written."""
    db, root = library
    deep = Path(f"{root / 'jolla.jpg'}.xmp")
    deep.write_bytes(b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b"<a>" * 1000 + b"</a>" * 1000 + b"</x:xmpmeta>")
    huge = Path(f"{root / 'DSCN0010.jpg'}.xmp")
    with open(huge, "wb") as f:  # sparse: 300 MB that costs no disk, and must never be read whole
        f.truncate(300 << 20)
    before = {p: p.read_bytes() for p in (deep,)}
    summary = writeback(db, settings(), progress=False)
    skipped = {Path(c["path"]).name: c["message"] for c in summary.changes if c["status"] == "skipped"}
    assert set(skipped) == {"jolla.jpg", "DSCN0010.jpg"}, skipped
    assert "deeper than" in skipped["jolla.jpg"] and "limit" in skipped["DSCN0010.jpg"]
    assert summary.written == summary.files - 2
    assert deep.read_bytes() == before[deep] and huge.stat().st_size == 300 << 20


def test_a_failed_write_claims_nothing_and_a_later_run_keeps_the_users_keyword(photos, tmp_path, exiftool):
    """No space left (a full tmpfs): nothing written, nothing claimed; the user then adds the same
    keyword in their own tool, the analysis drops it, and the next run must keep it."""
    from fsfaults import fill, tmpfs

    with tmpfs(tmp_path / "disk", size="1m") as disk:
        photo = disk / "falcon.jpg"
        shutil.copy(photos / "real" / "prairie_falcon.jpg", photo)
        db = open_db(tmp_path / "catalog.db")
        scan(db, Config(), [disk], progress=False)
        only(db, disk, ["falcon.jpg"], tags=("sunset", "hawk"))
        filler = fill(disk)
        original = photo.read_bytes()
        summary = writeback(db, settings(mode="embed"), progress=False)
        assert summary.skipped == 1 and "No space left" in summary.changes[0]["message"]
        assert photo.read_bytes() == original and not list(disk.glob(".catalog-*"))
        assert db.execute("SELECT COUNT(*) FROM writeback_state").fetchone()[0] == 0  # nothing claimed
        assert db.execute("SELECT COUNT(*) FROM writeback_journal").fetchone()[0] == 0
        filler.unlink()
        # The photographer tags it "sunset" in their own tool; the next analysis no longer says so.
        exiftool.run("-q", "-overwrite_original", "-XMP-dc:Subject+=sunset", photo)
        scan(db, Config(), [disk], progress=False)
        only(db, disk, ["falcon.jpg"], tags=("hawk",))
        again = writeback(db, settings(mode="embed"), progress=False)
        assert again.written == 1 and again.skipped == 0
        assert {"sunset", "hawk", "raptors", "birds"} <= subject_of(exiftool, photo)
        db.close()


@pytest.mark.parametrize("fault", ["immutable", "read-only"])
def test_refused_writes_claim_nothing(library, tmp_path, fault):
    """EPERM (chattr +i) and EROFS (a read-only bind mount): skipped, untouched, nothing claimed."""
    from fsfaults import immutable, read_only

    db, root = library
    folder = root / "dup"
    only(db, root, [p.relative_to(root) for p in folder.iterdir()])
    before = snapshot(folder)
    guard = immutable(next(folder.iterdir())) if fault == "immutable" else read_only(folder)
    with guard:
        summary = writeback(db, settings(mode="both"), progress=False)
        assert summary.skipped >= 1 and summary.written + summary.skipped == 2 * summary.files
        assert snapshot(folder) == before or fault == "immutable"
    claimed = {row["target"] for row in db.query("SELECT target FROM writeback_state")}
    journalled = {row["target"] for row in db.query("SELECT target FROM writeback_journal")}
    written = {c["target"] for c in summary.changes if c["status"] == "skipped"}
    assert not claimed & written and not journalled & written and claimed == journalled


def test_a_folder_that_refuses_fsync_still_reports_the_write(library, monkeypatch):
    """Some network mounts answer EINVAL to fsync on a folder; the rename has happened, so the
    write counts as done and stays undoable. (Only a monkeypatched os.fsync can make a local
    folder refuse: no real filesystem here does.)"""
    import errno
    import stat as stat_module

    db, root = library
    real_fsync = os.fsync

    def folder_refuses(fd):
        if stat_module.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO if folder_refuses.eio else errno.EINVAL, "refused")
        return real_fsync(fd)

    folder_refuses.eio = False
    monkeypatch.setattr(os, "fsync", folder_refuses)
    before = snapshot(root)
    summary = writeback(db, settings(mode="both"), paths=[str(root / "jolla.jpg")], progress=False)
    assert (summary.written, summary.skipped) == (2, 0), summary.changes
    folder_refuses.eio = True  # even an I/O error on the folder does not unsay a done rename
    undone = undo(db, summary.run_id)
    assert (undone.restored, undone.skipped) == (2, 0) and snapshot(root) == before


def other_program(db, edit):
    """Run `edit(target)` the moment our journal row is written: after we read, before we rename."""
    db.conn.create_function("other_program", 1, lambda target: edit(target) or 0)
    db.execute("CREATE TEMP TRIGGER other_program AFTER INSERT ON writeback_journal "
               "BEGIN SELECT other_program(NEW.target); END")


@pytest.mark.parametrize("mode", ["embed", "sidecar"])
def test_another_programs_write_between_read_and_rename_is_not_lost(library, mode, exiftool):
    """Lightroom saves the file while we write it: their bytes stay, we skip and retry next run."""
    db, root = library
    photo = root / "prairie_falcon.jpg"
    only(db, root, [photo.name])
    theirs = {}

    def lightroom(target):
        if mode == "embed":
            exiftool.run("-q", "-overwrite_original", "-XMP-dc:Subject+=edited", target)
        else:
            Path(target).write_bytes(xmp_with(["edited"]))
        theirs[target] = Path(target).read_bytes()

    if mode == "sidecar":
        Path(f"{photo}.xmp").write_bytes(b"")
    other_program(db, lightroom)
    summary = writeback(db, settings(mode=mode), progress=False)
    assert summary.skipped == 1 and "another program" in summary.changes[0]["message"]
    ((target, data),) = theirs.items()
    assert Path(target).read_bytes() == data  # their write survived
    assert db.execute("SELECT COUNT(*) FROM writeback_journal").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM writeback_state").fetchone()[0] == 0
    db.execute("DROP TRIGGER temp.other_program")
    scan(db, Config(), [root], progress=False)
    retried = writeback(db, settings(mode=mode), progress=False)
    assert retried.written == 1 and retried.skipped == 0
    assert {"sunset", "edited"} <= subject_of(exiftool, Path(target))


def test_sidecar_mode_refuses_a_photo_changed_since_the_scan(library):
    """The analysis was of the scanned photo; a photo edited since gets no sidecar until rescanned."""
    db, root = library
    photo = root / "jolla.jpg"
    only(db, root, [photo.name])
    os.utime(photo, ns=(1, photo.stat().st_mtime_ns + 10**9))
    summary = writeback(db, settings(), progress=False)
    assert summary.skipped == 1 and "changed since the last scan" in summary.changes[0]["message"]
    assert not Path(f"{photo}.xmp").exists()


def test_a_symlinked_sidecar_is_never_read_or_written_through(library, tmp_path):
    """IMG.jpg.xmp -> someone else's file: skipped; their file unread and unchanged, the link kept."""
    db, root = library
    secret = tmp_path / "other-user" / "private.xmp"
    secret.parent.mkdir()
    secret.write_bytes(xmp_with(["secret-keyword"]))
    photo = root / "jolla.jpg"
    link = Path(f"{photo}.xmp")
    link.symlink_to(secret)
    dangling = Path(f"{root / 'DSCN0010.jpg'}.xmp")
    dangling.symlink_to(tmp_path / "nowhere" / "new.xmp")
    only(db, root, [photo.name, "DSCN0010.jpg"])
    before = secret.read_bytes()
    summary = writeback(db, settings(mode="both"), progress=False)
    skipped = [c for c in summary.changes if c["status"] == "skipped"]
    assert len(skipped) == 2 and all("symbolic link" in c["message"] for c in skipped), skipped
    assert secret.read_bytes() == before and link.is_symlink() and dangling.is_symlink()
    assert not (tmp_path / "nowhere").exists()
    dump = "\n".join(db.iterdump()) + repr(list(db.query("SELECT snapshot FROM writeback_journal")))
    assert "secret-keyword" not in dump
    assert b"secret-keyword" not in photo.read_bytes()  # nor copied into the photo


def xmp_with(keywords) -> bytes:
    from catalog.writeback.xmp_merge import merge_xmp

    return merge_xmp(None, add=keywords, remove=[], description=None, replace_description=False)


def test_symlinked_photos_keep_their_links_and_nothing_outside_the_roots_is_written(photos, tmp_path):
    """follow_symlinks: a link to a photo in the library is written through (the link stays); a
    link or a linked folder leading outside the roots gets nothing, neither embed nor sidecar."""
    from catalog.settings import LibrarySettings

    lib, outside = tmp_path / "lib", tmp_path / "outside"
    (lib / "originals").mkdir(parents=True)
    outside.mkdir()
    for name in ("jolla.jpg", "DSCN0010.jpg"):
        shutil.copy(photos / "real" / name, lib / "originals" / name)
    shutil.copy(photos / "real" / "landscape_1.jpg", outside / "landscape_1.jpg")
    (lib / "favourite.jpg").symlink_to(lib / "originals" / "jolla.jpg")
    (lib / "borrowed.jpg").symlink_to(outside / "landscape_1.jpg")
    (lib / "linked-folder").symlink_to(outside, target_is_directory=True)
    config = Config(library=LibrarySettings(roots=(str(lib),), follow_symlinks=True),
                    writeback=WritebackSettings(mode="both"))
    db = open_db(tmp_path / "catalog.db")
    scan(db, config, progress=False)
    for (photo_id,) in db.execute("SELECT id FROM photos").fetchall():
        store_analysis(db, photo_id, Analysis(tags=TAGS, description=DESCRIPTION, provider="test"))
    before_outside = snapshot(outside)
    before_lib = {p: p.read_bytes() for p in (lib / "originals").iterdir()}
    summary = writeback(db, config, progress=False)
    skipped = {Path(c["path"]).name for c in summary.changes if c["status"] == "skipped"}
    assert skipped == {"borrowed.jpg", "landscape_1.jpg"}, summary.changes
    assert all("outside the library roots" in c["message"] for c in summary.changes if c["status"] == "skipped")
    assert snapshot(outside) == before_outside  # not a byte, not a sidecar
    assert (lib / "favourite.jpg").is_symlink() and (lib / "borrowed.jpg").is_symlink()
    assert set(TAGS) <= set(read_xmp(find_xmp_packet((lib / "originals" / "jolla.jpg").read_bytes())).subject)
    assert undo(db, summary.run_id).skipped == 0
    assert {p: p.read_bytes() for p in (lib / "originals").iterdir()} == before_lib
    assert (lib / "favourite.jpg").is_symlink()
    db.close()


def test_a_users_description_in_any_field_keeps_ours_out_of_all(library, exiftool):
    """The photographer captioned it in EXIF only: no field, embedded or sidecar, gets ours."""
    db, root = library
    photo = root / "landscape_1.jpg"
    exiftool.run("-q", "-overwrite_original", "-EXIF:ImageDescription=Grandma's garden", photo)
    scan(db, Config(), [root], progress=False)
    only(db, root, [photo.name])
    summary = writeback(db, settings(mode="both"), progress=False)
    assert summary.written == 2
    for target in (photo, Path(f"{photo}.xmp")):
        meta = exiftool.read(target)[target.resolve()]
        assert meta.get("XMP-dc:Description") is None and meta.get("IPTC:Caption-Abstract") is None, target
        assert set(TAGS) <= set(exiftool.listed(meta.get("XMP-dc:Subject")))
    assert exiftool.read(photo)[photo.resolve()]["IFD0:ImageDescription"] == "Grandma's garden"


def test_cli_undo_dry_run_only_reports_and_honours_paths_and_mode(library, tmp_path):
    """`--undo N --dry-run` changes nothing; PATHS and --mode narrow what is restored."""
    db, root = library
    summary = writeback(db, settings(mode="both"), progress=False)
    written = snapshot(root)
    env = {**os.environ, "CATALOG_DB": str(tmp_path / "catalog.db")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "catalog", "writeback", "--undo", str(summary.run_id),
                               *map(str, args)], env=env, capture_output=True, text=True, timeout=300)

    dry = run("--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["restored"] == summary.written and snapshot(root) == written
    falcon = root / "prairie_falcon.jpg"
    one = run("--mode", "sidecar", falcon)
    assert one.returncode == 0 and "1 files restored" in one.stdout, one.stdout + one.stderr
    changed = {p for p in written if snapshot(root).get(p) != written[p]}
    assert changed == {Path(f"{falcon}.xmp")}  # only that sidecar (it was new: now gone)
    rest = run()
    assert rest.returncode == 0 and f"{summary.written - 1} files restored" in rest.stdout
