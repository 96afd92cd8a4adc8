"""Keywords and captions written into a photo's own EXIF/IPTC/XMP without re-encoding a pixel, and undone byte for byte.

Every format is edited as a container, walked by catalog.containers: JPEG marker segments
(jpeg.py), PNG chunks (png.py), RIFF chunks (webp.py), TIFF directories (tiff.py; EXIF and
TIFF IFD0 edits in tiffifd.py).
Pixel data is never decoded and never moved, so the payload identity (catalog.identity) and
the decoded image stay the same. This module is the one callers use: it picks the format's
module, turns damaged metadata into WriteBackError, and takes and restores undo snapshots.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from catalog.containers import BrokenImage
from catalog.errors import WriteBackError
from catalog.identity import payload_ranges
from catalog.writeback import iptc as iim
from catalog.writeback import jpeg, png, tiff, webp
from catalog.writeback.tiffifd import keyword_changes

FIELDS = {"JPEG": ("xmp", "iptc", "exif"), "PNG": ("xmp", "iptc", "exif"),
          "WEBP": ("xmp", "exif"), "TIFF": ("xmp", "iptc", "exif")}
READERS = {"JPEG": jpeg.read, "PNG": png.read, "WEBP": webp.read, "TIFF": tiff.read}
WRITERS = {"JPEG": jpeg.write, "PNG": png.write, "WEBP": webp.write, "TIFF": tiff.write}
LAYOUTS = {"JPEG": jpeg.layout, "PNG": png.layout, "TIFF": tiff.layout}  # anything else: WebP's
SNAP_MAGIC = b"CWBSNAP1"

_jpeg_head, _fix_mpf = jpeg.header, jpeg.fix_mpf  # the tests look inside JPEG segments with these


@dataclass(frozen=True)
class Embedded:
    xmp: bytes | None  # the XMP packet
    iptc: bytes | None  # raw IPTC-IIM
    exif: dict | None  # piexif's dict


def embedded_fields(fmt: str) -> tuple[str, ...]:
    """Which of "xmp", "iptc", "exif" a format carries here (WebP has no IPTC; HEIF nothing)."""
    return FIELDS.get(fmt, ())


def _need(fmt: str) -> None:
    if fmt not in FIELDS:
        raise WriteBackError(f"no lossless writer for {fmt or 'this format'}: use a sidecar")


def read_embedded(data: bytes, fmt: str) -> Embedded:
    """The XMP packet, raw IPTC-IIM and EXIF (piexif dict) a photo carries; damaged EXIF raises."""
    _need(fmt)
    try:
        return Embedded(*READERS[fmt](data))
    except iim.IptcError as e:
        raise WriteBackError(f"{e}; left alone") from None
    except (struct.error, IndexError, ValueError) as e:
        raise WriteBackError(f"its metadata is damaged ({e}); left alone") from None


def _whole(data: bytes, fmt: str) -> None:
    """Damaged photos (truncated, no image data) are not written: the scanner reports them."""
    try:
        payload_ranges(fmt, data)
    except BrokenImage as e:
        raise WriteBackError(f"{e}; left alone") from None


def write_embedded(data: bytes, fmt: str, *, xmp: bytes | None, iptc: bytes | None,
                   keywords: Sequence[str], description: str | None) -> bytes:
    """The photo's bytes with `xmp` (the whole packet), `iptc` (raw IIM, see iptc.merge_iptc),
    EXIF XPKeywords = `keywords` and ImageDescription = `description` (None: leave it).

    Pixels and every other segment, chunk, resource and EXIF value keep their bytes (IFD0 is
    rebuilt with its entries sorted, as TIFF requires). None for xmp/iptc leaves that block
    alone; WebP has no IPTC, so `iptc` is ignored there (see embedded_fields). Damaged EXIF,
    truncated files and HEIF/other formats raise WriteBackError. Returns `data` itself
    when nothing would change, so a second identical write is a no-op.
    """
    _need(fmt)
    changes = keyword_changes(keywords, description)
    _whole(data, fmt)
    try:
        return WRITERS[fmt](data, xmp, iptc if "iptc" in FIELDS[fmt] else None, changes)
    except iim.IptcError as e:
        raise WriteBackError(f"{e}; left alone") from None
    except (struct.error, IndexError, ValueError) as e:
        raise WriteBackError(f"its metadata is damaged ({e}); left alone") from None


def _layout(data: bytes, fmt: str) -> list[tuple[int, int, bool]]:
    """The file as (start, end, is_pixels) ranges: pixels are what write_embedded never changes."""
    return LAYOUTS.get(fmt, webp.layout)(data)


def snapshot(data: bytes, fmt: str) -> bytes:
    """What `restore` needs to rebuild `data` from a later write: everything but the pixels.

    The pixel ranges are kept as their length and CRC-32 only, so a snapshot is about the
    size of the metadata (for TIFF, the 8-byte header plus IFD0 when it is at the end).
    """
    _need(fmt)
    out = bytearray(SNAP_MAGIC + fmt.encode().ljust(4))
    for start, end, pixels in _layout(data, fmt):
        if pixels:
            out += b"P" + struct.pack(">II", end - start, zlib.crc32(data[start:end]))
        elif end > start:
            out += b"L" + struct.pack(">I", end - start) + data[start:end]
    return bytes(out)


def restore(current: bytes, fmt: str, snap: bytes) -> bytes:
    """The file `snap` was taken of, byte for byte, from `current` (same pixels, other metadata)."""
    if snap[:8] != SNAP_MAGIC or snap[8:12] != fmt.encode().ljust(4):
        raise WriteBackError(f"not a {fmt} write-back snapshot")
    # TIFF writes only append, so its pixels are a prefix of what follows the header.
    pieces = [(8, len(current))] if fmt == "TIFF" else [(s, e) for s, e, px in _layout(current, fmt) if px]
    out, pos, found = bytearray(), 12, 0
    try:
        while pos < len(snap):
            kind, size = snap[pos:pos + 1], struct.unpack_from(">I", snap, pos + 1)[0]
            if kind == b"L":
                out += snap[pos + 5:pos + 5 + size]
                pos += 5 + size
                continue
            crc = struct.unpack_from(">I", snap, pos + 5)[0]
            start, end = pieces[found]
            piece = current[start:start + size]
            if (end - start != size and fmt != "TIFF") or len(piece) != size or zlib.crc32(piece) != crc:
                raise IndexError
            out += piece
            pos, found = pos + 9, found + 1
    except (struct.error, IndexError):
        raise WriteBackError("cannot restore: the image data is not the one the snapshot was taken from") from None
    if found != len(pieces) and fmt != "TIFF":
        raise WriteBackError("cannot restore: the file has other image data than the snapshot's")
    return bytes(out)
