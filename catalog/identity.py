"""A photo's identity: a BLAKE3 hash of its image payload, not of its metadata.

Everything paid for (analysis, tags) hangs off this hash, so it must survive a
keyword write-back or a re-tag in another program. For JPEG we walk the marker
segments and hash the coding tables (DQT, SOF, DHT, ...) plus the scan data from
the first start-of-scan of the main image through its end-of-image marker; APPn
segments (EXIF with its thumbnail, XMP, ICC, MPF) and comments are left out, and
so is anything after the main image (MPO previews, phone trailers). For PNG the
metadata chunks are left out, for WebP all but the image chunks; for TIFF the first
image's strips or tiles plus the tags that say how to read them (geometry and pixel
layout), never its descriptive tags. Other formats hash the whole file.

The walks are catalog.containers' (shared with prepare and write-back); the same walk
catches truncated JPEG/PNG/WebP/TIFF files for free, so the scanner can record them without
decoding any pixels.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

import blake3

from catalog.containers import (JPEG_TABLE_MARKERS, PNG_SIGNATURE, BrokenImage, ifd_entries, ifd_offset,
                                ifd_value, jpeg_segments, png_chunks, riff_chunks, tiff_order)
from catalog.libfile import FileView, open_library_file, read_all

# Up to this size, one read(): it releases the GIL while the kernel copies (with full
# readahead), so the hash workers read in parallel. Above it, a FileView streams the file
# in pread chunks, so memory stays flat whatever the file size. Never mmap: a file
# truncated while mapped kills the whole process with SIGBUS.
LARGE_FILE = 32 << 20
# The end-of-image search: re's literal-prefix scan runs ~2.5x faster than bytes.find on
# JPEG scan data (~2.5 GB/s vs ~0.95 GB/s), and this pass holds the GIL.
_EOI = re.compile(rb"\xff\xd9")
PNG_METADATA_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


@dataclass(frozen=True)
class Identity:
    digest: str  # hex
    hashed_bytes: int
    # The digest the same content had under the previous identity scheme (TIFF before its
    # geometry counted), so a re-identified photo keeps what was paid for; else None.
    previous: str | None = None


def sniff(head: bytes) -> str | None:
    """The container format from its first bytes, or None; the extension is never trusted."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"):
        return "HEIF"
    if head[:2] == b"BM":
        return "BMP"
    return None


def describe_non_image(head: bytes) -> str:
    """A readable guess at what a non-image file is, for the error message."""
    for magic, what in (
        (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"),
        (b"<", "a text/HTML/XML file"), (b"\x00\x00\x00", "an unknown binary file"),
    ):
        if head.startswith(magic):
            return what
    return "not a recognised image format"


def _jpeg_ranges(buf) -> list[tuple[int, int]]:
    """Byte ranges of a JPEG that carry pixels: coding segments, then SOS..EOI."""
    ranges, sos, scan_data = _jpeg_header(buf)
    found = _EOI.search(buf, scan_data)  # == buf.find(b"\xff\xd9", scan_data)
    if found is None:
        raise BrokenImage(JPEG_NO_EOI, "truncated")
    return [*ranges, (sos, found.end())]


JPEG_NO_EOI = "JPEG is truncated: the image data has no end marker"


def _jpeg_header(buf) -> tuple[list[tuple[int, int]], int, int]:
    """The coding segments' ranges (APPn and comments left out), where the first scan starts
    and where its data starts."""
    segments, sos = jpeg_segments(buf)
    ranges = [(start, end) for marker, start, end in segments if JPEG_TABLE_MARKERS[marker]]
    return ranges, sos, sos + 2 + ((buf[sos + 2] << 8) | buf[sos + 3])


def _hash_jpeg_view(view: FileView) -> tuple[blake3.blake3, int]:
    """A large JPEG in one pass: its scan data is hashed as it streams past the EOI search."""
    ranges, sos, scan_data = _jpeg_header(view)
    hasher, total = _hash_ranges(view, ranges)
    offset, last = sos, b""
    for chunk in view.chunks(sos, len(view)):
        found = _EOI.search(chunk, max(0, scan_data - offset))
        if last == b"\xff" and chunk[:1] == b"\xd9" and offset - 1 >= scan_data:
            stop = 1  # the marker straddles two chunks
        elif found is not None:
            stop = found.end()
        else:
            hasher.update(chunk)
            offset, last = offset + len(chunk), chunk[-1:]
            continue
        hasher.update(chunk[:stop])
        return hasher, total + offset + stop - sos
    raise BrokenImage(JPEG_NO_EOI, "truncated")


def _png_ranges(buf) -> list[tuple[int, int]]:
    """Byte ranges of a PNG without its text/EXIF/time chunks; requires IEND."""
    ranges = [(0, 8)]
    for ctype, start, end in png_chunks(buf):
        if ctype not in PNG_METADATA_CHUNKS:
            if ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], end)  # merge neighbours: fewer hash calls
            else:
                ranges.append((start, end))
    return ranges


WEBP_METADATA_CHUNKS = {b"VP8X", b"EXIF", b"XMP ", b"ICCP"}  # VP8X only carries flags + canvas


def _webp_ranges(buf) -> list[tuple[int, int]]:
    """The image chunks of a WebP (VP8/VP8L/ALPH/ANIM/ANMF), not its EXIF/XMP/ICC."""
    ranges = [(start, end) for fourcc, start, end in riff_chunks(buf)[0] if fourcc not in WEBP_METADATA_CHUNKS]
    if not ranges:
        raise BrokenImage("WebP has no image data", "truncated")
    return ranges


# Integer TIFF field types: BYTE, SHORT, LONG, SBYTE, UNDEFINED, SSHORT, SLONG, IFD, LONG8.
TIFF_INTEGERS = {1: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 13: "I", 16: "Q"}
TIFF_DATA_TAGS = (273, 279, 324, 325)  # strip offsets/byte counts, tile offsets/byte counts
# How to read the strips: width, height, bits per sample, compression, photometric, samples
# per pixel, planar configuration, predictor, sample format, tile width/height, colour map,
# extra samples, JPEG tables, YCbCr subsampling; with the defaults TIFF 6.0 gives the absent
# ones, so writing a default explicitly is no change. Descriptive tags never count.
TIFF_LAYOUT_TAGS = (256, 257, 258, 259, 262, 277, 284, 317, 339, 322, 323, 320, 338, 347, 530)
TIFF_DEFAULTS = {258: (1,), 259: (1,), 277: (1,), 284: (1,), 317: (1,), 339: (1,), 530: (2, 2)}
_TIFF_SCHEME = b"catalog tiff identity 2\x00"


def _tiff_ifd0(buf) -> dict[int, tuple]:
    """IFD0's integer fields among the data and layout tags; {} when this reader gives up."""
    order = tiff_order(buf)
    if order is None:
        return {}  # BigTIFF and friends: the caller hashes the whole file
    try:
        tags = {}
        for entry in ifd_entries(buf, order, ifd_offset(buf, order)):
            tag, kind, num, _ = entry
            if (tag in TIFF_DATA_TAGS or tag in TIFF_LAYOUT_TAGS) and kind in TIFF_INTEGERS:
                tags[tag] = struct.unpack(f"{order}{num}{TIFF_INTEGERS[kind]}", ifd_value(buf, order, entry))
    except (struct.error, BrokenImage):
        raise BrokenImage("TIFF is truncated inside its header", "truncated") from None
    return tags


def _tiff_strips(tags: dict[int, tuple], n: int) -> list[tuple[int, int]] | None:
    offsets, sizes = tags.get(273) or tags.get(324), tags.get(279) or tags.get(325)
    if not offsets or not sizes or len(offsets) != len(sizes):
        return None
    ranges = [(o, o + s) for o, s in zip(offsets, sizes)]
    if max(end for _, end in ranges) > n:
        raise BrokenImage("TIFF is truncated: image data runs past the end of the file", "truncated")
    return ranges


def _tiff_ranges(buf) -> list[tuple[int, int]]:
    """The strips or tiles of a TIFF's first image: metadata tags may change, pixels not.

    Anything this minimal reader does not understand (BigTIFF, odd layouts) falls back
    to hashing the whole file, which is always correct, merely less forgiving.
    """
    return _tiff_strips(_tiff_ifd0(buf), len(buf)) or [(0, len(buf))]


def tiff_layout(tags: dict[int, tuple]) -> bytes | None:
    """The layout tags in one canonical form (byte order and defaults settled); None if no size."""
    if 256 not in tags or 257 not in tags:
        return None
    out = [_TIFF_SCHEME]
    for tag in sorted(TIFF_LAYOUT_TAGS):
        values = tags.get(tag, TIFF_DEFAULTS.get(tag))
        if values is None:
            continue
        if tag in (258, 339) and len(set(values)) == 1:
            values = values[:1]  # "8" and "8, 8, 8" say the same for RGB
        out.append(struct.pack(f"<HI{len(values)}q", tag, len(values), *values))
    return b"".join(out)


def payload_ranges(fmt: str | None, buf) -> list[tuple[int, int]]:
    if fmt == "JPEG":
        return _jpeg_ranges(buf)
    if fmt == "PNG":
        return _png_ranges(buf)
    if fmt == "WEBP":
        return _webp_ranges(buf)
    if fmt == "TIFF":
        return _tiff_ranges(buf)
    return [(0, len(buf))]


def _hash_ranges(buf, ranges) -> tuple[blake3.blake3, int]:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    total = 0
    if isinstance(buf, FileView):
        for start, end in ranges:
            for chunk in buf.chunks(start, end):
                hasher.update(chunk)
            total += end - start
        return hasher, total
    view = memoryview(buf)
    try:
        for start, end in ranges:
            hasher.update(view[start:end])
            total += end - start
    finally:
        view.release()
    return hasher, total


def hash_buffer(fmt: str | None, buf) -> Identity:
    """The identity of an image held in `buf` (bytes, or a FileView of a large file)."""
    if fmt == "JPEG" and isinstance(buf, FileView):
        hasher, total = _hash_jpeg_view(buf)
        return Identity(hasher.hexdigest(), total)
    if fmt != "TIFF":
        hasher, total = _hash_ranges(buf, payload_ranges(fmt, buf))
        return Identity(hasher.hexdigest(), total)
    tags = _tiff_ifd0(buf)
    strips = _tiff_strips(tags, len(buf))
    layout = tiff_layout(tags) if strips else None
    if layout is None:
        hasher, total = _hash_ranges(buf, [(0, len(buf))])
        return Identity(hasher.hexdigest(), total)
    pixels, total = _hash_ranges(buf, strips)
    # The strips' own hash was the whole identity before the layout counted: it is kept
    # as `previous` so that photos catalogued then are recognised (see catalog.db).
    strips_digest = pixels.digest()
    digest = blake3.blake3(layout + strips_digest).hexdigest()
    return Identity(digest, total, previous=strips_digest.hex())


def load(f, size: int):
    """The open file as a buffer: bytes up to LARGE_FILE, a FileView (pread, no mmap) above."""
    return FileView(f, size) if size >= LARGE_FILE else read_all(f, size)


def identity_of(path: str | os.PathLike) -> Identity:
    """Convenience for tests and tools: the identity of a file on disk."""
    with open_library_file(path) as f:
        buf = load(f, os.fstat(f.fileno()).st_size)
        return hash_buffer(sniff(bytes(buf[:16])), buf)
