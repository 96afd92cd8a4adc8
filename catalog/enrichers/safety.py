"""Adult-content likelihood, offline: the NudeNet detector (320n.onnx, shipped in its wheel).

The model (a YOLOv8n detector, input 320 x 320) finds 18 kinds of body part, exposed
or covered. Only exposed genitalia, anus, female breast and buttocks count as adult;
covered parts, bellies, feet, armpits and bare male chests are ordinary on a beach
and count for nothing. The highest score among the counting classes maps onto the
contract's scale:

    score >= 0.75  VERY_LIKELY
    score >= 0.60  LIKELY
    score >= 0.45  POSSIBLE
    score >= 0.25  UNLIKELY     (the model saw something weak: a leaf's vein scores 0.39)
    otherwise      VERY_UNLIKELY

No tags: the likelihood is the answer. Licence note: the model and the nudenet
package are AGPL-3.0 (Ultralytics); they are installed by the user with
`catalog[local]`, never shipped inside catalog.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from catalog.enrichers import Enrichment, distribution

NEEDS_PIXELS = True
SIZE = 320
LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
ADULT = ("FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_EXPOSED",
         "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED")
SCALE = ((0.75, "VERY_LIKELY"), (0.60, "LIKELY"), (0.45, "POSSIBLE"), (0.25, "UNLIKELY"))


@functools.cache
def load():
    """The ONNX session, one thread, built once per process."""
    import importlib.util

    import onnxruntime as ort

    path = Path(importlib.util.find_spec("nudenet").origin).parent / "320n.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    labels = session.get_modelmeta().custom_metadata_map.get("names", "")
    if not all(label in labels for label in ADULT):  # a different model under the same name
        raise RuntimeError(f"{path} is not the NudeNet model this enricher knows; reinstall 'catalog[local]'")
    return session, f"NudeNet {path.stem}"


def likelihood(score: float) -> str:
    """The contract's scale for the highest adult score (see the module docstring)."""
    for floor, level in SCALE:
        if score >= floor:
            return level
    return "VERY_UNLIKELY"


def class_scores(image) -> dict[str, float]:
    """The highest confidence the model gives each body-part class anywhere in the image."""
    import numpy as np
    from PIL import Image

    session, _ = load()
    side = max(image.size)
    square = Image.new("RGB", (side, side))  # pad right/bottom, as NudeNet itself does
    square.paste(image, (0, 0))
    square = square.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    blob = (np.asarray(square, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
    out = session.run(None, {session.get_inputs()[0].name: blob})[0][0]  # (4 + classes, anchors)
    best = out[4:].max(axis=1)
    return {label: round(float(s), 4) for label, s in zip(LABELS, best)}


def enrich(image, facts: dict[str, Any]) -> Enrichment:
    """`safe_adult` on the contract's scale from the highest adult-class score."""
    _, model = load()
    scores = class_scores(image)
    adult = max(scores[label] for label in ADULT)
    return Enrichment(
        "safety", distribution("nudenet"), model,
        safe_adult=likelihood(adult),
        raw={"adult_score": adult, "scores": {k: v for k, v in scores.items() if v >= 0.1}},
    )
