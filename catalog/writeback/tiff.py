"""TIFF files: XMP and IPTC are IFD0 tags there, so a write is one IFD0 edit appended at the end."""

from __future__ import annotations

from catalog.containers import ifd_value
from catalog.writeback import iptc as iim
from catalog.writeback.tiffifd import BYTE, LONG, UNDEFINED, Change, exif_dict, ifd0, set_ifd0, tail_is_ifd0

XMP_TAG, IPTC_TAG, PHOTOSHOP_TAG = 700, 33723, 34377


def _tiff_changes(data: bytes, xmp: bytes | None, iptc: bytes | None, base: dict[int, Change]) -> dict:
    """TIFF file tags: XMP (700), IPTC (33723, and 0x0404 inside a Photoshop 34377 if there)."""
    order, _, entries, _ = ifd0(data)
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
            resources = iim.read_irb(ifd_value(data, order, entry))
            ids = {r.resource_id for r in resources}  # the IPTC copy, or just the digest of tag 33723
            if ids & {iim.IPTC_RESOURCE, iim.DIGEST_RESOURCE}:
                new = iim.replace_iim(resources, iptc, add=iim.IPTC_RESOURCE in ids)
                changes[PHOTOSHOP_TAG] = (entry[1], iim.build_irb(new))
    return changes


def _tiff_iptc(data: bytes) -> bytes | None:
    order, _, entries, _ = ifd0(data)
    current = {e[0]: e for e in entries}
    if IPTC_TAG in current:
        return ifd_value(data, order, current[IPTC_TAG])
    if PHOTOSHOP_TAG in current:
        return iim.iim_of_irb(ifd_value(data, order, current[PHOTOSHOP_TAG]))
    return None


def write(data: bytes, xmp, iptc, changes) -> bytes:
    exif_dict(data)
    return set_ifd0(data, _tiff_changes(data, xmp, iptc, changes))


def read(data: bytes) -> tuple[bytes | None, bytes | None, dict]:
    """(XMP packet, raw IIM, piexif dict)."""
    order, _, entries, _ = ifd0(data)
    xmp = next((ifd_value(data, order, e) for e in entries if e[0] == XMP_TAG), None)
    return xmp, _tiff_iptc(data), exif_dict(data)


def layout(data: bytes) -> list[tuple[int, int, bool]]:
    """Writes only append (or rewrite an IFD0 that already sits at the end): the rest is pixels."""
    order, off, entries, _ = ifd0(data)
    cut = off if tail_is_ifd0(data, order, off, entries) else len(data)
    return [(0, 8, False), (8, cut, True), (cut, len(data), False)]
