"""The scan's reads and writes of the files ledger: batched upserts, the missing sweep, moves."""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import TYPE_CHECKING

from catalog import db as catalog_db
from catalog.db import db_text, prefix_range

if TYPE_CHECKING:
    from catalog.imagefacts import ImageFacts

BATCH_ROWS = 500

UPSERT_PHOTO = """
INSERT INTO photos (id, format, width, height, orientation, taken_at, camera_make, camera_model,
                    gps_lat, gps_lon, exif_error, first_seen, phash, aspect, tone, detail, fingerprint_error)
VALUES (:id, :format, :width, :height, :orientation, :taken_at, :camera_make, :camera_model,
        :gps_lat, :gps_lon, :exif_error, :now, :phash, :aspect, :tone, :detail, :fingerprint_error)
ON CONFLICT(id) DO UPDATE SET format = excluded.format, width = excluded.width,
    height = excluded.height, orientation = excluded.orientation, taken_at = excluded.taken_at,
    camera_make = excluded.camera_make, camera_model = excluded.camera_model,
    gps_lat = excluded.gps_lat, gps_lon = excluded.gps_lon, exif_error = excluded.exif_error,
    phash = excluded.phash, aspect = excluded.aspect, tone = excluded.tone, detail = excluded.detail,
    fingerprint_error = excluded.fingerprint_error
"""
UPSERT_FILE = """
INSERT INTO files (path, path_bytes, root, folder, name, photo_id, size, mtime_ns, status, error,
                   error_kind, first_seen, last_seen)
VALUES (:path, :path_bytes, :root, :folder, :name, :photo_id, :size, :mtime_ns, :status, :error,
        :error_kind, :now, :now)
ON CONFLICT(path) DO UPDATE SET path_bytes = excluded.path_bytes, root = excluded.root,
    photo_id = excluded.photo_id, size = excluded.size, mtime_ns = excluded.mtime_ns,
    status = excluded.status, error = excluded.error, error_kind = excluded.error_kind,
    last_seen = excluded.last_seen, missing_since = NULL, moved_to = NULL
"""


SEEN_FOLDER = """
INSERT INTO folders (path, last_seen) VALUES (?, ?)
ON CONFLICT(path) DO UPDATE SET last_seen = excluded.last_seen
"""


# A present file found gone: last seen when its folder was last listed before this scan.
MARK_MISSING = ("UPDATE files SET status = 'missing', missing_since = ?1, last_seen = MAX(last_seen, ?2) "
                "WHERE status IN ('ok', 'error') AND ")


class LedgerBatch:
    """The pending writes of one scan: photo and file rows, folders listed, photos to re-index."""

    def __init__(self, db, now: str):
        self.db = db
        self.now = now
        self.photos: list[dict] = []
        self.files: list[dict] = []
        self.seen_folders: list[str] = []  # folders listed by this scan (their present files found)
        self.touched: set[str] = set()  # photos whose search text (their places) changed
        self.carried: list[tuple[str, str, str]] = []  # (old photo, new photo, path) re-identified

    def flush(self) -> None:
        """Write everything pending in one transaction (a killed scan loses at most this batch)."""
        if not (self.photos or self.files or self.seen_folders):
            return
        with self.db.atomic():
            conn = self.db.conn
            conn.executemany(UPSERT_PHOTO, self.photos)
            conn.executemany(UPSERT_FILE, self.files)
            for old, new, path in self.carried:
                catalog_db.carry_analysis(self.db, old, new, path)
            # Unchanged files are not written: one row per folder says when it was listed.
            conn.executemany(SEEN_FOLDER, [(f, self.now) for f in self.seen_folders])
            catalog_db.refresh_search_text(self.db, self.touched)
        self.touched, self.carried = set(), []
        self.photos, self.files, self.seen_folders = [], [], []


@functools.cache
def _photo_field_names(facts_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(facts_type) if f.name != "frames")


def photo_fields(facts: ImageFacts) -> dict:
    """The photo row's columns from the facts read by the scan."""
    # Not asdict(): its recursive deep copy cost more than the row's insert (the facts are flat).
    return {name: getattr(facts, name) for name in _photo_field_names(type(facts))}


def catalogued_count(db, low: str, high: str) -> int:
    """How many present files (ok or error) the ledger holds between two path bounds."""
    return db.execute(
        "SELECT COUNT(*) FROM files WHERE path >= ? AND path < ? AND status IN ('ok', 'error')",
        [low, high],
    ).fetchone()[0]


def folder_ledger(db, folder_text: str) -> dict:
    """The ledger of one folder: name -> (size, mtime_ns, status, error, photo_id)."""
    return {
        row[0]: row[1:]
        for row in db.execute(
            "SELECT name, size, mtime_ns, status, error, photo_id FROM files WHERE folder = ?",
            [folder_text],
        )
    }


def revive(db, path: str, error: str | None, now: str) -> None:
    """A missing file is back, untouched: present again without being read."""
    db.execute(
        "UPDATE files SET status = ?, missing_since = NULL, last_seen = ? WHERE path = ?",
        ["error" if error else "ok", now, db_text(path)[0]],
    )


def folder_last_seen(db, folder_text: str) -> str:
    """When a scan last listed this folder before this one ('' if never)."""
    row = db.execute("SELECT last_seen FROM folders WHERE path = ?", [folder_text]).fetchone()
    return row[0] if row else ""


def sweep_missing(db, now: str, root_text: str, gone, unreadable: list[str], skipped) -> int:
    """Mark missing what this scan did not find under a root; return how many.

    `gone`: (path, when its folder was listed before) of present files absent from the
    folders this scan listed; besides them, every present file of a folder under the root
    that was not listed. Files under folders we could not list, and paths the walk could
    not stat (`skipped`), are not gone: they keep their state.
    """
    kept = {db_text(path)[0] for path, _reason in skipped}
    low, high = prefix_range(root_text)
    missing = 0
    with db.atomic():
        for folder in unreadable:
            f_text = db_text(folder)[0]
            f_low, f_high = prefix_range(f_text)
            db.execute("UPDATE folders SET last_seen = ? WHERE path = ? OR (path >= ? AND path < ?)",
                       [now, f_text, f_low, f_high])
        for path, seen_before in gone:
            if path not in kept:
                missing += db.execute(MARK_MISSING + "path = ?", [now, seen_before, path]).rowcount
        unlisted = db.execute(
            "SELECT path, last_seen FROM folders WHERE (path = ? OR (path >= ? AND path < ?)) AND last_seen < ?",
            [root_text, low, high, now]).fetchall()
        for folder, seen_before in unlisted:
            missing += db.execute(MARK_MISSING + "folder = ?", [now, seen_before, folder]).rowcount
        if missing:
            gone_photos = db.execute(
                "SELECT DISTINCT photo_id FROM files WHERE status = 'missing' AND missing_since = ?",
                [now]).fetchall()
            catalog_db.refresh_search_text(db, [r[0] for r in gone_photos])
    return missing


def mark_moves(db, now: str) -> list[str]:
    """A new path whose identity belongs to a missing file is that file, moved or renamed.

    Returns, for each move, when its old path went missing (`now` if in this very scan).
    """
    rows = db.execute(
        """
        SELECT n.path, o.path, o.missing_since, n.photo_id FROM files n
        JOIN files o ON o.photo_id = n.photo_id AND o.status = 'missing'
        WHERE n.first_seen = ? AND n.status = 'ok'
        ORDER BY n.photo_id, n.path, o.path
        """,
        [now],
    ).fetchall()
    used_new, used_old, moves = set(), set(), []
    with db.atomic():
        for new_path, old_path, missing_since, _photo in rows:
            if new_path in used_new or old_path in used_old:
                continue
            used_new.add(new_path)
            used_old.add(old_path)
            db.execute(
                "UPDATE files SET status = 'moved', moved_to = ? WHERE path = ?",
                [new_path, old_path],
            )
            moves.append(missing_since)
        catalog_db.refresh_search_text(db, [r[3] for r in rows])
    return moves
