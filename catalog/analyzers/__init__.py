"""The one seam for analyzer back-ends: image bytes in, a typed `Analysis` out.

Every back-end (the ImgTags HTTP client, the offline default, later ones) is a
callable that takes an `UploadImage` and returns an `Analysis`. Back-ends never
touch the database; the pipeline stores what they return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

LIKELIHOODS = ("UNKNOWN", "VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY")


@dataclass(frozen=True)
class UploadImage:
    """What an analyzer receives: the bytes to send and what they are."""

    data: bytes
    mime: str  # image/jpeg, image/png, image/gif or image/webp
    filename: str = "image"
    exif: dict[str, Any] = field(default_factory=dict)  # facts the offline analyzer may use


@dataclass(frozen=True)
class Analysis:
    """Every field of the ImgTags answer, plus who produced it and the raw answer."""

    tags: tuple[str, ...] = ()
    description: str = ""
    objects: tuple[str, ...] = ()
    dominant_color: str = "unknown"  # "#RRGGBB" or "unknown"
    palette: tuple[str, ...] = ()
    scene: str = "unknown"
    mood: str = "unknown"
    safe_adult: str = "UNKNOWN"
    safe_violence: str = "UNKNOWN"
    orientation: str = "unknown"  # landscape / portrait / square
    provider: str = ""
    model: str = ""
    tokens_used: int = 0
    processing_time_ms: int = 0
    raw: dict[str, Any] | None = None


class Analyzer(Protocol):
    """A back-end: `analyze(image) -> Analysis`; raises `catalog.errors` types on failure."""

    name: str

    def analyze(self, image: UploadImage) -> Analysis: ...


AnalyzerFactory = Callable[..., Analyzer]
REGISTRY: dict[str, AnalyzerFactory] = {}


def register(name: str) -> Callable[[AnalyzerFactory], AnalyzerFactory]:
    """Decorator that makes a back-end available by name (`analyzer = "imgtags"` in config)."""

    def decorate(factory: AnalyzerFactory) -> AnalyzerFactory:
        REGISTRY[name] = factory
        return factory

    return decorate
