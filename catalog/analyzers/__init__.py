"""The one seam for analyzer back-ends: image bytes in, a typed `Analysis` out.

Every back-end (the ImgTags HTTP client, any OpenAI-compatible vision server, the
offline default, later ones) is built by a factory that takes the loaded `Config`,
and offers `analyze(UploadImage) -> Analysis` and `close()`. Back-ends never touch
the database; the pipeline stores what they return. A new back-end is one module
with a factory plus one line in `REGISTRY`; valid analyzer names come from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from catalog.errors import ConfigError

if TYPE_CHECKING:
    from catalog.settings import Config

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
    """A back-end: `analyze(image) -> Analysis`; raises `catalog.errors` types on failure.

    `close()` releases what the factory opened (HTTP connections); the stage calls it once
    the run is over. A back-end holding a secret exposes it as `secrets` so the stage can
    scrub it from anything it stores or prints.
    """

    name: str

    def analyze(self, image: UploadImage) -> Analysis: ...

    def close(self) -> None: ...


AnalyzerFactory = Callable[["Config"], Analyzer]

# Name -> its factory, as "module:function" (imported only when that back-end is built, so
# checking a name in the settings imports nothing heavy) or as the factory itself.
REGISTRY: dict[str, str | AnalyzerFactory] = {
    "imgtags": "catalog.analyzers.imgtags:create",
    "offline": "catalog.analyzers.offline:create",
    "openai": "catalog.analyzers.openai:create",
}


def register(name: str, factory: str | AnalyzerFactory) -> None:
    """Make a back-end available as `analyzer = name`: a factory taking the `Config`."""
    REGISTRY[name] = factory


def analyzer_names() -> tuple[str, ...]:
    """Every name `analysis.analyzer` may take (besides "auto")."""
    return tuple(sorted(REGISTRY))


def analyzer_factory(name: str) -> AnalyzerFactory:
    """The factory registered under `name`; ConfigError for a name nobody registered."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"unknown analyzer {name!r}: choose one of {', '.join(analyzer_names())}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return entry
