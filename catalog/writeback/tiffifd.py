"""IFD0 of a TIFF structure (an EXIF blob or a whole TIFF file) edited without moving any other byte.

EXIF is not rewritten by piexif (its load/dump round trip drops tags it does not know, InteropIFD
and IFD1 strips, and breaks maker-note offsets): IFD0 alone is rebuilt at the end of the TIFF
structure, every other byte stays where it was, so all offsets stay valid. piexif (only ever
through catalog.exifcheck) checks that the EXIF is sound and gives callers a dict to read.
Every container writer (jpeg, png, webp, tiff) builds on this module; the WriteBackError they
all raise lives in catalog.errors.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence


from catalog import exifcheck
from catalog.containers import TYPE_SIZES, BrokenImage, ifd_entries, ifd_offset, ifd_value, tiff_order
from catalog.errors import WriteBackError

EXIF_HEAD = exifcheck.EXIF_HEAD
DESCRIPTION, XP_KEYWORDS = 270, 40094
BYTE, ASCII, LONG, UNDEFINED = 1, 2, 4, 7
EMPTY_TIFF = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 6  # header + IFD0 with no entries

Change = tuple[int, bytes] | None  # (TIFF type, value bytes), or None: remove the tag


def exif_dict(tiff: bytes) -> dict:
    try:
        return exifcheck.load(tiff)
    except exifcheck.ExifUnreadable as e:
        raise WriteBackError(f"its EXIF is damaged ({e}); left alone so nothing of it "
                             "is lost (repair it, e.g. with exiftool, or use a sidecar)") from None


def keyword_changes(keywords: Sequence[str], description: str | None) -> dict[int, Change]:
    """XPKeywords (UCS-2 LE, ";"-separated) = the full list; ImageDescription as UTF-8.

    EXIF says ASCII for ImageDescription; we write UTF-8 as MWG recommends and exiftool
    and Windows read it, rather than lose the accents. "" removes it, None leaves it.
    """
    xp = ";".join(keywords).encode("utf-16-le") + b"\x00\x00" if keywords else None
    changes: dict[int, Change] = {XP_KEYWORDS: (BYTE, xp) if xp else None}
    if description is not None:
        changes[DESCRIPTION] = (ASCII, description.encode("utf-8") + b"\x00") if description else None
    return changes


def ifd0(tiff: bytes) -> tuple[str, int, list[tuple[int, int, int, bytes]], bytes]:
    """Byte order, IFD0's offset, its entries (tag, type, count, 4-byte field), its next-IFD link."""
    order = tiff_order(tiff)
    if order is None:
        raise WriteBackError("not a classic TIFF/EXIF structure (BigTIFF is not supported)")
    try:
        off = ifd_offset(tiff, order)
        entries = ifd_entries(tiff, order, off)
    except BrokenImage:
        raise WriteBackError("its TIFF/EXIF directory is truncated; left alone") from None
    link = tiff[off + 2 + 12 * len(entries):off + 6 + 12 * len(entries)]
    if len(link) < 4:
        raise WriteBackError("its TIFF/EXIF directory is truncated; left alone")
    return order, off, entries, link


def _span(order: str, entry) -> tuple[int, int] | None:
    """Where an entry's value lives when it does not fit in the entry; None when inline/unknown."""
    _, kind, count, field = entry
    size = TYPE_SIZES.get(kind, 0) * count
    if size <= 4:
        return None
    start = struct.unpack(order + "I", field)[0]
    return start, start + size


def tail_is_ifd0(tiff: bytes, order: str, off: int, entries) -> bool:
    """True when everything from IFD0 on is IFD0 and its own values (what we append): rewritable."""
    if any(kind not in TYPE_SIZES for _, kind, _, _ in entries):
        return False
    end = off + 6 + 12 * len(entries)
    for start, stop in sorted(s for s in (_span(order, e) for e in entries) if s and s[0] >= off):
        if not end <= start <= end + 3:
            return False
        end = stop
    return 0 <= len(tiff) - end <= 3


def set_ifd0(tiff: bytes, changes: dict[int, Change]) -> bytes:
    """`tiff` with IFD0's tags changed; the new IFD0 goes at the end, nothing else moves.

    When IFD0 already sits at the end with only its values after it (our earlier write),
    it is rewritten in place instead, so repeated writes do not grow the file.
    """
    order, off, entries, link = ifd0(tiff)
    current = {e[0]: e for e in entries}
    if all((current.get(tag) is None) if ch is None else
           (tag in current and current[tag][1] == ch[0] and ifd_value(tiff, order, current[tag]) == ch[1])
           for tag, ch in changes.items()):
        return tiff
    cut = off if tail_is_ifd0(tiff, order, off, entries) else len(tiff)
    rows: list[tuple[int, int, int, bytes, bool]] = []  # tag, type, count, field or value, is_field
    for entry in entries:
        if entry[0] not in changes:
            span = _span(order, entry)
            moved = span is not None and span[0] >= cut
            rows.append((*entry[:3], tiff[span[0]:span[1]] if moved else entry[3], not moved))
    rows += [(tag, ch[0], len(ch[1]) // TYPE_SIZES[ch[0]], ch[1], False)
             for tag, ch in changes.items() if ch is not None]
    rows.sort(key=lambda row: row[0])
    out = bytearray(tiff[:cut]) + b"\x00" * (cut & 1)
    at = len(out)
    values_at = at + 6 + 12 * len(rows)
    table, values = bytearray(struct.pack(order + "H", len(rows))), bytearray()
    for tag, kind, count, data, is_field in rows:
        if not is_field and len(data) > 4:
            field = struct.pack(order + "I", values_at + len(values))
            values += data + b"\x00" * (len(data) & 1)
        else:
            field = data.ljust(4, b"\x00")
        table += struct.pack(order + "HHI", tag, kind, count) + field
    out += table + link + values
    out[4:8] = struct.pack(order + "I", at)
    return bytes(out)
