"""What a photo or sidecar already says (keywords, descriptions in XMP, IPTC, EXIF) and what of it is ours.

The write-back stage plans from these: keywords are merged and only our own stale ones
removed; a description the user gave in any one field keeps ours out of every field.
"""

from __future__ import annotations

import json
import unicodedata

from catalog.errors import CatalogError
from catalog.identity import sniff
from catalog.writeback import embed, iptc, xmp
from catalog.writeback.atomic import read_file
from catalog.errors import WriteBackError

HEAD = 4 << 20  # where a photo's metadata is looked for in sidecar mode (JPEG keeps it in front)
# What cameras and tools put in a description field by themselves: nobody's words.
PLACEHOLDERS = {"olympus digital camera", "sony dsc", "digital camera", "minolta digital camera",
                "konica minolta digital camera", "samsung digital camera", "pentax digital camera",
                "kodak digital still camera", "dcim", "default", "null", "none", "untitled", "image"}


def fold(words) -> set[str]:
    return {unicodedata.normalize("NFC", w).casefold() for w in words}


def exif_text(exif: dict | None, tag: int) -> str | None:
    value = ((exif or {}).get("0th") or {}).get(tag)
    if isinstance(value, (tuple, list)):
        value = bytes(value)
    if isinstance(value, bytes):
        codec = "utf-16-le" if tag == 0x9C9E else "utf-8"
        value = value.decode(codec, "replace")
    return value.replace("\x00", "").strip() or None if isinstance(value, str) else None


def iptc_caption(iim: bytes | None) -> str | None:
    for record, number, value in iptc.parse_iim(iim) if iim else ():
        if (record, number) == (2, iptc.CAPTION):
            return value.decode("utf-8", "replace").strip() or None
    return None


def xp_keywords(exif: dict | None) -> list[str]:
    return [w for w in (exif_text(exif, 0x9C9E) or "").split(";") if w.strip()]


def descriptions(current: embed.Embedded) -> list[str | None]:
    """The descriptions a photo carries: XMP dc:description, EXIF ImageDescription, IPTC Caption."""
    facts = xmp.read_xmp(current.xmp) if current.xmp else xmp.XmpFacts()
    return [facts.description, exif_text(current.exif, 0x010E), iptc_caption(current.iptc)]


def photo_metadata(path: str) -> tuple[bytes | None, list[str | None]]:
    """A photo's XMP packet and descriptions, from its first bytes (sidecar mode reads no more)."""
    with open(path, "rb") as f:
        head = f.read(HEAD)
    packet = xmp.find_xmp_packet(head)
    fmt = sniff(head[:32])
    if fmt not in embed.FIELDS:
        return packet, []
    try:
        current = embed.read_embedded(head, fmt)
        return current.xmp or packet, descriptions(current)
    except (CatalogError, ValueError):  # metadata beyond the first bytes: the XMP is what we have
        return packet, []


def sidecar_description(path: str) -> str | None:
    """The description an existing sidecar holds (None when there is none or it cannot be read)."""
    try:
        return xmp.read_xmp(read_file(path, limit=xmp.MAX_BYTES, what="the sidecar")[0]).description
    except (OSError, ValueError, WriteBackError):
        return None


def users_description(found, ours: set[str | None]) -> bool:
    """Whether any field holds a description that is not one we wrote nor a camera's placeholder."""
    return any(text and text.strip() and text not in ours and text.strip().casefold() not in PLACEHOLDERS
               for text in found)


def plan(present: list[str], state: dict | None, tags: list[str]):
    """What to add, which of our earlier keywords to remove, and which keywords count as ours.

    A keyword the photo already had before we first wrote it stays the user's: we never
    claim it, so a later analysis without it cannot remove it.
    """
    ours_before = json.loads(state["keywords"]) if state else []
    remove = [k for k in ours_before if k not in tags]
    have = fold(present)
    add = [k for k in tags if k.casefold() not in have]
    owned = [k for k in tags if k in ours_before or k.casefold() not in have]
    return add, [k for k in remove if k.casefold() in have], owned


def may_replace(current: str | None, state: dict | None) -> bool:
    """Our description may replace the current one only if the current one is ours."""
    return bool(state and state["description"] is not None and current == state["description"])


def ours_in(packet: bytes, description: str | None) -> str | None:
    """The description we count as ours: only if the packet now holds exactly it."""
    return description if description and xmp.read_xmp(packet).description == description else None
