"""Small JPEG thumbnails, made from the upload copy during analysis and kept in the database.

A thumbnail is about 256 px on its long edge and a few KB, so browsing the
catalogue (Datasette) never needs the originals: it works while the NAS sleeps.
It is made from the prepared upload, which is already upright and GPS-free, and
JPEGs are decoded at a reduced scale (`Image.draft`), so it costs little; other
formats decode whole, inside the upload preparation's memory gate.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("catalog.thumbnails")
EDGE = 256
QUALITY = 75


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    width: int
    height: int


def make_thumbnail(data: bytes, edge: int = EDGE) -> Thumbnail | None:
    """A JPEG of these image bytes at most `edge` px on its long side; None if unreadable.

    A thumbnail is a convenience: it never fails an analysis.
    """
    from PIL import Image  # here, not at import: the analysis module stays light to import

    from catalog.prepare import DECODE_GATE, decoded_bytes

    try:
        with Image.open(io.BytesIO(data)) as im:
            scale = min(1.0, edge / max(im.size))
            # JPEG: decode at 1/2, 1/4 or 1/8 scale. The box keeps the photo's aspect ratio:
            # draft scales by the tighter side, so a square box would waste the reduction.
            im.draft("RGB", (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            with DECODE_GATE.slot(decoded_bytes(im.size, im.mode)):
                im.thumbnail((edge, edge), Image.Resampling.LANCZOS, reducing_gap=2.0)
                small = _flatten(im)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=QUALITY, optimize=True)
    except Exception as exc:  # noqa: BLE001 - any decoder error just means "no thumbnail"
        log.debug("no thumbnail: %s", exc)
        return None
    return Thumbnail(out.getvalue(), small.width, small.height)


def _flatten(im: Image.Image) -> Image.Image:
    """RGB or grayscale pixels; transparency goes onto white, as a viewer would show it."""
    if im.mode in ("RGB", "L"):
        return im.copy()
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return im.convert("RGB")


def store_thumbnail(db, photo_id: str, thumbnail: Thumbnail | None) -> None:
    """Keep (or replace) a photo's thumbnail; call inside the writer's transaction."""
    if thumbnail is None:
        return
    db.execute(
        "INSERT INTO thumbnails (photo_id, jpeg, width, height) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(photo_id) DO UPDATE SET jpeg = excluded.jpeg, width = excluded.width, "
        "height = excluded.height",
        [photo_id, thumbnail.jpeg, thumbnail.width, thumbnail.height],
    )
