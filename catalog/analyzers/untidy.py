"""Reading a chat model's answer as an ImgTags `data` object: untidy JSON found, fields tidied."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from typing import Any

from catalog.analyzers import Analysis
from catalog.analyzers.imgtags import parse_answer
from catalog.shape import shape_of

MAX_TAGS = 30  # a small model in a loop can name hundreds; more than this is noise
MAX_TAG_CHARS = 48  # longer is a sentence, not a tag
MAX_SCAN_CHARS = 100_000  # of an answer searched for JSON
MAX_CANDIDATES = 200  # "{" positions tried inside prose
FIELDS = ("tags", "description", "objects", "colors", "scene", "mood", "safe_search", "dimensions")
_THINKING = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|$)", re.S | re.I)  # reasoning models' drafts
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
_DECODER = json.JSONDecoder()


def _looks_like_analysis(value: Any) -> dict | None:
    """The object itself, or the `data` it wraps (a model copying the whole ImgTags answer)."""
    if isinstance(value, dict) and isinstance(value.get("data"), dict) and not any(k in value for k in FIELDS):
        value = value["data"]
    return value if isinstance(value, dict) and any(k in value for k in FIELDS) else None


def find_json(text: str) -> dict | None:
    """The analysis in an answer: plain JSON, JSON in a ``` fence, or the first object inside
    prose that parses and has at least one field of the contract; None when there is none.
    A reasoning model's <think> block is skipped: its drafts are not its answer."""
    text = _THINKING.sub("", text[:MAX_SCAN_CHARS]).strip()
    for candidate in (text, *(m.group(1).strip() for m in _FENCE.finditer(text))):
        try:
            found = _looks_like_analysis(json.loads(candidate))
        except (ValueError, RecursionError):
            continue
        if found is not None:
            return found
    start, tried = text.find("{"), 0
    while start != -1 and tried < MAX_CANDIDATES:
        try:
            found = _looks_like_analysis(_DECODER.raw_decode(text, start)[0])
        except (ValueError, RecursionError):
            found = None
        if found is not None:
            return found
        start, tried = text.find("{", start + 1), tried + 1
    return None


def _list(value: Any) -> list:
    """A list as it is; "sunset, beach" as the list a small model meant."""
    if isinstance(value, str):
        return re.split(r"[,;\n]", value)
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _hex(value: Any) -> str:
    match = _HEX.fullmatch(value.strip()) if isinstance(value, str) else None
    return f"#{match.group(1).upper()}" if match else ""


def _level(value: Any) -> str:
    """ "very unlikely", "Very-Unlikely" and "VERY_UNLIKELY" are the same likelihood."""
    return re.sub(r"[\s-]+", "_", value.strip()).upper() if isinstance(value, str) else ""


def tidy_words(words: tuple[str, ...]) -> tuple[str, ...]:
    """Trimmed, lower-cased, without list bullets or hashes, deduplicated, capped."""
    kept: dict[str, None] = {}
    for word in words:
        word = " ".join(word.strip().strip("#*•-.\"'`").lower().split())
        if word and len(word) <= MAX_TAG_CHARS:
            kept.setdefault(word)
        if len(kept) >= MAX_TAGS:
            break
    return tuple(kept)


def measured_orientation(data: bytes) -> str | None:
    """landscape / portrait / square from the upload's own header (it is upright), if readable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception:  # not our business here: the server saw the same bytes
        return None
    return shape_of(width, height)


def to_analysis(data: dict, *, image: bytes, model: str, tokens: int, elapsed_ms: int, raw: dict) -> Analysis:
    """The model's object read by the one ImgTags parser, after tidying what models get wrong."""
    colors, safe = _dict(data.get("colors")), _dict(data.get("safe_search"))
    shaped = {**data, "tags": _list(data.get("tags")), "objects": _list(data.get("objects")),
              "colors": {"dominant": _hex(colors.get("dominant")),
                         "palette": [h for h in map(_hex, _list(colors.get("palette"))) if h]},
              "safe_search": {k: _level(safe.get(k)) for k in ("adult", "violence")}}
    parsed = parse_answer({"success": True, "data": shaped})
    return dataclasses.replace(
        parsed, tags=tidy_words(parsed.tags), objects=tidy_words(parsed.objects),
        scene=parsed.scene.lower(), mood=parsed.mood.lower(),
        orientation=measured_orientation(image) or parsed.orientation.lower(),
        provider="openai", model=model, tokens_used=tokens, processing_time_ms=elapsed_ms, raw=raw)
