"""The one home of piexif: EXIF read and GPS stripped only after a guard refuses counts that cannot fit.

piexif believes an entry's count and builds a struct format that long, so a damaged count of
a few billion would make it allocate gigabytes; and its load/dump round trip drops tags it
does not know. So every piexif call goes through here, after check_counts, and any failure
of piexif on broken EXIF comes out as one ExifUnreadable (or, for GPS stripping, None).
"""

from __future__ import annotations

import piexif

from catalog.containers import TYPE_SIZES, ifd_offset, iter_ifd

EXIF_HEAD = b"Exif\x00\x00"
SUB_IFDS = (34665, 34853, 40965)  # the Exif, GPS and Interoperability directories


class ExifUnreadable(ValueError):
    """piexif cannot read this EXIF (or the guard refused it); the message names why."""


def check_counts(tiff: bytes) -> None:
    """Raise ValueError for directories whose entries claim more bytes than the block holds.

    The walk covers what piexif reads: IFD0, the IFD1 it links to, and the Exif, GPS and
    Interoperability directories; a truncated directory raises BrokenImage.
    """
    order = "<" if tiff[:1] == b"I" else ">"
    n, seen = len(tiff), set()
    ifd0 = ifd_offset(tiff, order)
    todo = [ifd0]
    while todo:
        off = todo.pop()
        if not off or off in seen:
            continue
        seen.add(off)
        count = 0
        for tag, kind, num, field in iter_ifd(tiff, order, off):
            count += 1
            if TYPE_SIZES.get(kind, 1) * num > n:
                raise ValueError(f"tag {tag} claims {num:,} values in a {n:,}-byte block")
            if tag in SUB_IFDS:
                todo.append(int.from_bytes(field, "little" if order == "<" else "big"))
        if off == ifd0:  # only IFD0 links on (to IFD1); what follows a sub-directory is no link
            todo.append(ifd_offset(tiff, order, off + 2 + 12 * count))


def load(tiff: bytes) -> dict:
    """piexif's dict of an EXIF TIFF structure (without the "Exif\\0\\0" head); ExifUnreadable if broken."""
    try:
        check_counts(tiff)
        return piexif.load(EXIF_HEAD + tiff)
    except Exception as e:  # piexif raises struct.error, TypeError, ValueError... on broken EXIF
        raise ExifUnreadable(f"{type(e).__name__}: {e}") from None


def without_gps(exif: bytes) -> bytes | None:
    """An APP1 EXIF payload ("Exif\\0\\0" + TIFF) without GPS and thumbnail; `exif` itself when it
    has no location; None when piexif cannot read or rewrite it (the caller drops it whole)."""
    try:
        found = load(exif[len(EXIF_HEAD):])
        if not any(tag != 0 for tag in found["GPS"]):
            return exif
        found["GPS"], found["1st"], found["thumbnail"] = {}, {}, None
        found["0th"].pop(piexif.ImageIFD.GPSTag, None)
        return piexif.dump(found)
    except Exception:  # piexif's dump fails on odd values it loaded
        return None
