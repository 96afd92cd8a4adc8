"""The EXIF tags the scan reads, straight from a JPEG's APP1 bytes: Pillow's values, a fifth of its cost.

Pillow's Exif loads every tag of every directory through Python objects; a first scan of
small photos spent a quarter of its time there. `plain_exif` walks the same bytes with
catalog.containers' directory walker and returns exactly what Pillow would give for the few
tags imagefacts reads, but only in the plain, well-formed case: anything unusual (a value
past the end, a type or count Pillow would treat specially, an orientation that only XMP
holds) returns None, and Pillow reads the file as before, warnings and all.
"""

from __future__ import annotations

import re
import struct

from PIL import TiffTags

from catalog.containers import TYPE_SIZES, BrokenImage, ifd_offset, iter_ifd, tiff_order

_PREFIX = re.compile(rb"^(Exif\x00\x00){1,2}")  # what Pillow's Exif.load strips
IFD0, IFD_EXIF, IFD_GPS = 0, 0x8769, 0x8825
ASCII, SHORT, LONG, RATIONAL = 2, 3, 4, 5
SINGLE_VALUE_TYPES = (1, ASCII, 7)  # BYTE, ASCII and UNDEFINED read as one value (bytes or text)
# (directory, tag) -> the (type, count) read here; count None: any (text)
EXPECTED = {
    (IFD0, 0x0112): (SHORT, 1), (IFD0, 0x010F): (ASCII, None), (IFD0, 0x0110): (ASCII, None),
    (IFD0, 0x0132): (ASCII, None), (IFD0, IFD_EXIF): (LONG, 1), (IFD0, IFD_GPS): (LONG, 1),
    (IFD_EXIF, 0x9003): (ASCII, None),
    (IFD_GPS, 1): (ASCII, None), (IFD_GPS, 2): (RATIONAL, 3), (IFD_GPS, 3): (ASCII, None), (IFD_GPS, 4): (RATIONAL, 3),
}


class Unusual(Exception):
    """Not the plain case: Pillow reads this one."""


class PlainExif(dict):
    """IFD0's tags read here as a dict, the Exif and GPS directories through get_ifd (as Image.Exif)."""

    def __init__(self, ifd0: dict, subs: dict[int, dict]):
        super().__init__(ifd0)
        self._subs = subs

    def get_ifd(self, tag: int) -> dict:
        return self._subs.get(tag, {})


def plain_exif(raw: bytes | None, *, xmp: bool) -> PlainExif | None:
    """The tags imagefacts reads from a JPEG's EXIF bytes (Pillow's info["exif"]); None when
    Pillow should read them (`xmp`: the file has XMP, where Pillow looks for a missing orientation)."""
    if not raw:
        return None
    data = _PREFIX.sub(b"", raw)
    try:
        order = tiff_order(data)
        if order is None:
            raise Unusual
        ifd0 = _directory(data, order, IFD0, ifd_offset(data, order))
        subs = {tag: _directory(data, order, tag, ifd0[tag]) for tag in (IFD_EXIF, IFD_GPS) if tag in ifd0}
    except (Unusual, BrokenImage, struct.error):
        return None
    if 0x0112 not in ifd0 and xmp:
        return None
    return PlainExif(ifd0, subs)


def _directory(data: bytes, order: str, group: int, offset: int) -> dict:
    """The wanted tags of one directory, after checking every entry as Pillow's loader would."""
    count = struct.unpack(order + "H", data[offset : offset + 2])[0] if offset + 2 <= len(data) else -1
    if count < 0 or offset + 2 + 12 * count + 4 > len(data):
        raise Unusual  # Pillow: a warning (the directory or its next-pointer is cut short)
    found, seen, total = {}, set(), 0
    for tag, kind, n, field in iter_ifd(data, order, offset):
        if tag in seen:
            continue  # the first entry of a tag wins, as in Pillow
        if kind not in TYPE_SIZES:
            raise Unusual
        size = TYPE_SIZES[kind] * n
        if size > 4:
            start = struct.unpack(order + "I", field)[0]
            total += size
            if total > len(data) or start + size > len(data):
                raise Unusual  # Pillow: "Possibly corrupt EXIF data" / "Tag data larger than file"
            value = data[start : start + size]
        else:
            value = field[:size]
        if not value:
            continue  # Pillow skips an empty entry without counting it seen
        seen.add(tag)
        if group != IFD0 and n > 1 and kind not in SINGLE_VALUE_TYPES and TiffTags.lookup(tag, group).length == 1:
            raise Unusual  # Pillow reads every tag of these directories and warns of this one
        wanted = EXPECTED.get((group, tag))
        if wanted is None:
            continue
        if kind != wanted[0] or (wanted[1] is not None and n != wanted[1]):
            raise Unusual
        found[tag] = _value(kind, n, value, order)
    return found


def _value(kind: int, n: int, raw: bytes, order: str):
    if kind == ASCII:
        return (raw[:-1] if raw.endswith(b"\0") else raw).decode("latin-1", "replace")
    if kind == RATIONAL:
        pairs = struct.unpack(f"{order}{2 * n}I", raw)
        return tuple(a / b if b else float("nan") for a, b in zip(pairs[::2], pairs[1::2]))
    return struct.unpack(order + ("H" if kind == SHORT else "I"), raw)[0]
