"""Make any analyzer's answer storable: clean text, bounded sizes and numbers, no secrets.

A paid answer is never thrown away because of what it contains. Every string loses
lone surrogates, NUL and other control characters (SQLite and terminals choke on
them), every number fits a 64-bit integer or becomes null, lists and strings are
capped, nesting is cut at a fixed depth, and any secret the analyzer holds (an API
key a server echoed back) is replaced by "[redacted]". The same rules serve the
typed fields and the raw answer kept beside them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable

from catalog.analyzers import LIKELIHOODS, Analysis

INT64_MAX = 2**63 - 1
REDACTED = "[redacted]"
REPLACEMENT = "\ufffd"
# C0 controls but tab and newline, DEL, C1 controls, lone surrogates, noncharacters at BMP end.
_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

MAX_TAGS = 200  # tags and objects kept per answer
MAX_TAG_CHARS = 100
MAX_TEXT_CHARS = 10_000  # description
MAX_WORD_CHARS = 100  # scene, mood, model, colours, provider
MAX_RAW_DEPTH = 32  # the raw answer is kept to this depth; deeper parts become "…"
MAX_RAW_ITEMS = 1_000  # items kept per list or object in the raw answer
MAX_RAW_CHARS = 20_000  # characters kept per string in the raw answer


def clean_text(value: Any, limit: int, secrets: Iterable[str] = ()) -> str:
    """Any value as storable text of at most `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    for secret in secrets:
        if secret and secret.casefold() in text.casefold():  # an echo may change its letter case
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    text = _UNSTORABLE.sub(REPLACEMENT, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_int(value: Any) -> int:
    """A whole number inside [0, 2**63-1]; anything else (NaN, text, -5) is 0, huge is clamped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return INT64_MAX if value > 0 else 0
    return int(min(max(value, 0), INT64_MAX))


def clean_json(value: Any, secrets: Iterable[str] = (), depth: int = 0) -> Any:
    """A copy of a parsed JSON value that SQLite, json.dumps and any reader can take."""
    secrets = tuple(secrets)
    if depth >= MAX_RAW_DEPTH:
        return "…"
    if isinstance(value, str):
        return clean_text(value, MAX_RAW_CHARS, secrets)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -INT64_MAX - 1 <= value <= INT64_MAX else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        items = list(value.items())[:MAX_RAW_ITEMS]
        return {clean_text(k, MAX_WORD_CHARS, secrets): clean_json(v, secrets, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [clean_json(v, secrets, depth + 1) for v in list(value)[:MAX_RAW_ITEMS]]
    return clean_text(value, MAX_RAW_CHARS, secrets)


def _words(values: Iterable[Any], secrets: tuple[str, ...]) -> tuple[str, ...]:
    kept: dict[str, None] = {}
    for value in values:
        word = clean_text(value, MAX_TAG_CHARS, secrets).strip()
        if word:
            kept.setdefault(word)
        if len(kept) >= MAX_TAGS:
            break
    return tuple(kept)


def storable(analysis: Analysis, secrets: Iterable[str] = ()) -> Analysis:
    """The same analysis with every field made storable (see the module docstring)."""
    secrets = tuple(s for s in secrets if s)

    def word(value: Any, default: str) -> str:
        return clean_text(value, MAX_WORD_CHARS, secrets).strip() or default

    return dataclasses.replace(
        analysis,
        tags=_words(analysis.tags, secrets),
        description=clean_text(analysis.description, MAX_TEXT_CHARS, secrets).strip(),
        objects=_words(analysis.objects, secrets),
        dominant_color=word(analysis.dominant_color, "unknown"),
        palette=_words(analysis.palette, secrets)[:32],
        scene=word(analysis.scene, "unknown"),
        mood=word(analysis.mood, "unknown"),
        safe_adult=analysis.safe_adult if analysis.safe_adult in LIKELIHOODS else "UNKNOWN",
        safe_violence=analysis.safe_violence if analysis.safe_violence in LIKELIHOODS else "UNKNOWN",
        orientation=word(analysis.orientation, "unknown"),
        provider=word(analysis.provider, ""),
        model=word(analysis.model, ""),
        tokens_used=clean_int(analysis.tokens_used),
        processing_time_ms=clean_int(analysis.processing_time_ms),
        raw=clean_json(analysis.raw, secrets) if analysis.raw is not None else None,
    )
