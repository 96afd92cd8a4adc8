"""A photo's identity: a BLAKE3 hash of its image payload, not of its metadata.

Everything paid for (analysis, tags) hangs off this hash, so it must survive a
keyword write-back or a re-tag in another program. For JPEG we walk the marker
segments and hash the coding tables (DQT, SOF, DHT, ...) plus the scan data from
the first start-of-scan of the main image through its end-of-image marker; APPn
segments (EXIF with its thumbnail, XMP, ICC, MPF) and comments are left out, and
so is anything after the main image (MPO previews, phone trailers). For PNG the
metadata chunks are left out, for WebP all but the image chunks, for TIFF all but
the first image's strips or tiles. Other formats hash the whole file.

The same walk catches truncated JPEG/PNG/WebP/TIFF files for free, so the scanner can
record them without decoding any pixels.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass

import blake3

# Up to this size, one read(): it releases the GIL while the kernel copies (with full
# readahead), so the hash workers read in parallel. A mapping is page-faulted by the segment
# walk's end-marker search, which holds the GIL, so the workers' disk reads queue behind one
# another (bench/scan.py, 1,000 x 4 MiB JPEGs, cold cache: 11-12 s mapped, 5 s read).
# Above it, a mapping keeps memory flat whatever the file size.
MMAP_THRESHOLD = 32 << 20
# The end-of-image search: re's literal-prefix scan runs ~2.5x faster than bytes.find on
# JPEG scan data (~2.5 GB/s vs ~0.95 GB/s), and this pass holds the GIL.
_EOI = re.compile(rb"\xff\xd9")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_METADATA_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


class BrokenImage(Exception):
    """The container is damaged (truncated, no image data); `kind` names the problem."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Identity:
    digest: str  # hex
    hashed_bytes: int


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
    n = len(buf)
    pos, ranges = 2, []
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            raise BrokenImage(f"JPEG damaged: no segment marker at byte {pos}", "corrupt")
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
            continue
        if marker == 0xD9:
            break
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if marker == 0xDA:
            found = _EOI.search(buf, pos + 2 + length)  # == buf.find(b"\xff\xd9", ...)
            if found is None:
                raise BrokenImage("JPEG is truncated: the image data has no end marker", "truncated")
            ranges.append((pos, found.end()))
            return ranges
        end = pos + 2 + length
        if end > n:
            raise BrokenImage("JPEG is truncated inside its header", "truncated")
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            ranges.append((pos, end))
        pos = end
    raise BrokenImage("JPEG has no image data (truncated before the first scan)", "truncated")


def _png_ranges(buf) -> list[tuple[int, int]]:
    """Byte ranges of a PNG without its text/EXIF/time chunks; requires IEND."""
    n = len(buf)
    pos, ranges = 8, [(0, 8)]
    while pos + 12 <= n:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        ctype = bytes(buf[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > n:
            break
        if ctype not in PNG_METADATA_CHUNKS:
            if ranges[-1][1] == pos:
                ranges[-1] = (ranges[-1][0], end)  # merge neighbours: fewer hash calls
            else:
                ranges.append((pos, end))
        if ctype == b"IEND":
            return ranges
        pos = end
    raise BrokenImage("PNG is truncated: it ends before its IEND chunk", "truncated")


WEBP_METADATA_CHUNKS = {b"VP8X", b"EXIF", b"XMP ", b"ICCP"}  # VP8X only carries flags + canvas


def _webp_ranges(buf) -> list[tuple[int, int]]:
    """The image chunks of a WebP (VP8/VP8L/ALPH/ANIM/ANMF), not its EXIF/XMP/ICC."""
    n = len(buf)
    riff_end = min(n, 8 + int.from_bytes(buf[4:8], "little"))
    pos, ranges = 12, []
    while pos + 8 <= riff_end:
        ctype = bytes(buf[pos : pos + 4])
        end = pos + 8 + int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if end > n:
            raise BrokenImage("WebP is truncated inside a chunk", "truncated")
        if ctype not in WEBP_METADATA_CHUNKS:
            ranges.append((pos, end))
        pos = end + (end & 1)  # chunks are padded to even sizes
    if not ranges:
        raise BrokenImage("WebP has no image data", "truncated")
    return ranges


TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


def _tiff_ranges(buf) -> list[tuple[int, int]]:
    """The strips or tiles of a TIFF's first image: metadata tags may change, pixels not.

    Anything this minimal reader does not understand (BigTIFF, odd layouts) falls back
    to hashing the whole file, which is always correct, merely less forgiving.
    """
    import struct

    n = len(buf)
    order = "<" if buf[:2] == b"II" else ">"
    try:
        if struct.unpack_from(order + "H", buf, 2)[0] != 42:
            return [(0, n)]
        ifd = struct.unpack_from(order + "I", buf, 4)[0]
        count = struct.unpack_from(order + "H", buf, ifd)[0]
        tags = {}
        for i in range(count):
            tag, kind, num, value = struct.unpack_from(order + "HHI4s", buf, ifd + 2 + 12 * i)
            if tag in (273, 279, 324, 325) and kind in TIFF_TYPES:
                code, size = TIFF_TYPES[kind]
                where = value if num * size <= 4 else struct.unpack(order + "I", value)[0]
                data = value if num * size <= 4 else buf[where : where + num * size]
                tags[tag] = struct.unpack(f"{order}{num}{code}", bytes(data)[: num * size])
        offsets, sizes = tags.get(273) or tags.get(324), tags.get(279) or tags.get(325)
    except struct.error:
        raise BrokenImage("TIFF is truncated inside its header", "truncated") from None
    if not offsets or not sizes or len(offsets) != len(sizes):
        return [(0, n)]
    ranges = [(o, o + s) for o, s in zip(offsets, sizes)]
    if max(end for _, end in ranges) > n:
        raise BrokenImage("TIFF is truncated: image data runs past the end of the file", "truncated")
    return ranges


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


def hash_buffer(fmt: str | None, buf) -> Identity:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    view = memoryview(buf)
    total = 0
    try:
        for start, end in payload_ranges(fmt, buf):
            hasher.update(view[start:end])
            total += end - start
    finally:
        view.release()
    return Identity(hasher.hexdigest(), total)


class FileBuffer:
    """A whole file as a buffer: read() for small files, a read-only mmap for large ones."""

    def __init__(self, fileobj, size: int):
        self._map = None
        if size >= MMAP_THRESHOLD:
            self._map = mmap.mmap(fileobj.fileno(), 0, access=mmap.ACCESS_READ)
            self.data = self._map
        else:
            self.data = fileobj.read()

    def close(self) -> None:
        if self._map is not None:
            self._map.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def identity_of(path: str | os.PathLike) -> Identity:
    """Convenience for tests and tools: the identity of a file on disk."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with FileBuffer(f, size) as fb:
            return hash_buffer(sniff(bytes(fb.data[:16])), fb.data)
