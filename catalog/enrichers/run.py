"""Running enrichers on one photo (`run_enrichers`) and in worker processes (`open_pool`).

`run_enrichers(source, names, facts)` takes a path or image bytes, decodes the image
once at reduced size (JPEG at 1/2..1/8 scale), sets it upright and hands the same
pixels to every enricher that needs them; `places` needs none. Its arguments and
result are plain picklable values, so a `ProcessPoolExecutor` can call it: the pool
from `open_pool` starts workers that load the models once, run one thread each at a
lower priority, and so never hold back the throttled API stage.
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from catalog.enrichers import MAX_EDGE, REGISTRY, Enrichment, EnrichResult, module
from catalog.errors import EnricherUnavailable, PreparationFailed

DEFAULT_NICENESS = 10  # workers yield the CPU to the API stage and to whatever else runs


def load_image(data: bytes, *, max_edge: int = MAX_EDGE, max_image_pixels: int = 178_956_970):
    """Upright RGB pixels, at most `max_edge` on the long side; PreparationFailed, one line, if unreadable."""
    from PIL import Image, ImageOps

    from catalog.decoding import failure_reason, flatten, open_image, pixel_limit
    from catalog.prepare import web_mode

    try:
        with pixel_limit(max_image_pixels):
            im = open_image(data)
            scale = min(1.0, max_edge / max(im.size))
            target = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            # JPEG decodes at 1/2, 1/4 or 1/8 scale; the box keeps the photo's aspect ratio.
            im.draft("RGB", target)
            im = ImageOps.exif_transpose(im)
            im.thumbnail((max_edge, max_edge), Image.Resampling.BILINEAR, reducing_gap=2.0)
            img, _ = web_mode(im)
            return flatten(img).convert("RGB")
    except PreparationFailed:
        raise
    except Exception as e:  # any decoder error is this photo's problem, said in one line
        raise PreparationFailed(failure_reason(e, data, max_image_pixels)) from e


def read_facts(data: bytes, max_image_pixels: int = 178_956_970) -> dict[str, Any]:
    """EXIF facts (gps_lat, gps_lon, taken_at, ...) when the caller has none at hand."""
    from dataclasses import asdict

    from catalog.imagefacts import read_facts as header_facts

    try:
        return asdict(header_facts(io.BytesIO(data), max_image_pixels=max_image_pixels))
    except Exception:  # no facts is an answer: places then finds nothing
        return {}


def run_enrichers(source: str | os.PathLike | bytes, names: Iterable[str],
                  facts: dict[str, Any] | None = None, *,
                  max_image_pixels: int = 178_956_970) -> EnrichResult:
    """Run the named enrichers on one photo; one enricher's failure never loses the others'.

    `source` is a path or the image bytes (e.g. the prepared upload, already upright);
    `facts` are the photo's EXIF facts, read from the file when None (pass them when
    `source` is an upload copy: its GPS is stripped). `max_image_pixels` is
    `[scan] max_image_pixels`: more is refused as a decompression bomb. Errors come back
    as one-line messages in `EnrichResult.errors`, never as exceptions.
    """
    names = list(names)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as e:
        return EnrichResult(errors=tuple((n, f"cannot read {source}: {e.strerror or e}") for n in names))
    if facts is None:
        facts = read_facts(data, max_image_pixels)
    done: list[Enrichment] = []
    errors: list[tuple[str, str]] = []
    image = None
    image_error = None
    for name in names:
        try:
            mod = module(name)
            if mod.NEEDS_PIXELS and image is None and image_error is None:
                try:
                    image = load_image(data, max_image_pixels=max_image_pixels)
                except PreparationFailed as e:
                    image_error = str(e)
            if mod.NEEDS_PIXELS and image is None:
                errors.append((name, image_error or "no pixels"))
                continue
            started = time.perf_counter()
            found = mod.enrich(image, facts)
            ms = round((time.perf_counter() - started) * 1000)
            done.append(replace(found, processing_time_ms=ms))
        except EnricherUnavailable as e:
            errors.append((name, str(e)))
        except Exception as e:  # noqa: BLE001 - a model's surprise fails this enricher, not the run
            errors.append((name, f"{type(e).__name__}: {e}"))
    return EnrichResult(tuple(done), tuple(errors), unreadable=image_error is not None)


def warm(names: Iterable[str], niceness: int = 0) -> None:
    """Prepare a worker: one thread per native library, lower priority, models loaded now."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the face detector's OpenMP pool
    if niceness:
        try:
            os.nice(niceness)
        except OSError:  # not allowed here: run at normal priority
            pass
    for name in names:
        if name in REGISTRY:
            try:
                loader = getattr(module(name), "load", None)
                if loader:
                    loader()
            except Exception:  # noqa: BLE001 - the same error is reported per photo by run_enrichers
                pass


def open_pool(names: Iterable[str], workers: int | None = None,
              niceness: int = DEFAULT_NICENESS) -> ProcessPoolExecutor:
    """A process pool whose workers have the models of `names` loaded; submit `run_enrichers`.

    Workers are started with "spawn" (no inherited threads or locks from the caller)
    and default to one per CPU this process may use, at most 4 (each holds its models,
    up to about 470 MB).
    """
    import multiprocessing

    names = tuple(names)
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = max(1, min(4, cpus))
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=warm, initargs=(names, niceness))
