"""The library scan against real photos: formats, dedupe, ledger, moves, and everything that goes wrong."""

from __future__ import annotations

import os
import re
import shutil
import sys

import pytest
from PIL import Image

from catalog.settings import Config, LibrarySettings
from catalog.db import open_db, text_path
from catalog.identity import identity_of
from catalog.scan import scan
from file_audit import opened_under


def parse_sources(shared_photos):
    """Expected format and size of every real/ file, from SOURCES.md (measured independently)."""
    expected = {}
    for line in (shared_photos / "SOURCES.md").read_text().splitlines():
        m = re.match(r"\| `(real/[^`]+)` \| [\d,]+ \| (\w+) (\d+)x(\d+) ", line)
        if m:
            expected[m.group(1)] = (m.group(2), int(m.group(3)), int(m.group(4)))
    return expected


def files(db):
    return {r["path"]: r for r in db.query("SELECT * FROM files")}


def test_every_real_photo_catalogued_with_format_and_size(photos, db, shared_photos):
    summary = scan(db, Config(), [photos], progress=False)
    expected = parse_sources(shared_photos)
    assert set(expected) == {str(p.relative_to(photos)) for p in (photos / "real").rglob("*") if p.is_file()}
    rows = files(db)
    for rel, (fmt, width, height) in expected.items():
        row = rows[str(photos / rel)]
        assert row["status"] == "ok", (rel, row["error"])
        photo = db["photos"].get(row["photo_id"])
        assert (photo["format"], photo["width"], photo["height"]) == (
            {"HEIF": "HEIF"}.get(fmt, fmt), width, height), rel
    assert summary.files_seen == 47
    assert summary.new == 47 and summary.changed == summary.unchanged == 0


def test_exif_facts(photos, db):
    scan(db, Config(), [photos], progress=False)

    def photo(rel):
        row = db["files"].get(str(photos / rel))
        return db["photos"].get(row["photo_id"])

    nikon = photo("real/DSCN0010.jpg")
    assert nikon["camera_make"] == "NIKON" and nikon["camera_model"] == "COOLPIX P6000"
    assert nikon["taken_at"] == "2008-10-22T16:28:39"
    assert nikon["gps_lat"] == pytest.approx(43.4674, abs=1e-3)
    assert nikon["gps_lon"] == pytest.approx(11.8851, abs=1e-3)
    heic = photo("real/IMG_5195.HEIC")
    assert heic["gps_lat"] == pytest.approx(39.0513, abs=1e-3)
    assert heic["gps_lon"] == pytest.approx(-94.2888, abs=1e-3)  # western hemisphere: negative
    assert heic["camera_make"] == "Apple"
    assert photo("real/canon_hdr_NO.jpg")["orientation"] == 6
    assert photo("real/canon_hdr_NO.jpg")["gps_lat"] is None  # empty GPS IFD
    for n in range(1, 9):
        assert photo(f"real/landscape_{n}.jpg")["orientation"] == n
    assert photo("real/el_torcal_rocks.jpg")["taken_at"] == "2012-08-05T11:39:59"  # trailing NUL
    assert photo("real/denali.webp")["camera_model"] == "Canon EOS 7D"


def test_duplicate_is_one_photo(photos, db):
    summary = scan(db, Config(), [photos], progress=False)
    rows = files(db)
    a = rows[str(photos / "real/el_torcal_rocks.jpg")]
    b = rows[str(photos / "real/dup/el_torcal_rocks.jpeg")]
    assert a["photo_id"] == b["photo_id"]
    assert summary.duplicate_files == 1
    assert summary.photos == 40
    assert db.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 40


EDGE_ERRORS = {
    "edge/truncated_jpeg.jpg": "truncated",
    "edge/truncated_image.png": "truncated",
    "edge/empty.jpg": "empty",
    "edge/not_an_image_pdf.jpg": "not_an_image",
    "edge/decompression_bomb.gif": "decompression_bomb",
    "edge/65536-uint32-limit.png": "decompression_bomb",
}
EDGE_FINE = {  # awkward but valid: catalogued, with a metadata warning where the EXIF is bad
    "edge/pil_sample_cmyk.jpg": ("JPEG", None),
    "edge/RGB_16__128x128.png": ("PNG", None),
    "edge/chi.gif": ("GIF", None),
    "edge/rotating-squares.webp": ("WEBP", None),
    "edge/hopper_bad_exif.jpg": ("JPEG", "Corrupt EXIF"),
    "edge/exif_typeerror.jpg": ("JPEG", None),
}


def test_every_edge_file_recorded_without_crash(photos, db):
    summary = scan(db, Config(), [photos], progress=False)
    rows = files(db)
    assert set(EDGE_ERRORS) | set(EDGE_FINE) == {
        str(p.relative_to(photos)) for p in (photos / "edge").iterdir()}
    for rel, kind in EDGE_ERRORS.items():
        row = rows[str(photos / rel)]
        assert row["status"] == "error" and row["error_kind"] == kind, rel
        assert row["photo_id"] is None
        assert "Traceback" not in row["error"] and len(row["error"]) < 300
    assert "PDF" in rows[str(photos / "edge/not_an_image_pdf.jpg")]["error"]
    assert "65535x66601" in rows[str(photos / "edge/decompression_bomb.gif")]["error"] or \
        "pixels" in rows[str(photos / "edge/decompression_bomb.gif")]["error"]
    for rel, (fmt, warning) in EDGE_FINE.items():
        row = rows[str(photos / rel)]
        assert row["status"] == "ok", (rel, row["error"])
        photo = db["photos"].get(row["photo_id"])
        assert photo["format"] == fmt
        if warning:
            assert warning in photo["exif_error"]
    assert summary.errors == len(EDGE_ERRORS)


def test_rescan_of_unchanged_tree_reads_no_file(photos, db):
    scan(db, Config(), [photos], progress=False)
    before = {r["path"]: r["photo_id"] for r in db.query("SELECT path, photo_id FROM files")}
    # Proof 1: rewrite a file's content but keep its size and mtime; a scan that read it
    # would see a different identity.
    victim = photos / "real/DSCN0010.jpg"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-100:-2] = bytes(98)
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Proof 2: count every open() of a file under the library during the rescan.
    with opened_under(photos) as (opened, _listed):
        summary = scan(db, Config(), [photos], progress=False)
    assert opened == []
    assert summary.unchanged == 47 and summary.new == summary.changed == 0
    assert summary.bytes_hashed == 0
    after = {r["path"]: r["photo_id"] for r in db.query("SELECT path, photo_id FROM files")}
    assert after == before
    # A real change (new mtime) is noticed and re-read.
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    summary = scan(db, Config(), [photos], progress=False)
    assert summary.changed == 1 and summary.unchanged == 46
    assert db["files"].get(str(victim))["photo_id"] != before[str(victim)]


def test_move_rename_and_delete(photos, db):
    scan(db, Config(), [photos], progress=False)
    real = photos / "real"
    photo_id = db["files"].get(str(real / "jolla.jpg"))["photo_id"]
    (real / "moved here").mkdir()
    shutil.move(real / "jolla.jpg", real / "moved here" / "jolla renamed.jpg")
    shutil.move(real / "sony-d700.jpg", real / "sony.jpg")
    (real / "kodak-dc240.jpg").unlink()
    summary = scan(db, Config(), [photos], progress=False)
    assert (summary.moved, summary.new, summary.missing) == (2, 0, 1)
    rows = files(db)
    old = rows[str(real / "jolla.jpg")]
    assert old["status"] == "moved" and old["moved_to"] == str(real / "moved here" / "jolla renamed.jpg")
    assert rows[str(real / "moved here" / "jolla renamed.jpg")]["photo_id"] == photo_id
    gone = rows[str(real / "kodak-dc240.jpg")]
    assert gone["status"] == "missing" and gone["missing_since"]
    assert db["photos"].get(gone["photo_id"])  # the photo is kept, not deleted
    # The deleted file comes back untouched: present again, not re-read.
    summary = scan(db, Config(), [photos], progress=False)
    assert summary.missing == 0 and summary.moved == 0


def test_copy_is_a_duplicate_not_a_move(photos, db):
    scan(db, Config(), [photos], progress=False)
    shutil.copy2(photos / "real/jolla.jpg", photos / "real/jolla copy.jpg")
    summary = scan(db, Config(), [photos], progress=False)
    assert (summary.new, summary.moved, summary.duplicate_files) == (1, 0, 2)


def test_missing_root_marks_nothing_missing(photos, db, tmp_path):
    scan(db, Config(), [photos], progress=False)
    moved_away = tmp_path / "elsewhere"
    photos.rename(moved_away)
    summary = scan(db, Config(), [photos], progress=False)
    assert summary.failed_roots == [str(photos)]
    assert summary.missing == 0
    assert db.execute("SELECT COUNT(*) FROM files WHERE status = 'missing'").fetchone()[0] == 0
    run = list(db.query("SELECT * FROM runs ORDER BY id DESC LIMIT 1"))[0]
    assert run["status"] == "partial" and "mounted" in run["message"]


def test_suddenly_empty_root_marks_nothing_missing(photos, db, tmp_path):
    scan(db, Config(), [photos], progress=False)
    shutil.rmtree(photos)
    photos.mkdir()  # an empty mount point: the share is not mounted
    summary = scan(db, Config(), [photos], progress=False)
    assert summary.failed_roots == [str(photos)] and summary.missing == 0
    assert db.execute("SELECT COUNT(*) FROM files WHERE status = 'missing'").fetchone()[0] == 0


def test_non_utf8_and_odd_names_kept_exactly(tmp_path, db, shared_photos):
    root = tmp_path / "lib"
    root.mkdir()
    data = (shared_photos / "real/hopper.gif").read_bytes()
    names = [b"caf\xe9 latin1.gif", "spaces  and ünïcode 日本.gif".encode(), b"new\nline.gif", b"-dash.GIF"]
    for name in names:
        with open(os.path.join(os.fsencode(root), name), "wb") as f:
            f.write(data)
    summary = scan(db, Config(), [root], progress=False)
    assert summary.new == 4 and summary.errors == 0 and summary.duplicate_files == 3
    from catalog.db import fs_path

    stored = {os.fsencode(fs_path(r)) for r in db.query("SELECT * FROM files")}
    assert stored == {os.path.join(os.fsencode(root), n) for n in names}
    for row in db.query("SELECT * FROM files"):
        assert os.path.exists(fs_path(row))
    latin = next(db.query("SELECT * FROM files WHERE path_bytes IS NOT NULL"))
    assert latin["path"].endswith("caf\\xe9 latin1.gif")
    summary = scan(db, Config(), [root], progress=False)
    assert summary.unchanged == 4 and summary.new == 0 and summary.missing == 0


def test_symlink_loop_is_safe(tmp_path, db, shared_photos):
    root = tmp_path / "lib"
    (root / "a").mkdir(parents=True)
    shutil.copy(shared_photos / "real/hopper.gif", root / "a" / "hopper.gif")
    (root / "a" / "loop").symlink_to(root)
    (root / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    config = Config(library=LibrarySettings(follow_symlinks=True))
    summary = scan(db, config, [root], progress=False)
    assert summary.files_seen == 1 and summary.errors == 0
    summary = scan(db, Config(), [root], progress=False)  # default: links not followed
    assert summary.files_seen == 1


def test_include_extensions_case_insensitive_and_excludes(tmp_path, db, shared_photos):
    root = tmp_path / "lib"
    for rel in ("A.JPG", "b.Jpeg", "@eaDir/thumb.jpg", "#recycle/old.jpg", ".hidden.jpg",
                "notes.txt", "x.jpg.tmp", "sub/lost+found/y.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_photos / "real/Pentax_K10D.jpg", root / rel)
    summary = scan(db, Config(), [root], progress=False)
    assert sorted(r["name"] for r in db.query("SELECT name FROM files")) == ["A.JPG", "b.Jpeg"]
    assert summary.files_seen == 2


def test_nested_roots_are_scanned_once(photos, db):
    summary = scan(db, Config(), [photos, photos / "real", photos], progress=False)
    assert summary.files_seen == 47


@pytest.mark.skipif(not shutil.which("setpriv") and os.geteuid() == 0, reason="needs setpriv as root")
def test_unreadable_folder_logged_and_skipped(photos, tmp_path):
    """Run as a real process without the power to bypass permissions (root drops it)."""
    import subprocess

    db = tmp_path / "c.db"
    env = {**os.environ, "CATALOG_DB": str(db)}
    catalog = [sys.executable, "-m", "catalog"]
    first = subprocess.run([*catalog, "scan", str(photos)], env=env, capture_output=True, text=True)
    assert first.returncode == 1  # edge/ has broken files
    (photos / "edge").chmod(0)
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        second = subprocess.run([*prefix, *catalog, "scan", "--json", str(photos)],
                                env=env, capture_output=True, text=True)
    finally:
        (photos / "edge").chmod(0o755)
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    assert f"cannot read folder {photos / 'edge'}" in second.stderr
    import json

    summary = json.loads(second.stdout)
    assert summary["unreadable_folders"] == [str(photos / "edge")]
    assert summary["missing"] == 0  # the folder's files are not gone, just unreadable now


def test_a_fifo_swapped_in_after_listing_is_refused_at_once(tmp_path, db, shared_photos, monkeypatch):
    """The folder is listed with a photo in it; by the time it is read it is a FIFO, then a socket."""
    import socket
    import threading

    import catalog.scan as scan_module

    root = tmp_path / "lib"
    root.mkdir()
    for name in ("a.gif", "b.gif", "c.gif"):
        shutil.copy(shared_photos / "real/hopper.gif", root / name)
    real_walk = scan_module.walk
    sock = socket.socket(socket.AF_UNIX)

    def swapping_walk(*args, **kwargs):
        for folder in real_walk(*args, **kwargs):
            (root / "a.gif").unlink()
            os.mkfifo(root / "a.gif")  # nobody will ever write to it
            (root / "b.gif").unlink()
            sock.bind(str(root / "b.gif"))
            yield folder

    monkeypatch.setattr(scan_module, "walk", swapping_walk)
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        summary=scan(db, Config(), [root], progress=False)), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader stuck in fifo_open so the test run can end
        os.close(os.open(root / "a.gif", os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("the scan hung opening a FIFO")
    sock.close()
    assert result["summary"].files_seen == 3 and result["summary"].errors == 2
    rows = {r["name"]: r for r in db.query("SELECT name, status, error_kind, error FROM files")}
    assert rows["a.gif"]["error_kind"] == "not_a_file" and "FIFO" in rows["a.gif"]["error"]
    assert rows["b.gif"]["error_kind"] == "not_a_file" and "socket" in rows["b.gif"]["error"]
    assert rows["c.gif"]["status"] == "ok"


def test_a_file_shrinking_under_the_reader_raises_file_changed(tmp_path):
    """A pread view over a file truncated after it was opened reports the change, no signal."""
    from catalog.errors import FileChanged
    from catalog.libfile import FileView

    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(1 << 20))
    with open(path, "rb") as f:
        view = FileView(f, 1 << 20)
        assert len(view[1000:2000]) == 1000
        os.truncate(path, 4096)
        with pytest.raises(FileChanged):
            list(view.chunks(0, 1 << 20))
        with pytest.raises(FileChanged):
            view[500_000]


def _deep_folder(base, depth: int, name_len: int = 200) -> bytes:
    """Make folders nested past PATH_MAX (through folder descriptors) and return the deepest path."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    path = os.fsencode(base)
    try:
        for i in range(depth):
            part = (f"{i:03d}" + "d" * name_len).encode()[:name_len]
            os.mkdir(part, dir_fd=fd)
            fd, old = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
            path += b"/" + part
    finally:
        os.close(fd)
    return path


def _write_at(folder: bytes, name: bytes, data: bytes, *, depth_from: os.PathLike) -> None:
    """Write a file at a path too long to name whole: walk there by folder descriptors."""
    fd = os.open(depth_from, os.O_RDONLY | os.O_DIRECTORY)
    for part in folder[len(os.fsencode(depth_from)) + 1:].split(b"/"):
        fd, old = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(old)
    out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, data)
    os.close(out)
    os.close(fd)


def test_paths_too_long_for_the_system_are_recorded_not_skipped(tmp_path, db, shared_photos):
    """A photo whose path passes PATH_MAX, and a folder past it, are reported and counted."""
    root = tmp_path / "lib"
    root.mkdir()
    data = (shared_photos / "real/hopper.gif").read_bytes()
    (root / "fine.gif").write_bytes(data)
    near = _deep_folder(root, 19)  # ~3,900 bytes: the folder itself can be listed
    long_name = "p" * (4100 - len(near)) + ".gif"  # ... but a photo in it is over 4,096
    assert len(near) < 4096 - 60 and len(long_name) < 255
    _write_at(near, long_name.encode(), data, depth_from=root)
    _write_at(near, b"ok.gif", data, depth_from=root)
    deeper = _deep_folder_below(near, root)
    summary = scan(db, Config(), [root], progress=False)
    rows = {r["name"]: r for r in db.query("SELECT name, status, error_kind, error FROM files")}
    assert rows[long_name]["status"] == "error" and rows[long_name]["error_kind"] == "path_too_long"
    assert "path too long for the system" in rows[long_name]["error"]
    assert rows["ok.gif"]["status"] == "ok" and rows["fine.gif"]["status"] == "ok"
    assert summary.paths_too_long == 2  # the file and the folder past PATH_MAX
    assert summary.errors == 2 and os.fsdecode(deeper) in summary.unreadable_folders
    again = scan(db, Config(), [root], progress=False)
    assert again.paths_too_long == 2 and again.new == 0 and again.missing == 0


def _deep_folder_below(near: bytes, root) -> bytes:
    """One more level under `near` whose own path is past PATH_MAX."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for part in near[len(os.fsencode(root)) + 1:].split(b"/"):
        fd, old = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(old)
    os.mkdir(b"q" * 250, dir_fd=fd)
    os.close(fd)
    return near + b"/" + b"q" * 250


def test_names_whose_text_forms_collide_stay_two_rows(tmp_path, db, shared_photos):
    """`x<FF>.gif` (not UTF-8) and the literal name `x\\xff.gif` are two files, two rows."""
    from catalog.db import db_text, fs_path

    root = tmp_path / "lib"
    root.mkdir()
    raw, literal = os.fsencode(root) + b"/x\xff.gif", os.fsencode(root) + b"/x\\xff.gif"
    shutil.copy(shared_photos / "real/hopper.gif", raw)
    shutil.copy(shared_photos / "real/Pentax_K10D.jpg", literal)  # another photo under that name
    summary = scan(db, Config(), [root], progress=False)
    assert summary.new == 2 and summary.errors == 0
    rows = list(db.query("SELECT * FROM files ORDER BY path"))
    assert len(rows) == 2 and len({r["photo_id"] for r in rows}) == 2
    assert {os.fsencode(fs_path(r)) for r in rows} == {raw, literal}
    assert db_text(os.fsdecode(literal))[0].endswith("/x\\\\xff.gif")
    assert scan(db, Config(), [root], progress=False).unchanged == 2



def _as_before(db_path, migration: str, statements) -> None:
    """Turn a catalogue back into what the code before `migration` left: its rows, unmigrated."""
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [migration])
        for sql, params in statements:
            conn.execute(sql, params)


def test_migration_keeps_old_backslash_rows_and_tells_them_from_raw_names(tmp_path, shared_photos):
    """A catalogue written with the old text form: its rows survive; the colliding name joins."""
    from catalog.db import fs_path

    root = tmp_path / "lib"
    root.mkdir()
    names = ["x\\xff.gif", "a\\b.gif", "a\\\\b.gif", "moved\\.gif"]  # real backslashes: 1, 1, 2, 1
    for name in names:
        shutil.copy(shared_photos / "real/hopper.gif", root / name)
    db_path = tmp_path / "c.db"
    db = open_db(db_path)
    scan(db, Config(), [root], progress=False)
    rows = list(db.query("SELECT rowid, * FROM files"))
    db.close()
    # Before, a valid UTF-8 path was stored as it is: every text here was the path itself.
    undo = [("UPDATE files SET path = char(0) || rowid WHERE rowid = ?", [r["rowid"]]) for r in rows]
    undo += [("UPDATE files SET path = ?, path_bytes = NULL, name = ? WHERE rowid = ?",
              [fs_path(r), os.path.basename(fs_path(r)), r["rowid"]]) for r in rows]
    old_moved = str(root / "moved\\.gif")
    undo += [("UPDATE files SET status = 'moved', moved_to = ? WHERE path = ?", [str(root / "a\\b.gif"), old_moved]),
             ("INSERT INTO writeback_state (target, path, kind, keywords, written_at) "
              "VALUES (?, ?, 'sidecar', '[]', 'then')", [str(root / "x\\xff.gif.xmp"), str(root / "x\\xff.gif")])]
    _as_before(db_path, "m007_unambiguous_paths", undo)
    db = open_db(db_path)
    migrated = {r["name"]: r for r in db.query("SELECT * FROM files")}
    assert sorted(migrated) == sorted(n.replace("\\", "\\\\") for n in names)
    assert all(fs_path(r) == str(root / text_path(r["name"])) for r in migrated.values())
    assert migrated["moved\\\\.gif"]["moved_to"] == str(root) + "/a\\\\b.gif"
    assert next(db.query("SELECT * FROM writeback_state"))["target"] == str(root) + "/x\\\\xff.gif.xmp"
    os.unlink(old_moved)  # it was moved away, as its row says
    shutil.copy(shared_photos / "real/Pentax_K10D.jpg", os.fsencode(root) + b"/x\xff.gif")
    summary = scan(db, Config(), [root], progress=False)
    assert summary.new == 1 and summary.unchanged == 3 and summary.changed == 0
    assert db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0] == 4


def test_migration_splits_tiffs_that_shared_an_identity_and_both_keep_the_analysis(tmp_path):
    """A 100x200 and a 200x100 black TIFF were one analysed photo; after the upgrade, two, both analysed."""
    root = tmp_path / "lib"
    root.mkdir()
    Image.new("RGB", (100, 200)).save(root / "tall.tif")
    Image.new("RGB", (200, 100)).save(root / "wide.tif")
    Image.new("RGB", (50, 60), (200, 10, 10)).save(root / "red.tif")
    old = {p.name: identity_of(p).previous for p in root.iterdir()}
    assert old["tall.tif"] == old["wide.tif"]  # the strips alone, as the old code hashed
    db_path = tmp_path / "c.db"
    db = open_db(db_path)
    scan(db, Config(), [root], progress=False)
    db.close()
    paid = {"analysis_status": "done", "tags": '["black", "night"]', "description": "dark",
            "provider": "imgtags", "tokens_used": 321}
    statements = [("DELETE FROM photos", [])]
    for name, photo in old.items():
        statements += [
            ("UPDATE files SET photo_id = ? WHERE name = ?", [photo, name]),
            ("INSERT OR IGNORE INTO photos (id, format, width, height, first_seen, analysis_status, tags, "
             "description, provider, tokens_used) VALUES (?, 'TIFF', 100, 200, 'then', ?, ?, ?, ?, ?)",
             [photo, *paid.values()]),
            ("INSERT OR IGNORE INTO thumbnails VALUES (?, x'ffd8ffd9', 1, 1)", [photo]),
            ("INSERT OR IGNORE INTO photo_colors VALUES ('black', ?, 1.5)", [photo])]
    _as_before(db_path, "m008_tiff_layout_identity", statements)
    db = open_db(db_path)
    summary = scan(db, Config(), [root], progress=False)
    assert summary.changed == 3 and summary.errors == 0  # read again once, under the new identity
    photos = {r["name"]: r for r in db.query(
        "SELECT f.name, p.* FROM files f JOIN photos p ON p.id = f.photo_id")}
    assert len({p["id"] for p in photos.values()}) == 3
    for name, photo in photos.items():
        assert photo["id"] != old[name]
        assert {k: photo[k] for k in paid} == paid, name  # nothing to pay for again
        assert (photo["width"], photo["height"]) == Image.open(root / name).size
        assert db.execute("SELECT COUNT(*) FROM thumbnails WHERE photo_id = ?", [photo["id"]]).fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM photo_colors WHERE photo_id = ?", [photo["id"]]).fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM photos WHERE COALESCE(analysis_status, 'pending') = 'pending'"
                      ).fetchone()[0] == 0
    assert scan(db, Config(), [root], progress=False).unchanged == 3  # and then left alone again
