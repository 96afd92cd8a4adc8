"""PNG: metadata lives in eXIf, iTXt (XMP) and zTXt (IPTC "Raw profile") chunks, so only those are rebuilt."""

from __future__ import annotations

import struct
import zlib

from catalog.containers import PNG_SIGNATURE, BrokenImage, png_chunks
from catalog.writeback import iptc as iim
from catalog.writeback.tiffifd import EMPTY_TIFF, EXIF_HEAD, WriteBackError, exif_dict, set_ifd0

PNG_XMP, PNG_IPTC = b"XML:com.adobe.xmp", b"Raw profile type iptc"


def _png_chunks(data: bytes) -> tuple[list[bytes], int]:
    """Whole chunks (length, type, body, CRC; verbatim) through IEND, and where IEND ends."""
    try:
        spans = png_chunks(data)
    except BrokenImage as e:
        raise WriteBackError(f"{e}; left alone") from None
    return [data[start:end] for _, start, end in spans], spans[-1][2]


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png_key(chunk: bytes) -> bytes | None:
    """The keyword of a tEXt/zTXt/iTXt chunk."""
    if chunk[4:8] not in (b"tEXt", b"zTXt", b"iTXt") or b"\x00" not in chunk[8:88]:
        return None
    return chunk[8:].split(b"\x00", 1)[0]


def _png_text(chunk: bytes) -> tuple[bytes, bytes]:
    """(keyword, text bytes) of a text chunk, decompressed."""
    ctype = chunk[4:8]
    key, rest = chunk[8:-4].split(b"\x00", 1)
    try:
        if ctype == b"zTXt":
            return key, zlib.decompress(rest[1:])
        if ctype == b"iTXt":
            flag, text = rest[0], rest[2:].split(b"\x00", 2)[2]
            return key, zlib.decompress(text) if flag else text
    except (zlib.error, IndexError):
        raise WriteBackError(f"its PNG {key.decode('latin-1')} text chunk is damaged; left alone") from None
    return key, rest


def _raw_profile(text: bytes) -> tuple[bytes, bytes]:
    """ImageMagick/exiftool "Raw profile" text -> (profile name, bytes): "\\nname\\n   LEN\\nhex..."."""
    try:
        _, name, size, hexdump = text.split(b"\n", 3)
        raw = bytes.fromhex(hexdump.decode("ascii"))
    except ValueError:
        raise WriteBackError("its PNG IPTC profile is damaged; left alone") from None
    if int(size) != len(raw):
        raise WriteBackError("its PNG IPTC profile has the wrong length; left alone")
    return name, raw


def _profile_chunk(name: bytes, raw: bytes) -> bytes:
    lines = b"".join(raw[i:i + 36].hex().encode() + b"\n" for i in range(0, len(raw), 36))
    text = b"\n" + name + b"\n" + b"%8d\n" % len(raw) + lines
    return _chunk(b"zTXt", PNG_IPTC + b"\x00\x00" + zlib.compress(text, 9))


def _png_find(chunks: list[bytes], key: bytes) -> int | None:
    return next((i for i, c in enumerate(chunks) if _png_key(c) == key), None)


def _png_put(chunks: list[bytes], at: int | None, new: bytes, key: bytes | None = None) -> None:
    """Replace chunk `at` (dropping later duplicates of `key`), or insert before the first IDAT."""
    if at is None:
        at = next((i for i, c in enumerate(chunks) if c[4:8] in (b"IDAT", b"IEND")), len(chunks))
        chunks.insert(at, new)
        return
    chunks[at] = new
    if key is not None:
        chunks[at + 1:] = [c for c in chunks[at + 1:] if _png_key(c) != key]


def write(data: bytes, xmp, iptc, changes) -> bytes:
    old, end = _png_chunks(data)
    chunks = list(old)
    exif = next((i for i, c in enumerate(chunks) if c[4:8] == b"eXIf"), None)
    if exif is not None or any(v is not None for v in changes.values()):
        body = chunks[exif][8:-4] if exif is not None else EMPTY_TIFF
        head = EXIF_HEAD if body.startswith(EXIF_HEAD) else b""
        if exif is not None:
            exif_dict(body[len(head):])
        new = set_ifd0(body[len(head):], changes)
        if new != body[len(head):] or exif is None:
            _png_put(chunks, exif, _chunk(b"eXIf", head + new))
    if xmp is not None:
        at = _png_find(chunks, PNG_XMP)
        if at is None or _png_text(chunks[at])[1] != xmp:
            _png_put(chunks, at, _chunk(b"iTXt", PNG_XMP + b"\x00\x00\x00\x00\x00" + xmp), PNG_XMP)
    if iptc is not None:
        at = _png_find(chunks, PNG_IPTC)
        name, raw = _raw_profile(_png_text(chunks[at])[1]) if at is not None else (b"iptc", b"")
        if raw.startswith(b"\x1c"):
            new = iptc
        else:  # a Photoshop resource block, as exiftool writes it
            resources = iim.read_irb(raw)
            new = raw if any(r.resource_id == iim.IPTC_RESOURCE and r.data == iptc for r in resources) \
                else iim.build_irb(iim.replace_iim(resources, iptc))
        if new != raw:
            _png_put(chunks, at, _profile_chunk(name, new), PNG_IPTC)
    if chunks == old:
        return data
    return PNG_SIGNATURE + b"".join(chunks) + data[end:]


def read(data: bytes) -> tuple[bytes | None, bytes | None, dict | None]:
    """(XMP packet, raw IIM, piexif dict), each None when absent."""
    chunks, _ = _png_chunks(data)
    texts = {k: _png_text(chunks[i])[1] for k in (PNG_XMP, PNG_IPTC) if (i := _png_find(chunks, k)) is not None}
    exif = next((c[8:-4] for c in chunks if c[4:8] == b"eXIf"), None)
    if exif is not None and exif.startswith(EXIF_HEAD):
        exif = exif[len(EXIF_HEAD):]
    iptc = None
    if PNG_IPTC in texts:
        raw = _raw_profile(texts[PNG_IPTC])[1]
        iptc = raw if raw.startswith(b"\x1c") else iim.iim_of_irb(raw)
    return texts.get(PNG_XMP), iptc, exif_dict(exif) if exif is not None else None


def layout(data: bytes) -> list[tuple[int, int, bool]]:
    """Every chunk but the text and eXIf ones is pixels (or pixel-related)."""
    chunks, end = _png_chunks(data)
    out, pos = [(0, 8, False)], 8
    for c in chunks:
        out.append((pos, pos + len(c), c[4:8] not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf")))
        pos += len(c)
    return out + [(end, len(data), False)]
