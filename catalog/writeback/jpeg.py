"""JPEG (and MPO): metadata lives in marker segments before the first scan, so only those are rebuilt."""

from __future__ import annotations

import struct

from catalog.containers import BrokenImage, jpeg_segments
from catalog.writeback import iptc as iim
from catalog.writeback.tiffifd import EMPTY_TIFF, EXIF_HEAD, UNDEFINED, WriteBackError, exif_dict, ifd0, set_ifd0

XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_NS = b"http://ns.adobe.com/xmp/extension/\x00"
XMP_MAX = 65502  # the largest standard XMP packet one JPEG APP1 segment holds


def header(data: bytes) -> tuple[list[bytes], int]:
    """The marker segments between SOI and the first scan (whole, verbatim), and where the scan starts."""
    try:
        segments, sos = jpeg_segments(data)
    except BrokenImage as e:
        raise WriteBackError(f"{e}; left alone") from None
    return [data[start:end] for _, start, end in segments], sos


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


def fix_mpf(old: list[bytes], new: list[bytes]) -> list[bytes]:
    """MPO: the MP index points at later images relative to the MPF header; move those offsets."""
    def distance(segments):  # from the MPF TIFF header to the first scan
        i = [_kind(s) for s in segments].index("mpf")
        return sum(len(s) for s in segments[i:]) - 8
    if "mpf" not in [_kind(s) for s in old] or not (delta := distance(old) - distance(new)):
        return new
    i = [_kind(s) for s in new].index("mpf")
    tiff = bytearray(new[i][8:])
    try:
        order, _, entries, _ = ifd0(bytes(tiff))
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
    return set_ifd0(EMPTY_TIFF, {282: (5, struct.pack("<II", x, 1)), 283: (5, struct.pack("<II", y, 1)),
                                 296: (3, struct.pack("<H", units + 1)), 531: (3, struct.pack("<H", 1))})


def write(data: bytes, xmp, iptc, changes) -> bytes:
    old, sos = header(data)
    segments = list(old)
    exif = next((s for s in segments if _kind(s) == "exif"), None)
    if exif is not None or any(v is not None for v in changes.values()):
        tiff = exif[10:] if exif is not None else _new_jpeg_exif(segments)
        if exif is not None:
            exif_dict(tiff)
        new = set_ifd0(tiff, changes)
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
    return data[:2] + b"".join(fix_mpf(old, segments)) + data[sos:]


def read(data: bytes) -> tuple[bytes | None, bytes | None, dict | None]:
    """(XMP packet, raw IIM, piexif dict), each None when absent."""
    segments, _ = header(data)
    xmp = next((s[33:] for s in segments if _kind(s) == "xmp"), None)
    irb = b"".join(s[18:] for s in segments if _kind(s) == "irb")
    exif = next((s[10:] for s in segments if _kind(s) == "exif"), None)
    return xmp, iim.iim_of_irb(irb) if irb else None, exif_dict(exif) if exif is not None else None


def layout(data: bytes) -> list[tuple[int, int, bool]]:
    """Everything from the first scan on is pixels."""
    sos = header(data)[1]
    return [(0, sos, False), (sos, len(data), True)]
