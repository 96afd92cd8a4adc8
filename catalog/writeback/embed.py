"""Keywords and captions written into a photo's own EXIF/IPTC/XMP without re-encoding a pixel, and undone byte for byte.

Every format is edited as a container: JPEG marker segments, PNG chunks, RIFF chunks,
TIFF directories. Pixel data is never decoded and never moved, so the payload identity
(catalog.identity) and the decoded image stay the same. EXIF is not rewritten by
piexif (its load/dump round trip drops tags it does not know, InteropIFD and IFD1
strips, and breaks maker-note offsets): IFD0 alone is rebuilt at the end of the TIFF
structure, every other byte stays where it was, so all offsets stay valid. piexif only
checks that the EXIF is sound and gives callers a dict to read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import piexif

from catalog.errors import CatalogError
from catalog.identity import PNG_SIGNATURE, BrokenImage, payload_ranges
from catalog.writeback import iptc as iim

XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_NS = b"http://ns.adobe.com/xmp/extension/\x00"
XMP_MAX = 65502  # the largest standard XMP packet one JPEG APP1 segment holds
EXIF_HEAD = b"Exif\x00\x00"
PNG_XMP, PNG_IPTC = b"XML:com.adobe.xmp", b"Raw profile type iptc"
FIELDS = {"JPEG": ("xmp", "iptc", "exif"), "PNG": ("xmp", "iptc", "exif"),
          "WEBP": ("xmp", "exif"), "TIFF": ("xmp", "iptc", "exif")}
DESCRIPTION, XMP_TAG, IPTC_TAG, PHOTOSHOP_TAG, XP_KEYWORDS = 270, 700, 33723, 34377, 40094
BYTE, ASCII, LONG, UNDEFINED = 1, 2, 4, 7
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}
EMPTY_TIFF = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 6  # header + IFD0 with no entries
IMAGE_CHUNKS = {b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"}
SNAP_MAGIC = b"CWBSNAP1"

Change = tuple[int, bytes] | None  # (TIFF type, value bytes), or None: remove the tag


class WriteBackError(CatalogError):
    """This photo cannot be written losslessly; nothing was changed."""


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


def _exif_dict(tiff: bytes) -> dict:
    try:
        return piexif.load(EXIF_HEAD + tiff)
    except Exception as e:  # piexif raises struct.error, TypeError, ValueError... on broken EXIF
        raise WriteBackError(f"its EXIF is damaged ({type(e).__name__}: {e}); left alone so nothing of it "
                             "is lost (repair it, e.g. with exiftool, or use a sidecar)") from None


def _keyword_changes(keywords: Sequence[str], description: str | None) -> dict[int, Change]:
    """XPKeywords (UCS-2 LE, ";"-separated) = the full list; ImageDescription as UTF-8.

    EXIF says ASCII for ImageDescription; we write UTF-8 as MWG recommends and exiftool
    and Windows read it, rather than lose the accents. "" removes it, None leaves it.
    """
    xp = ";".join(keywords).encode("utf-16-le") + b"\x00\x00" if keywords else None
    changes: dict[int, Change] = {XP_KEYWORDS: (BYTE, xp) if xp else None}
    if description is not None:
        changes[DESCRIPTION] = (ASCII, description.encode("utf-8") + b"\x00") if description else None
    return changes


# -- TIFF directories (EXIF blobs and TIFF files) ------------------------------------------------

def _ifd0(tiff: bytes) -> tuple[str, int, list[tuple[int, int, int, bytes]], bytes]:
    """Byte order, IFD0's offset, its entries (tag, type, count, 4-byte field), its next-IFD link."""
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        raise WriteBackError("not a classic TIFF/EXIF structure (BigTIFF is not supported)")
    order = "<" if tiff[:1] == b"I" else ">"
    try:
        off = struct.unpack_from(order + "I", tiff, 4)[0]
        count = struct.unpack_from(order + "H", tiff, off)[0]
        entries = [struct.unpack_from(order + "HHI4s", tiff, off + 2 + 12 * i) for i in range(count)]
        link = struct.unpack_from("4s", tiff, off + 2 + 12 * count)[0]
    except struct.error:
        raise WriteBackError("its TIFF/EXIF directory is truncated; left alone") from None
    return order, off, entries, link


def _span(order: str, entry) -> tuple[int, int] | None:
    """Where an entry's value lives when it does not fit in the entry; None when inline/unknown."""
    _, kind, count, field = entry
    size = TYPE_SIZES.get(kind, 0) * count
    if size <= 4:
        return None
    start = struct.unpack(order + "I", field)[0]
    return start, start + size


def _value(tiff: bytes, order: str, entry) -> bytes:
    span = _span(order, entry)
    return tiff[span[0]:span[1]] if span else entry[3][: TYPE_SIZES.get(entry[1], 0) * entry[2]]


def _tail_is_ifd0(tiff: bytes, order: str, off: int, entries) -> bool:
    """True when everything from IFD0 on is IFD0 and its own values (what we append): rewritable."""
    if any(kind not in TYPE_SIZES for _, kind, _, _ in entries):
        return False
    end = off + 6 + 12 * len(entries)
    for start, stop in sorted(s for s in (_span(order, e) for e in entries) if s and s[0] >= off):
        if not end <= start <= end + 3:
            return False
        end = stop
    return 0 <= len(tiff) - end <= 3


def _set_ifd0(tiff: bytes, changes: dict[int, Change]) -> bytes:
    """`tiff` with IFD0's tags changed; the new IFD0 goes at the end, nothing else moves.

    When IFD0 already sits at the end with only its values after it (our earlier write),
    it is rewritten in place instead, so repeated writes do not grow the file.
    """
    order, off, entries, link = _ifd0(tiff)
    current = {e[0]: e for e in entries}
    if all((current.get(tag) is None) if ch is None else
           (tag in current and current[tag][1] == ch[0] and _value(tiff, order, current[tag]) == ch[1])
           for tag, ch in changes.items()):
        return tiff
    cut = off if _tail_is_ifd0(tiff, order, off, entries) else len(tiff)
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


def _tiff_changes(data: bytes, xmp: bytes | None, iptc: bytes | None, base: dict[int, Change]) -> dict:
    """TIFF file tags: XMP (700), IPTC (33723, and 0x0404 inside a Photoshop 34377 if there)."""
    order, _, entries, _ = _ifd0(data)
    current = {e[0]: e for e in entries}
    changes = dict(base)
    if xmp is not None:
        changes[XMP_TAG] = (current[XMP_TAG][1] if current.get(XMP_TAG, (0, 0))[1] in (BYTE, UNDEFINED)
                            else BYTE, xmp)
    if iptc is not None:
        kind = current[IPTC_TAG][1] if current.get(IPTC_TAG, (0, 0))[1] in (BYTE, LONG, UNDEFINED) else LONG
        changes[IPTC_TAG] = (kind, iptc + b"\x00" * (-len(iptc) % 4) if kind == LONG else iptc)
        if PHOTOSHOP_TAG in current:
            entry = current[PHOTOSHOP_TAG]
            resources = iim.read_irb(_value(data, order, entry))
            ids = {r.resource_id for r in resources}  # the IPTC copy, or just the digest of tag 33723
            if ids & {iim.IPTC_RESOURCE, iim.DIGEST_RESOURCE}:
                new = iim.replace_iim(resources, iptc, add=iim.IPTC_RESOURCE in ids)
                changes[PHOTOSHOP_TAG] = (entry[1], iim.build_irb(new))
    return changes


def _tiff_iptc(data: bytes) -> bytes | None:
    order, _, entries, _ = _ifd0(data)
    current = {e[0]: e for e in entries}
    if IPTC_TAG in current:
        return _value(data, order, current[IPTC_TAG])
    if PHOTOSHOP_TAG in current:
        return iim.iim_of_irb(_value(data, order, current[PHOTOSHOP_TAG]))
    return None


# -- JPEG ----------------------------------------------------------------------------------------

def _jpeg_head(data: bytes) -> tuple[list[bytes], int]:
    """The marker segments between SOI and the first scan (whole, verbatim), and where the scan starts."""
    pos, segments, n = 2, [], len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise WriteBackError(f"JPEG is damaged: no segment marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xDA:
            return segments, pos
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD9:  # fill byte, standalone
            if marker == 0xD9:
                break
            size = 1 if marker == 0xFF else 2
        else:
            size = 2 + struct.unpack_from(">H", data, pos + 2)[0]
        segments.append(data[pos:pos + size])
        pos += size
    raise WriteBackError("JPEG is truncated before its image data; left alone")


def _kind(segment: bytes) -> str | None:
    if segment[1:2] == b"\xe1":
        for name, head in (("exif", EXIF_HEAD), ("xmp", XMP_NS), ("xmpext", XMP_EXT_NS)):
            if segment[4:4 + len(head)] == head:
                return name
    if segment[1:2] == b"\xed" and segment[4:18] == iim.PHOTOSHOP:
        return "irb"
    if segment[1:2] == b"\xe2" and segment[4:8] == b"MPF\x00":
        return "mpf"
    return None


def _segment(marker: int, payload: bytes, what: str) -> bytes:
    if len(payload) > 65533:
        raise WriteBackError(f"the new {what} is {len(payload):,} bytes, more than one JPEG segment holds")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _place(segments: list[bytes], after: tuple[str, ...]) -> int:
    """Where a new segment goes: after the first of `after` found, else after a leading APP0."""
    kinds = [_kind(s) for s in segments]
    for name in after:
        if name in kinds:
            return kinds.index(name) + 1
    return 1 if segments and segments[0][1:2] == b"\xe0" else 0


def _jpeg_irb(segments: list[bytes], iptc: bytes) -> list[bytes]:
    """The APP13 segments with the IPTC resource replaced (split at resource boundaries if needed)."""
    found = [s for s in segments if _kind(s) == "irb"]
    resources = iim.read_irb(b"".join(s[18:] for s in found))
    if any(r.resource_id == iim.IPTC_RESOURCE and r.data == iptc for r in resources):
        return found
    out, chunk = [], b""
    for res in iim.replace_iim(resources, iptc):
        one = iim.build_irb([res])
        if chunk and len(chunk) + len(one) > 65533 - len(iim.PHOTOSHOP):
            out.append(_segment(0xED, iim.PHOTOSHOP + chunk, "Photoshop IPTC block"))
            chunk = b""
        chunk += one
    return out + [_segment(0xED, iim.PHOTOSHOP + chunk, "Photoshop IPTC block")]


def _replace(segments: list[bytes], kind: str, new: list[bytes], after: tuple[str, ...]) -> list[bytes]:
    """Segments of `kind` replaced by `new` (at the first one's place, else by `_place`)."""
    kinds = [_kind(s) for s in segments]
    at = kinds.index(kind) if kind in kinds else _place(segments, after)
    rest = [s for s, k in zip(segments, kinds) if k != kind]
    at -= sum(1 for k in kinds[:at] if k == kind)
    return rest[:at] + new + rest[at:]


def _fix_mpf(old: list[bytes], new: list[bytes]) -> list[bytes]:
    """MPO: the MP index points at later images relative to the MPF header; move those offsets."""
    def distance(segments):  # from the MPF TIFF header to the first scan
        i = [_kind(s) for s in segments].index("mpf")
        return sum(len(s) for s in segments[i:]) - 8
    if "mpf" not in [_kind(s) for s in old] or not (delta := distance(old) - distance(new)):
        return new
    i = [_kind(s) for s in new].index("mpf")
    tiff = bytearray(new[i][8:])
    try:
        order, _, entries, _ = _ifd0(bytes(tiff))
        for tag, kind, count, field in entries:
            if tag == 0xB002 and kind == UNDEFINED:  # MPEntry: 16 bytes per image, offset at +8
                start = struct.unpack(order + "I", field)[0]
                for at in range(start + 8, start + count, 16):
                    value = struct.unpack_from(order + "I", tiff, at)[0]
                    if value:
                        struct.pack_into(order + "I", tiff, at, value - delta)
    except struct.error:
        raise WriteBackError("its MPF (multi-picture) index is damaged; left alone") from None
    return new[:i] + [new[i][:8] + bytes(tiff)] + new[i + 1:]


def _new_jpeg_exif(segments: list[bytes]) -> bytes:
    """A fresh EXIF with the IFD0 tags EXIF requires in a JPEG (resolution from JFIF, else 72 dpi)."""
    units, x, y = 1, 72, 72
    if segments and segments[0][1:2] == b"\xe0" and segments[0][4:9] == b"JFIF\x00" and len(segments[0]) >= 16:
        jfif_units, jx, jy = struct.unpack_from(">BHH", segments[0], 11)
        if jfif_units in (1, 2) and jx and jy:
            units, x, y = jfif_units, jx, jy
    return _set_ifd0(EMPTY_TIFF, {282: (5, struct.pack("<II", x, 1)), 283: (5, struct.pack("<II", y, 1)),
                                  296: (3, struct.pack("<H", units + 1)), 531: (3, struct.pack("<H", 1))})


def _write_jpeg(data: bytes, xmp, iptc, changes) -> bytes:
    old, sos = _jpeg_head(data)
    segments = list(old)
    exif = next((s for s in segments if _kind(s) == "exif"), None)
    if exif is not None or any(v is not None for v in changes.values()):
        tiff = exif[10:] if exif is not None else _new_jpeg_exif(segments)
        if exif is not None:
            _exif_dict(tiff)
        new = _set_ifd0(tiff, changes)
        if new != tiff or exif is None:
            at = segments.index(exif) if exif is not None else _place(segments, ())
            segments[at:at + (exif is not None)] = [_segment(0xE1, EXIF_HEAD + new, "EXIF")]
    if xmp is not None:
        if len(xmp) > XMP_MAX:
            raise WriteBackError(f"the XMP packet is {len(xmp):,} bytes; more than {XMP_MAX:,} needs extended "
                                 "XMP, which is not supported: use a sidecar")
        segments = [s for s in segments if _kind(s) != "xmpext" or s[39:71] in xmp]  # stale extensions go
        current = next((s for s in segments if _kind(s) == "xmp"), None)
        if current is None or current[33:] != xmp:
            segments = _replace(segments, "xmp", [_segment(0xE1, XMP_NS + xmp, "XMP")], ("exif",))
    if iptc is not None:
        segments = _replace(segments, "irb", _jpeg_irb(segments, iptc), ("xmp", "exif"))
    if segments == old:
        return data
    return data[:2] + b"".join(_fix_mpf(old, segments)) + data[sos:]


def _read_jpeg(data: bytes) -> Embedded:
    segments, _ = _jpeg_head(data)
    xmp = next((s[33:] for s in segments if _kind(s) == "xmp"), None)
    irb = b"".join(s[18:] for s in segments if _kind(s) == "irb")
    exif = next((s[10:] for s in segments if _kind(s) == "exif"), None)
    return Embedded(xmp, iim.iim_of_irb(irb) if irb else None, _exif_dict(exif) if exif is not None else None)


# -- PNG -----------------------------------------------------------------------------------------

def _png_chunks(data: bytes) -> tuple[list[bytes], int]:
    """Whole chunks (length, type, body, CRC; verbatim) through IEND, and where IEND ends."""
    pos, chunks = 8, []
    while pos + 12 <= len(data):
        end = pos + 12 + struct.unpack_from(">I", data, pos)[0]
        if end > len(data):
            break
        chunks.append(data[pos:end])
        pos = end
        if chunks[-1][4:8] == b"IEND":
            return chunks, pos
    raise WriteBackError("PNG is truncated: it ends before its IEND chunk; left alone")


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


def _write_png(data: bytes, xmp, iptc, changes) -> bytes:
    old, end = _png_chunks(data)
    chunks = list(old)
    exif = next((i for i, c in enumerate(chunks) if c[4:8] == b"eXIf"), None)
    if exif is not None or any(v is not None for v in changes.values()):
        body = chunks[exif][8:-4] if exif is not None else EMPTY_TIFF
        head = EXIF_HEAD if body.startswith(EXIF_HEAD) else b""
        if exif is not None:
            _exif_dict(body[len(head):])
        new = _set_ifd0(body[len(head):], changes)
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


def _read_png(data: bytes) -> Embedded:
    chunks, _ = _png_chunks(data)
    texts = {k: _png_text(chunks[i])[1] for k in (PNG_XMP, PNG_IPTC) if (i := _png_find(chunks, k)) is not None}
    exif = next((c[8:-4] for c in chunks if c[4:8] == b"eXIf"), None)
    if exif is not None and exif.startswith(EXIF_HEAD):
        exif = exif[len(EXIF_HEAD):]
    iptc = None
    if PNG_IPTC in texts:
        raw = _raw_profile(texts[PNG_IPTC])[1]
        iptc = raw if raw.startswith(b"\x1c") else iim.iim_of_irb(raw)
    return Embedded(texts.get(PNG_XMP), iptc, _exif_dict(exif) if exif is not None else None)


# -- WebP ----------------------------------------------------------------------------------------

def _riff_chunks(data: bytes) -> tuple[list[bytes], int]:
    """Whole chunks (fourcc, size, payload, pad; verbatim) and where the RIFF ends."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise WriteBackError("not a WebP file")
    riff_end = 8 + struct.unpack_from("<I", data, 4)[0]
    if riff_end > len(data):
        raise WriteBackError("WebP is truncated; left alone")
    pos, chunks = 12, []
    while pos + 8 <= riff_end:
        end = pos + 8 + struct.unpack_from("<I", data, pos + 4)[0]
        if end > riff_end:
            raise WriteBackError("WebP is truncated inside a chunk; left alone")
        chunks.append(data[pos:min(end + (end & 1), riff_end)])
        pos = end + (end & 1)
    return chunks, riff_end


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


def _write_webp(data: bytes, xmp, iptc, changes) -> bytes:
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
            _exif_dict(body[len(head):])
        new = _set_ifd0(body[len(head):], changes)
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


def _read_webp(data: bytes) -> Embedded:
    found = {}
    for chunk in _riff_chunks(data)[0]:
        found.setdefault(chunk[:4], chunk[8:8 + struct.unpack_from("<I", chunk, 4)[0]])
    exif = found.get(b"EXIF")
    if exif is not None and exif.startswith(EXIF_HEAD):
        exif = exif[len(EXIF_HEAD):]
    return Embedded(found.get(b"XMP "), None, _exif_dict(exif) if exif is not None else None)


# -- the public entry points ---------------------------------------------------------------------

def read_embedded(data: bytes, fmt: str) -> Embedded:
    """The XMP packet, raw IPTC-IIM and EXIF (piexif dict) a photo carries; damaged EXIF raises."""
    _need(fmt)
    try:
        if fmt == "TIFF":
            order, _, entries, _ = _ifd0(data)
            xmp = next((_value(data, order, e) for e in entries if e[0] == XMP_TAG), None)
            return Embedded(xmp, _tiff_iptc(data), _exif_dict(data))
        return {"JPEG": _read_jpeg, "PNG": _read_png, "WEBP": _read_webp}[fmt](data)
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
    changes = _keyword_changes(keywords, description)
    _whole(data, fmt)
    try:
        if fmt == "TIFF":
            _exif_dict(data)
            return _set_ifd0(data, _tiff_changes(data, xmp, iptc, changes))
        writer = {"JPEG": _write_jpeg, "PNG": _write_png, "WEBP": _write_webp}[fmt]
        return writer(data, xmp, iptc if "iptc" in FIELDS[fmt] else None, changes)
    except iim.IptcError as e:
        raise WriteBackError(f"{e}; left alone") from None
    except (struct.error, IndexError, ValueError) as e:
        raise WriteBackError(f"its metadata is damaged ({e}); left alone") from None


def _layout(data: bytes, fmt: str) -> list[tuple[int, int, bool]]:
    """The file as (start, end, is_pixels) ranges: pixels are what write_embedded never changes."""
    if fmt == "JPEG":
        sos = _jpeg_head(data)[1]
        return [(0, sos, False), (sos, len(data), True)]
    if fmt == "TIFF":  # writes only append (or rewrite an IFD0 that already sits at the end)
        order, off, entries, _ = _ifd0(data)
        cut = off if _tail_is_ifd0(data, order, off, entries) else len(data)
        return [(0, 8, False), (8, cut, True), (cut, len(data), False)]
    if fmt == "PNG":
        chunks, end = _png_chunks(data)
        out, pos = [(0, 8, False)], 8
        for c in chunks:
            out.append((pos, pos + len(c), c[4:8] not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf")))
            pos += len(c)
        return out + [(end, len(data), False)]
    chunks, riff_end = _riff_chunks(data)
    out, pos = [(0, 12, False)], 12
    for c in chunks:
        size = 8 + struct.unpack_from("<I", c, 4)[0]
        out += [(pos, pos + size, c[:4] not in (b"VP8X", b"EXIF", b"XMP ")), (pos + size, pos + len(c), False)]
        pos += len(c)
    return out + [(riff_end, len(data), False)]


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
