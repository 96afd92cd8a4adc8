"""Text in the picture, offline: RapidOCR on onnxruntime with the PP-OCR models its wheel ships.

The detector looks at the photo at most `DET_EDGE` pixels on its long side; only the
lines it finds go to the recogniser, so a photo without text costs the detector alone.
Lines read with a confidence of at least `MIN_SCORE` and holding two letters or digits
or more become the searchable `text` (a lone "O" is usually a circle). The tag `text`
is given when those lines hold at least `MIN_CHARS` letters or digits together (a
jersey's "23" is searchable, but is not "a photo with text"). The model
reads Latin script, digits and Chinese. Upside-down text is not looked for (the
angle classifier is off: it costs time and photos are set upright first).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from catalog.enrichers import Enrichment, distribution

NEEDS_PIXELS = True
DET_EDGE = 512  # 640 reads a little more small text for twice the detector time
MIN_SCORE = 0.80
MIN_CHARS = 4
MAX_LINES = 50  # kept in raw, with their scores


@functools.cache
def load():
    """The OCR engine with the wheel's own models, one thread; built once per process."""
    import importlib.util
    import logging

    from rapidocr import RapidOCR

    models = Path(importlib.util.find_spec("rapidocr").origin).parent / "models"
    det = _one(models, "*det*.onnx")
    rec = _one(models, "*rec*.onnx")
    engine = RapidOCR(params={
        "Global.use_cls": False,
        "Global.log_level": "error",
        "Det.model_path": str(det),
        "Det.limit_side_len": DET_EDGE,
        "Det.limit_type": "max",
        "Rec.model_path": str(rec),
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return engine, f"{det.stem} + {rec.stem}"


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"rapidocr's wheel has no {pattern} in {folder}; reinstall 'catalog[local]'")
    return found[-1]


def read_lines(image) -> list[tuple[str, float]]:
    """Every line the model read, with its confidence, top to bottom."""
    import numpy as np

    engine, _ = load()
    result = engine(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))  # RGB -> BGR, as it expects
    texts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    return [(" ".join(t.split()), round(float(s), 4)) for t, s in zip(texts, scores) if t.strip()]


def enrich(image, facts: dict[str, Any]) -> Enrichment:
    """The confident lines as searchable text; the tag `text` when there is enough of it."""
    _, model = load()
    lines = read_lines(image)
    confident = [t for t, s in lines if s >= MIN_SCORE and sum(c.isalnum() for c in t) >= 2]
    chars = sum(c.isalnum() for line in confident for c in line)
    return Enrichment(
        "text", distribution("rapidocr"), model,
        tags=("text",) if chars >= MIN_CHARS else (),
        text="\n".join(confident),
        raw={"lines": [[t, s] for t, s in lines[:MAX_LINES]], "characters": chars},
    )
