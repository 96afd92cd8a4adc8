"""The thumbnail stage: a small JPEG of every photo, made from its original and kept in the database.

A thumbnail is about 256 px on its long edge and a few KB (at most MAX_BYTES), so browsing the
catalogue (Datasette) never needs the originals: it works while the NAS sleeps.
It costs no API call, so it is its own stage (`catalog thumbnails`, and a task of
the nightly run) whatever the analyzer. JPEGs are decoded at a reduced scale
(`Image.draft`); other formats decode whole, inside the upload preparation's
memory gate (DECODE_GATE) and under the scan's pixel limit. The result is upright
and carries no metadata (no EXIF, so no GPS).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass
from typing import BinaryIO, Iterable

log = logging.getLogger("catalog.thumbnails")
EDGE = 256
QUALITY = 75
MAX_BYTES = 15 * 1024  # issue 14: a busy picture (foliage, a screenshot) steps its quality down
LOWER_QUALITIES = (65, 55, 45)  # until under it (beets' artresizer does the same); 45 is the floor
PAGE = 200  # photos read from the database at a time: memory stays flat on a big library

MISSING = """
SELECT p.id, f.path, f.path_bytes FROM photos p
JOIN files f ON f.rowid = (SELECT f2.rowid FROM files f2 WHERE f2.photo_id = p.id AND f2.status = 'ok'
                           ORDER BY f2.path LIMIT 1)
WHERE NOT EXISTS (SELECT 1 FROM thumbnails th WHERE th.photo_id = p.id) AND p.id > :after {only}
ORDER BY p.id LIMIT :page
"""


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    width: int
    height: int


@dataclass
class ThumbnailSummary:
    made: int = 0
    failed: int = 0  # unreadable or undecodable originals: tried again on the next run

    def as_dict(self) -> dict:
        return asdict(self)


def make_thumbnail(source: bytes | BinaryIO, edge: int = EDGE, *,
                   max_image_pixels: int | None = None) -> Thumbnail | None:
    """A JPEG of this image (bytes or an open file) at most `edge` px on its long side, upright;
    None if unreadable. A thumbnail is a convenience: it never fails anything else."""
    from PIL import Image, ImageOps  # here, not at import: the CLI stays light to import

    from catalog.decoding import DECODE_GATE, decoded_bytes, flatten, pixel_limit

    try:
        with pixel_limit(max_image_pixels), \
                Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            scale = min(1.0, edge / max(im.size))
            # JPEG: decode at 1/2, 1/4 or 1/8 scale. The box keeps the photo's aspect ratio:
            # draft scales by the tighter side, so a square box would waste the reduction.
            im.draft("RGB", (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            with DECODE_GATE.slot(decoded_bytes(im.size, im.mode)):
                im.thumbnail((edge, edge), Image.Resampling.LANCZOS, reducing_gap=2.0)
                small = ImageOps.exif_transpose(flatten(im))
        for quality in (QUALITY, *LOWER_QUALITIES):
            out = io.BytesIO()
            small.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= MAX_BYTES:
                break
    except Exception as exc:  # noqa: BLE001 - any decoder error just means "no thumbnail"
        log.debug("no thumbnail: %s", exc)
        return None
    return Thumbnail(out.getvalue(), small.width, small.height)


def store_thumbnail(db, photo_id: str, thumbnail: Thumbnail | None) -> None:
    """Keep (or replace) a photo's thumbnail."""
    if thumbnail is None:
        return
    db.execute(
        "INSERT INTO thumbnails (photo_id, jpeg, width, height) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(photo_id) DO UPDATE SET jpeg = excluded.jpeg, width = excluded.width, "
        "height = excluded.height",
        [photo_id, thumbnail.jpeg, thumbnail.width, thumbnail.height],
    )


def missing_thumbnails(db, photo_ids: Iterable[str] | None = None) -> Iterable[dict]:
    """Photos present in the library without a thumbnail (only `photo_ids`, if given), one file each."""
    only, params = "", {}
    if photo_ids is not None:
        only = "AND p.id IN (SELECT value FROM json_each(:ids))"
        params["ids"] = json.dumps(list(photo_ids))
    after = ""
    while True:
        rows = [dict(zip(("id", "path", "path_bytes"), r)) for r in db.execute(
            MISSING.format(only=only), {**params, "after": after, "page": PAGE}).fetchall()]
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1]["id"]


def fill_thumbnails(db, config, *, photo_ids: Iterable[str] | None = None,
                    progress: bool = True) -> ThumbnailSummary:
    """Make the missing thumbnails from the originals (only of `photo_ids`, if given); each is
    committed as it is made. A file that cannot be read is counted and tried again next time."""
    from catalog.db import fs_path
    from catalog.libfile import open_library_file
    from catalog.progress import progress_bar

    summary = ThumbnailSummary()
    bar = progress_bar(unit=" photos", desc="thumbnails", **({} if progress else {"disable": True}))
    try:
        for row in missing_thumbnails(db, photo_ids):
            try:
                with open_library_file(fs_path(row)) as f:
                    thumbnail = make_thumbnail(f, max_image_pixels=config.scan.max_image_pixels)
            except OSError as exc:
                log.debug("%s: cannot read it (%s)", row["path"], exc)
                thumbnail = None
            if thumbnail is None:
                summary.failed += 1
                log.info("%s: no thumbnail (unreadable or not an image we decode)", row["path"])
            else:
                with db.atomic():
                    store_thumbnail(db, row["id"], thumbnail)
                summary.made += 1
            bar.update()
    finally:
        bar.close()
    return summary
