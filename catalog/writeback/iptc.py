"""IPTC keywords and captions in their IIM and Photoshop containers, rewritten without losing a byte we do not own."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from catalog.errors import IptcError

UTF8 = b"\x1b%G"  # 1:90 CodedCharacterSet: ISO 2022 escape for UTF-8
LATIN1 = (b"\x1b.A", b"\x1b-A")  # the escapes some writers use for ISO 8859-1
RECORD_VERSION = b"\x00\x04"  # 2:0, IIM 4
KEYWORDS, CAPTION = 25, 120  # record 2 datasets
KEYWORD_MAX, CAPTION_MAX = 64, 2000  # bytes, from the IIM 4.2 spec
BINARY_2 = {0, 125, 200, 201, 202}  # record 2 datasets that are not text (version, previews)
PHOTOSHOP = b"Photoshop 3.0\x00"
IPTC_RESOURCE, DIGEST_RESOURCE = 0x0404, 0x0425
SIGNATURES = (b"8BIM", b"PHUT", b"AgHg", b"DCSR", b"MeSa")  # ones Photoshop and exiftool accept

Dataset = tuple[int, int, bytes]  # (record, dataset, value)


class Resource(NamedTuple):
    """One Photoshop image resource; `signature` is almost always b"8BIM"."""

    resource_id: int
    name: bytes
    data: bytes
    signature: bytes = b"8BIM"


def parse_iim(data: bytes) -> list[Dataset]:
    """Every dataset in order; trailing NUL padding (TIFF stores IIM as LONGs) is ignored."""
    out, pos, n = [], 0, len(data)
    while pos < n:
        if data[pos] != 0x1C:
            if not data[pos:].strip(b"\x00"):
                break
            raise IptcError(f"IPTC data is damaged: no dataset marker at byte {pos}")
        if pos + 5 > n:
            raise IptcError("IPTC data is truncated inside a dataset header")
        record, number, size = data[pos + 1], data[pos + 2], struct.unpack_from(">H", data, pos + 3)[0]
        pos += 5
        if size & 0x8000:  # extended dataset: the low bits count the length bytes that follow
            width = size & 0x7FFF
            if not 0 < width <= 8 or pos + width > n:
                raise IptcError("IPTC data has a broken extended dataset length")
            size, pos = int.from_bytes(data[pos:pos + width], "big"), pos + width
        if pos + size > n:
            raise IptcError("IPTC data is truncated inside a dataset value")
        out.append((record, number, bytes(data[pos:pos + size])))
        pos += size
    return out


def build_iim(datasets: Iterable[Dataset]) -> bytes:
    """IIM bytes, records in order (stable); with record 2 present, 1:90 = UTF-8 and 2:0 are ensured.

    A 1:90 already in `datasets` is kept as given: callers that pass text in another
    character set must say so there (merge_iptc always writes UTF-8).
    """
    items = list(datasets)
    if any(r == 2 for r, _, _ in items):
        present = {(r, n) for r, n, _ in items}
        items += [d for d in ((1, 90, UTF8), (2, 0, RECORD_VERSION)) if d[:2] not in present]
    # Records ascending; record 1 by number; 2:0 first in record 2; all else keeps its order.
    items.sort(key=lambda d: (d[0], d[1] if d[0] == 1 else int(d[1] != 0)))
    out = bytearray()
    for record, number, value in items:
        out += bytes((0x1C, record, number))
        if len(value) < 0x8000:
            out += struct.pack(">H", len(value))
        else:
            out += struct.pack(">HI", 0x8004, len(value))
        out += value
    return bytes(out)


def clip(text: str, limit: int) -> bytes:
    """UTF-8 of `text`, cut to `limit` bytes on a character boundary (IIM caps: 64 per keyword)."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore").encode("utf-8")


def _charset(datasets: list[Dataset]) -> str:
    """How record 2 text is encoded: declared UTF-8/Latin-1, else ASCII-or-UTF-8, else Latin-1."""
    declared = next((v for r, n, v in datasets if (r, n) == (1, 90)), None)
    if declared == UTF8:
        return "utf-8"
    if declared in LATIN1:
        return "latin-1"
    if declared is not None:
        raise IptcError(f"IPTC uses character set {declared!r}, which we cannot rewrite safely")
    text = b"".join(v for r, n, v in datasets if r == 2 and n not in BINARY_2)
    try:
        text.decode("utf-8")
        return "utf-8"  # ASCII, or undeclared but valid UTF-8 (Latin-1 text almost never is)
    except UnicodeDecodeError:
        return "latin-1"


def merge_iptc(existing_iim: bytes | None, *, add: Sequence[str], remove: Iterable[str] = (),
               caption: str | None = None, replace_caption: bool = False) -> bytes:
    """`existing_iim` with keywords (2:25) = existing - remove + add, caption (2:120) set; all else kept.

    Keywords are deduplicated in order and cut to 64 bytes each on a UTF-8 character
    boundary; the caption to 2000 bytes. The caption is set when `replace_caption` or when
    there is none yet. Text without a declared character set that is not valid UTF-8 is
    read as Latin-1; everything is written back as UTF-8 with 1:90 declaring it, so other
    text datasets are transcoded too (their meaning is kept, their bytes change).
    """
    datasets = parse_iim(existing_iim) if existing_iim else []
    charset = _charset(datasets)
    if charset != "utf-8":
        datasets = [(r, n, v.decode(charset).encode("utf-8") if r == 2 and n not in BINARY_2 else v)
                    for r, n, v in datasets]
    datasets = [(r, n, UTF8) if (r, n) == (1, 90) else (r, n, v) for r, n, v in datasets]
    gone = {clip(k, KEYWORD_MAX) for k in remove} | {k.encode("utf-8") for k in remove}
    keywords: list[bytes] = []
    for value in [v for r, n, v in datasets if (r, n) == (2, KEYWORDS) and v not in gone]:
        if value not in keywords:
            keywords.append(value)
    keywords += [k for k in dict.fromkeys(clip(k, KEYWORD_MAX) for k in add) if k and k not in keywords]
    first = next((i for i, (r, n, _) in enumerate(datasets) if (r, n) == (2, KEYWORDS)), len(datasets))
    kept = [d for i, d in enumerate(datasets) if (d[0], d[1]) != (2, KEYWORDS) or i == first]
    has_caption = any((r, n) == (2, CAPTION) for r, n, _ in kept)
    out: list[Dataset] = []
    for record, number, value in kept:
        if (record, number) == (2, KEYWORDS):
            out += [(2, KEYWORDS, k) for k in keywords]
        elif (record, number) == (2, CAPTION) and caption is not None and replace_caption:
            out += [(2, CAPTION, clip(caption, CAPTION_MAX))] if caption else []  # "" removes it
        else:
            out.append((record, number, value))
    if first == len(datasets):
        out += [(2, KEYWORDS, k) for k in keywords]
    if caption and not has_caption:
        out.append((2, CAPTION, clip(caption, CAPTION_MAX)))
    return build_iim(out)


def keywords_of(iim: bytes | None) -> list[str]:
    """The 2:25 keywords as text (for tests and verification), decoded like merge_iptc does."""
    datasets = parse_iim(iim) if iim else []
    charset = _charset(datasets)
    return [v.decode(charset) for r, n, v in datasets if (r, n) == (2, KEYWORDS)]


def read_irb(payload: bytes) -> list[Resource]:
    """The resources of a Photoshop image resource block (an APP13 payload, header optional)."""
    data = payload[len(PHOTOSHOP):] if payload.startswith(PHOTOSHOP) else payload
    out, pos, n = [], 0, len(data)
    while pos < n:
        if not data[pos:].strip(b"\x00"):
            break  # padding
        signature = bytes(data[pos:pos + 4])
        if signature not in SIGNATURES or pos + 7 > n:
            raise IptcError(f"Photoshop resource block is damaged at byte {pos}")
        rid, name_len = struct.unpack_from(">HB", data, pos + 4)
        name = bytes(data[pos + 7:pos + 7 + name_len])
        pos += 6 + ((1 + name_len + 1) & ~1)  # Pascal string padded to an even size
        if pos + 4 > n:
            raise IptcError("Photoshop resource block is truncated")
        size = struct.unpack_from(">I", data, pos)[0]
        pos += 4
        if pos + size > n:
            raise IptcError(f"Photoshop resource 0x{rid:04x} is truncated")
        out.append(Resource(rid, name, bytes(data[pos:pos + size]), signature))
        pos += size + (size & 1)
    return out


def build_irb(resources: Iterable[Resource | tuple]) -> bytes:
    """A resource block (without the "Photoshop 3.0" header) from (id, name, data[, signature])."""
    out = bytearray()
    for item in resources:
        rid, name, data, signature = (*item, b"8BIM")[:4] if len(item) == 3 else item
        pascal = bytes((len(name),)) + name
        out += signature + struct.pack(">H", rid) + pascal + b"\x00" * (len(pascal) & 1)
        out += struct.pack(">I", len(data)) + data + b"\x00" * (len(data) & 1)
    return bytes(out)


def iim_of_irb(payload: bytes) -> bytes | None:
    """The IIM held in resource 0x0404 of a resource block, or None."""
    return next((r.data for r in read_irb(payload) if r.resource_id == IPTC_RESOURCE), None)


def replace_iim(resources: Sequence[Resource], iim: bytes, *, add: bool = True) -> list[Resource]:
    """`resources` with 0x0404 holding `iim` (added at the end if absent and `add`), all else kept.

    The IPTC digest (0x0425, MD5 of the IIM) is recomputed when present, so Photoshop and
    exiftool see IPTC and XMP as in step rather than as "changed by another program".
    """
    out, placed = [], False
    for res in resources:
        if res.resource_id == IPTC_RESOURCE:
            if not placed:
                out.append(res._replace(data=iim))
            placed = True
        elif res.resource_id == DIGEST_RESOURCE:
            out.append(res._replace(data=hashlib.md5(iim).digest()))
        else:
            out.append(res)
    if not placed and add:
        out.append(Resource(IPTC_RESOURCE, b"", iim))
    return out
