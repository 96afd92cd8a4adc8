"""How two photos relate (copy, edit, burst, similar) and which of a group to keep, by documented rules.

Precision first: `copy` (the one relation that lets a photo reuse another's paid analysis)
needs the hashes within COPY_DISTANCE bits *and* the same aspect (within COPY_ASPECT plus the
rounding of a resize) *and* the same mean colour (every channel within COPY_TONE levels or
COPY_TONE_SHARE of its level) *and* the same 16x16 grey cells (mean gap within COPY_DETAIL: a
3 % crop shifts the picture by a third of a cell, which the 64-bit hash often misses; every
cell within COPY_CELL: a digit drawn on the scene) *and* no fact that tells two shots apart:
two different capture times, or two different cameras.

Measured on the 27 distinct photos of ../shared/photos/real and their transformed copies
(tests/similar_pairs.py; distance in bits of 64, tone and detail in levels of 255):

    copies (resize 50/25 %, JPEG q60, PNG, WebP, pixels rotated: 189 pairs)
        distance <= 5 but two (a 360x216 graphic as WebP: 9, resized to 25 %: 17);
        aspect within 0.12 % (+ rounding); tone within 3; detail <= 1.4 (100 px images
        resized to 25-50 %: up to 9.7, hence the allowance for small pictures)
    crop 3 % (left and top)    distance mean 6, max 13; detail >= 2.95 (a flat grey image: 0)
    brightness +10 %, warmer   distance <= 5; tone 15-18
    distinct photos (351 pairs) distance >= 14 (mean 31.4)

Hence COPY_DISTANCE 8 (the graphic's WebP at 9 is missed: the index groups 100k photos within
8 bits in under 10 s, within 10 bits in about a minute) and COPY_DETAIL 2.5. An edit is the same shot within EDIT_DISTANCE
12 whose aspect stays within EDIT_ASPECT (a crop up to 5 % per side), colours and crop free.
Known limits: two frames of one burst taken in the same second (taken_at has no sub-seconds)
that match this closely are called copies; a crop of a flat picture is a copy; a heavier crop
than 5 % is only `similar` or nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from catalog.similar.fingerprint import Fingerprint, detail_gap, detail_peak, distance

COPY_DISTANCE = 8  # bits: resized, re-encoded, converted or rotated copies measured <= 5 (two 9, 17)
COPY_ASPECT = 0.01  # relative aspect difference, plus the rounding of each side (1 px)
COPY_TONE = 3  # levels per channel a copy may always differ by (copies measured <= 2)
COPY_TONE_SHARE = 0.065  # above COPY_TONE, a gap over this share of the level is a recolour:
                         # copies measured <= 5.4 %, +10 % brightness >= 7.5 % (bench/similar.py)
COPY_TONE_MAX = 8  # and a gap over this many levels always is (a warmer bright blue: 14 of 253)
DETAIL_ALLOWANCE = 4.0  # at most this many times COPY_DETAIL/COPY_CELL for a tiny picture: a 3 %
                        # crop of a 100-px photo passed the unbounded allowance
COPY_DETAIL = 2.5  # mean grey-cell gap: copies <= 1.4, a 3 % crop >= 2.95
COPY_CELL = 16  # largest single grey-cell gap: copies <= 11 (from 128 px up); one scene with
                # another digit drawn on it (landscape_2..8) 10-45, 20 of 21 pairs >= 18
DETAIL_EDGE = 128  # below this short side, resizing blurs the cells: the allowance grows
EDIT_DISTANCE = 12  # bits: a 3 % crop measured at mean 6, max 13
EDIT_ASPECT = 0.11  # a crop of up to 5 % from each of two opposite sides
BURST_SECONDS = 5  # frames of one burst: same camera, taken at most this far apart
BURST_DISTANCE = 20  # bits: the subject moves between frames; distinct photos average 31.5
SIMILAR_DISTANCE = 12  # bits: looks alike (distinct photos of the test set: >= 14)
GROUP_DISTANCE = COPY_DISTANCE  # bits: near_groups pairs photos this close (edits further off
# show in similar_to, which looks at every hash): 100k photos in under 10 s on 2 cores
# Formats a camera or phone writes; a PNG/WebP/GIF/BMP of the same picture is a conversion.
ORIGINAL_FORMATS = frozenset({"JPEG", "MPO", "HEIF", "HEIC", "AVIF", "TIFF", "DNG"})
CONVERSION_FORMATS = frozenset({"PNG", "WEBP", "GIF", "BMP"})
RELATIONS = ("copy", "edit", "burst", "similar")


@dataclass(frozen=True)
class Candidate:
    id: str
    fingerprint: Fingerprint
    width: int
    height: int
    taken_at: str | None  # ISO text as the catalogue stores it
    camera: str | None  # make + model
    bytes: int
    format: str | None
    has_gps: bool = False  # one more piece of metadata for keeper()


def _aspect_gap(a: Candidate, b: Candidate) -> tuple[float, float]:
    """The relative aspect difference, and the part of it a resize's rounding can explain."""
    gap = abs(math.log(a.fingerprint.aspect / b.fingerprint.aspect)) if a.fingerprint.aspect > 0 < b.fingerprint.aspect else math.inf
    rounding = 1 / max(1, min(a.width, a.height)) + 1 / max(1, min(b.width, b.height))
    return gap, rounding


def same_tone(a: Fingerprint, b: Fingerprint) -> bool:
    """Every channel's mean within COPY_TONE levels, or within COPY_TONE_SHARE of its level and
    COPY_TONE_MAX levels."""
    return all(abs(x - y) <= COPY_TONE or abs(x - y) <= min(COPY_TONE_MAX, COPY_TONE_SHARE * max(x, y))
               for x, y in zip(a.rgb, b.rgb))


def _same_detail(a: Candidate, b: Candidate) -> bool:
    """The grey cells agree within COPY_DETAIL on average and COPY_CELL at most (more for small
    pictures); True when unknown."""
    gap, peak = detail_gap(a.fingerprint, b.fingerprint), detail_peak(a.fingerprint, b.fingerprint)
    if gap is None or peak is None:
        return True
    allowance = min(DETAIL_ALLOWANCE, max(1.0, DETAIL_EDGE / max(1, min(a.width, a.height, b.width, b.height))))
    return gap <= COPY_DETAIL * allowance and peak <= COPY_CELL * allowance


def taken_time(value: str | None) -> datetime | None:
    """The capture time of ISO text (naive, as the camera's clock said it), None if unknown."""
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None) if value else None
    except ValueError:
        return None


def _camera(value: str | None) -> str | None:
    return " ".join(value.lower().split()) if value and value.strip() else None


def same_shot_possible(a: Candidate, b: Candidate) -> bool:
    """False when the facts tell two shots apart: two capture times, or two cameras."""
    if a.taken_at and b.taken_at and a.taken_at != b.taken_at:
        return False
    ca, cb = _camera(a.camera), _camera(b.camera)
    return not (ca and cb and ca != cb)


def burst_mates(a: Candidate, b: Candidate) -> bool:
    """The same camera, both dated, at most BURST_SECONDS apart."""
    ca, ta, tb = _camera(a.camera), taken_time(a.taken_at), taken_time(b.taken_at)
    if not ca or ca != _camera(b.camera) or ta is None or tb is None:
        return False
    return abs((ta - tb).total_seconds()) <= BURST_SECONDS


def relation(a: Candidate, b: Candidate) -> str | None:
    """"copy" | "edit" | "burst" | "similar" | None, by the rules of this module's docstring."""
    d = distance(a.fingerprint.phash, b.fingerprint.phash)
    if same_shot_possible(a, b):
        gap, rounding = _aspect_gap(a, b)
        if (d <= COPY_DISTANCE and gap <= COPY_ASPECT + rounding
                and same_tone(a.fingerprint, b.fingerprint) and _same_detail(a, b)):
            return "copy"
        if d <= EDIT_DISTANCE and gap <= EDIT_ASPECT + rounding:
            return "edit"  # cropped, recoloured or both
    if d <= BURST_DISTANCE and burst_mates(a, b):
        return "burst"
    if d <= SIMILAR_DISTANCE:
        return "similar"
    return None


def _format_rank(fmt: str | None) -> int:
    fmt = (fmt or "").upper()
    return 0 if fmt in ORIGINAL_FORMATS else 2 if fmt in CONVERSION_FORMATS else 1


def keeper(group: list[Candidate]) -> Candidate:
    """The one to keep: largest resolution, original format (not a conversion), earliest date,
    most metadata, in that order (then the id, so the choice is stable)."""
    if not group:
        raise ValueError("keeper() of an empty group")

    def rank(c: Candidate):
        when = taken_time(c.taken_at)
        metadata = (c.taken_at is not None) + (c.camera is not None) + bool(c.has_gps)
        return (-(c.width * c.height), _format_rank(c.format), when is None, when or datetime.min,
                -metadata, c.id)

    return min(group, key=rank)
