"""The one walker of image containers: JPEG marker segments, PNG and RIFF chunks, TIFF directories.

Identity (what to hash), prepare (what to strip from an upload) and write-back (what to
rebuild) all walk files through here. The walkers only index and slice `buf`, so they work
on bytes and on a FileView of a large file alike; they never decode pixels. Damage the walk
itself meets (a missing marker, a chunk running past the end) raises BrokenImage; callers
turn it into their own error.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# TIFF field types and their sizes in bytes (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE,
# UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD, LONG8, SLONG8, IFD8).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}
# A real marker inside entropy-coded data: FF followed by neither a stuffed 00, a restart
# marker nor another FF (fill).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

# Per marker byte: 1 for segments with a length that are neither APPn nor COM (the coding
# tables, frame and scan headers), and 1 for APPn and COM (metadata). Lookups, not
# comparisons, since identity runs this for every segment of every photo.
JPEG_METADATA_MARKERS = bytes(1 if 0xE0 <= m <= 0xEF or m == 0xFE else 0 for m in range(256))
JPEG_TABLE_MARKERS = bytes(0 if JPEG_METADATA_MARKERS[m] or m in (0x01, 0xFF) or 0xD0 <= m <= 0xD9 else 1
                           for m in range(256))


class BrokenImage(Exception):
    """The container is damaged (truncated, no image data); `kind` names the problem."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def jpeg_has_length(marker: int) -> bool:
    """False for a fill byte (FF) and the standalone markers (TEM, RSTn, SOI, EOI)."""
    return bool(JPEG_TABLE_MARKERS[marker] or JPEG_METADATA_MARKERS[marker])



def jpeg_segments(buf) -> tuple[list[tuple[int, int, int]], int]:
    """(marker, start, end) of everything between SOI and the first scan, and where that scan starts.

    Fill bytes (marker 0xFF, one byte) and standalone markers (two bytes) are listed too, so
    the segments joined give back the header verbatim.
    """
    n = len(buf)
    pos, segments = 2, []
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            raise BrokenImage(f"JPEG damaged: no segment marker at byte {pos}", "corrupt")
        marker = buf[pos + 1]
        if marker == 0xD9:
            break
        if marker == 0xDA:
            return segments, pos
        if marker == 0xFF:
            end = pos + 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:
            end = pos + 2
        else:
            end = pos + 2 + ((buf[pos + 2] << 8) | buf[pos + 3])
            if end > n:
                raise BrokenImage("JPEG is truncated inside its header", "truncated")
        segments.append((marker, pos, end))
        pos = end
    raise BrokenImage("JPEG has no image data (truncated before the first scan)", "truncated")


def jpeg_image_end(buf, sos: int) -> int:
    """Where the main image that starts scanning at `sos` ends: just after its end-of-image marker.

    Markers are followed through every scan and table between scans, so an EXIF thumbnail's
    FFD9 never passes for the end; MPO frames and trailers after it are not part of it.
    """
    n, pos = len(buf), sos
    while True:
        if pos + 2 > n or buf[pos] != 0xFF:
            raise BrokenImage("JPEG is truncated or its header is broken", "truncated")
        marker = buf[pos + 1]
        if marker == 0xD9:
            return pos + 2
        end = pos + 2 + ((buf[pos + 2] << 8) | buf[pos + 3]) if pos + 4 <= n else n + 1
        if end > n:
            raise BrokenImage("JPEG is truncated inside a header segment", "truncated")
        found = _JPEG_MARKER.search(buf, end)
        if found is None:
            raise BrokenImage("JPEG is truncated: no end-of-image marker", "truncated")
        pos = found.start()


def png_chunks(buf) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each whole chunk (length, type, body, CRC) from the signature through IEND."""
    n = len(buf)
    pos, chunks = 8, []
    while pos + 12 <= n:
        end = pos + 12 + int.from_bytes(buf[pos : pos + 4], "big")
        if end > n:
            break
        ctype = bytes(buf[pos + 4 : pos + 8])
        chunks.append((ctype, pos, end))
        if ctype == b"IEND":
            return chunks
        pos = end
    raise BrokenImage("PNG is truncated: it ends before its IEND chunk", "truncated")


def riff_chunks(buf) -> tuple[list[tuple[bytes, int, int]], int]:
    """(fourcc, start, end) of each chunk of a RIFF file (end: after the payload, before its pad
    byte), and where the RIFF ends as its header declares (which may be past the file's end)."""
    n = len(buf)
    declared = 8 + int.from_bytes(buf[4:8], "little")
    riff_end = min(n, declared)
    pos, chunks = 12, []
    while pos + 8 <= riff_end:
        end = pos + 8 + int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if end > n:
            raise BrokenImage("WebP is truncated inside a chunk", "truncated")
        chunks.append((bytes(buf[pos : pos + 4]), pos, end))
        pos = end + (end & 1)  # chunks are padded to even sizes
    return chunks, declared


def tiff_order(buf) -> str | None:
    """The struct byte order of a classic TIFF structure ("<" or ">"), None for anything else (BigTIFF)."""
    head = bytes(buf[:4])
    return "<" if head == b"II*\x00" else ">" if head == b"MM\x00*" else None


def ifd_offset(buf, order: str, at: int = 4) -> int:
    """The directory offset stored at `at` (4: IFD0's, in the header)."""
    raw = bytes(buf[at : at + 4])
    if len(raw) < 4:
        raise BrokenImage("TIFF is truncated inside its header", "truncated")
    return struct.unpack(order + "I", raw)[0]


def iter_ifd(buf, order: str, offset: int) -> Iterator[tuple[int, int, int, bytes]]:
    """(tag, type, count, 4-byte value field) of each entry of the directory at `offset`, in order;
    BrokenImage at the first entry the buffer does not hold whole."""
    head = bytes(buf[offset : offset + 2])
    if len(head) < 2:
        raise BrokenImage("TIFF is truncated inside a directory", "truncated")
    count = struct.unpack(order + "H", head)[0]
    table = bytes(buf[offset + 2 : offset + 2 + 12 * count])
    yield from struct.iter_unpack(order + "HHI4s", table[: len(table) - len(table) % 12])
    if len(table) < 12 * count:
        raise BrokenImage("TIFF is truncated inside a directory", "truncated")


def ifd_entries(buf, order: str, offset: int) -> list[tuple[int, int, int, bytes]]:
    """All entries of the directory at `offset` (see iter_ifd)."""
    return list(iter_ifd(buf, order, offset))


def ifd_value(buf, order: str, entry: tuple[int, int, int, bytes]) -> bytes:
    """An entry's value bytes: in its field when they fit in four bytes, else where it points."""
    _, kind, count, field = entry
    size = TYPE_SIZES.get(kind, 0) * count
    if size <= 4:
        return field[:size]
    start = struct.unpack(order + "I", field)[0]
    return bytes(buf[start : start + size])
