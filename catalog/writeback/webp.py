"""WebP: metadata lives in RIFF chunks (EXIF, XMP, flagged in VP8X), so only those are rebuilt."""

from __future__ import annotations

import struct

from catalog.containers import BrokenImage, riff_chunks
from catalog.writeback.tiffifd import EMPTY_TIFF, EXIF_HEAD, WriteBackError, exif_dict, set_ifd0

IMAGE_CHUNKS = {b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"}


def _riff_chunks(data: bytes) -> tuple[list[bytes], int]:
    """Whole chunks (fourcc, size, payload, pad; verbatim) and where the RIFF ends."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise WriteBackError("not a WebP file")
    try:
        spans, riff_end = riff_chunks(data)
    except BrokenImage as e:
        raise WriteBackError(f"{e}; left alone") from None
    if riff_end > len(data):
        raise WriteBackError("WebP is truncated; left alone")
    if any(end > riff_end for _, _, end in spans):
        raise WriteBackError("WebP is truncated inside a chunk; left alone")
    return [data[start:min(end + (end & 1), riff_end)] for _, start, end in spans], riff_end


def _riff(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def _canvas(chunk: bytes) -> tuple[int, int, int]:
    """Width, height and the alpha flag from a simple file's VP8/VP8L bitstream header."""
    payload = chunk[8:]
    if chunk[:4] == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", payload, 6)
        return w & 0x3FFF, h & 0x3FFF, 0
    if chunk[:4] == b"VP8L" and payload[:1] == b"\x2f":
        bits = struct.unpack_from("<I", payload, 1)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 0x10 if bits >> 28 & 1 else 0
    raise WriteBackError("WebP image data is not VP8/VP8L; left alone")


def write(data: bytes, xmp, iptc, changes) -> bytes:
    old, riff_end = _riff_chunks(data)
    chunks = list(old)
    fourccs = [c[:4] for c in chunks]
    last_image = max((i for i, f in enumerate(fourccs) if f in IMAGE_CHUNKS), default=None)
    if last_image is None:
        raise WriteBackError("WebP has no image data; left alone")
    exif = fourccs.index(b"EXIF") if b"EXIF" in fourccs else None
    if exif is not None or any(v is not None for v in changes.values()):
        body = chunks[exif][8:8 + struct.unpack_from("<I", chunks[exif], 4)[0]] if exif is not None else EMPTY_TIFF
        head = EXIF_HEAD if body.startswith(EXIF_HEAD) else b""
        if exif is not None:
            exif_dict(body[len(head):])
        new = set_ifd0(body[len(head):], changes)
        if exif is not None:
            chunks[exif] = chunks[exif] if new == body[len(head):] else _riff(b"EXIF", head + new)
        else:  # EXIF and XMP follow the image data
            chunks.insert(last_image + 1, _riff(b"EXIF", new))
    if xmp is not None:
        fourccs = [c[:4] for c in chunks]
        new = _riff(b"XMP ", xmp)
        if b"XMP " in fourccs:
            at = fourccs.index(b"XMP ")
            chunks[at] = new
        else:
            chunks.insert(fourccs.index(b"EXIF") + 1 if b"EXIF" in fourccs else last_image + 1, new)
    fourccs = [c[:4] for c in chunks]
    if b"VP8X" not in fourccs:
        w, h, alpha = _canvas(chunks[last_image])
        chunks.insert(0, _riff(b"VP8X", bytes((alpha,)) + b"\x00" * 3 + (w - 1).to_bytes(3, "little")
                               + (h - 1).to_bytes(3, "little")))
    at = [c[:4] for c in chunks].index(b"VP8X")
    flags = chunks[at][8] | (0x08 if b"EXIF" in fourccs else 0) | (0x04 if b"XMP " in fourccs else 0)
    if flags != chunks[at][8]:
        chunks[at] = chunks[at][:8] + bytes((flags,)) + chunks[at][9:]
    if chunks == old:
        return data
    chunks = [c + b"\x00" * (len(c) & 1) for c in chunks]  # a last chunk may lack its pad byte
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body + data[riff_end:]


def read(data: bytes) -> tuple[bytes | None, None, dict | None]:
    """(XMP packet, None: WebP has no IPTC, piexif dict)."""
    found = {}
    for chunk in _riff_chunks(data)[0]:
        found.setdefault(chunk[:4], chunk[8:8 + struct.unpack_from("<I", chunk, 4)[0]])
    exif = found.get(b"EXIF")
    if exif is not None and exif.startswith(EXIF_HEAD):
        exif = exif[len(EXIF_HEAD):]
    return found.get(b"XMP "), None, exif_dict(exif) if exif is not None else None


def layout(data: bytes) -> list[tuple[int, int, bool]]:
    """Every chunk but VP8X, EXIF and XMP is pixels; pad bytes are not."""
    chunks, riff_end = _riff_chunks(data)
    out, pos = [(0, 12, False)], 12
    for c in chunks:
        size = 8 + struct.unpack_from("<I", c, 4)[0]
        out += [(pos, pos + size, c[:4] not in (b"VP8X", b"EXIF", b"XMP ")), (pos + size, pos + len(c), False)]
        pos += len(c)
    return out + [(riff_end, len(data), False)]
