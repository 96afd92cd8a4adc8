"""Fingerprints into the catalogue: the scan's one call per new or changed file, and the backfill.

The scan hands `opened_fingerprint_columns` the image it has just read the facts from (one
read, one open, one decode) and writes the columns with the photo's facts. Photos catalogued before fingerprints existed
(migration m011) have NULL there: `backfill_fingerprints`, run at the end of every scan,
reads each such photo's file once. A picture that cannot be decoded gets its reason in
`fingerprint_error` and is not tried again (a changed file is a new scan of it); a file that
cannot be read just now (moved, EIO on a sleeping NAS) is left NULL and tried next time.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import BinaryIO

from catalog.containers import BrokenImage
from catalog.similar.fingerprint import Fingerprint, fingerprint_opened, fingerprint_stream, to_db

log = logging.getLogger("catalog.similar")
PAGE = 200  # photos read from the database, fingerprinted and committed at a time

PENDING = """
SELECT p.id, p.orientation, f.path, f.path_bytes FROM photos p
JOIN files f ON f.rowid = (SELECT f2.rowid FROM files f2 WHERE f2.photo_id = p.id AND f2.status = 'ok'
                           ORDER BY f2.path LIMIT 1)
WHERE p.phash IS NULL AND p.fingerprint_error IS NULL AND p.id > :after
ORDER BY p.id LIMIT :page
"""
STORE = """
UPDATE photos SET phash = :phash, aspect = :aspect, tone = :tone, detail = :detail,
                  fingerprint_error = :fingerprint_error
WHERE id = :id
"""


@dataclass
class BackfillSummary:
    made: int = 0
    undecodable: int = 0  # recorded in fingerprint_error, not tried again
    unreadable: int = 0  # left for the next scan

    def as_dict(self) -> dict:
        return asdict(self)


def columns(fingerprint: Fingerprint | None, error: str | None = None) -> dict:
    """The photos columns of a fingerprint (or of the reason there is none)."""
    if fingerprint is None:
        return {"phash": None, "aspect": None, "tone": None, "detail": None, "fingerprint_error": error}
    return {"phash": to_db(fingerprint.phash), "aspect": fingerprint.aspect, "tone": fingerprint.tone,
            "detail": fingerprint.detail or None, "fingerprint_error": None}


def fingerprint_columns(f: BinaryIO, orientation: int | None, max_image_pixels: int) -> dict:
    """The scan's call: the columns for the image in `f` (rewound here). An undecodable picture
    is a recorded reason, never a failed file; an OSError (the read failed) propagates."""
    f.seek(0)
    return _columns_or_reason(lambda: fingerprint_stream(f, orientation, max_image_pixels=max_image_pixels))


def opened_fingerprint_columns(image, orientation: int | None) -> dict:
    """The scan's call, on the image it holds open (header read, see fingerprint_opened)."""
    return _columns_or_reason(lambda: fingerprint_opened(image, orientation))


def _columns_or_reason(make) -> dict:
    try:
        return columns(make())
    except BrokenImage as exc:
        return columns(None, str(exc)[:300])


def _fingerprint_one(row: dict, max_image_pixels: int) -> dict | None:
    """Columns for one pending photo, or None when its file cannot be read just now."""
    from catalog.db import fs_path
    from catalog.libfile import open_library_file

    try:
        with open_library_file(fs_path(row)) as f:
            return {"id": row["id"], **fingerprint_columns(f, row["orientation"], max_image_pixels)}
    except OSError as exc:
        log.info("%s: no fingerprint yet, cannot read it (%s)", row["path"], exc.strerror or exc)
        return None


def backfill_fingerprints(db, config, *, progress: bool = False) -> BackfillSummary:
    """Fingerprint the photos that have none (catalogued before m011, or unreadable last time),
    each from one read of one of its files; committed a page at a time."""
    from catalog.progress import progress_bar

    summary = BackfillSummary()
    max_px = config.scan.max_image_pixels
    bar = None
    after = ""
    with ThreadPoolExecutor(max_workers=max(1, config.scan.hash_workers)) as pool:
        try:
            while True:
                rows = [dict(zip(("id", "orientation", "path", "path_bytes"), r))
                        for r in db.execute(PENDING, {"after": after, "page": PAGE}).fetchall()]
                if not rows:
                    return summary
                if bar is None and progress:
                    bar = progress_bar(unit=" photos", desc="fingerprints")
                found = list(pool.map(lambda row: _fingerprint_one(row, max_px), rows))
                done = [c for c in found if c is not None]
                with db.atomic():
                    db.conn.executemany(STORE, done)
                summary.unreadable += len(found) - len(done)
                summary.undecodable += sum(c["fingerprint_error"] is not None for c in done)
                summary.made += sum(c["fingerprint_error"] is None for c in done)
                if bar is not None:
                    bar.update(len(rows))
                after = rows[-1]["id"]
        finally:
            if bar is not None:
                bar.close()
