"""Hostile answers for the loopback ImgTags server: what a broken or malicious service could send.

Content modes turn a normal, complete analysis into a hostile one that is still a charged
analysis (success true, a data object). Quota modes build 429s with odd reset hints. The
server (tests/imgtags_server.py) decides when to send them; everything here is a pure function.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

LONE_SURROGATES = "\ud800 and \udfff"
TERMINAL_ATTACK = ("\x00\x07\x1b[2J\x1b[H\x1b]0;pwned title\x07\x1b]52;c;cm0gLXJmIH4=\x07"
                   "\x1b[31mred\x1b[0m\u202eevil\u202c\u2066iso\u2069")
MARKUP = ("<script>alert(1)</script><img src=x onerror=alert(1)>"
          "[click](javascript:alert(1)) **bold** <a href=\"javascript:alert(2)\">x</a> ")
DEEP = 100_000  # far past Python's json recursion limit (about 1,000)


def _keys_kept(answer: dict, change: Callable[[str], str]) -> dict:
    """Every string value changed; the contract's own keys kept, so the answer still parses."""
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return change(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value
    return walk(answer)


def surrogates(answer: dict, key: str) -> dict:
    """A lone surrogate in every string field, and in a field and a key we ignore."""
    out = _keys_kept(answer, lambda s: s + " \ud800")
    out["data"]["model"] = "imgtags-\udfff"
    out["ignored"] = {"note": LONE_SURROGATES, "\ud800key": ["\udc00"]}
    return out


def control_chars(answer: dict, key: str) -> dict:
    """NUL, BEL, ESC, CSI clear-screen, OSC title and clipboard, bidi overrides in every string."""
    out = _keys_kept(answer, lambda s: s + TERMINAL_ATTACK)
    out["ignored"] = TERMINAL_ATTACK
    return out


def markup(answer: dict, key: str) -> dict:
    """HTML, <script>, javascript: URLs and Markdown in every string."""
    out = _keys_kept(answer, lambda s: MARKUP + s)
    out["data"]["tags"].append("<b onmouseover=alert(3)>tag</b>")
    return out


def huge_numbers(answer: dict, key: str) -> dict:
    answer["meta"].update(tokens_used=1e300, processing_time_ms=2**70)
    answer["ignored"] = [10**400, -1e308]
    return answer


def special_numbers(answer: dict, key: str) -> dict:
    answer["meta"].update(tokens_used=math.inf, processing_time_ms=math.nan)
    answer["ignored"] = [-math.inf]
    return answer


def negative_numbers(answer: dict, key: str) -> dict:
    answer["meta"].update(tokens_used=-5, processing_time_ms=-(2**70))
    return answer


def many_tags(answer: dict, key: str) -> dict:
    answer["data"]["tags"] = [f"tag{i:06d}" for i in range(100_000)]
    return answer


def huge_description(answer: dict, key: str) -> dict:
    answer["data"]["description"] = "A long story. " * 75_000  # about 1 MB
    return answer


def long_tags(answer: dict, key: str) -> dict:
    answer["data"]["tags"] = [chr(ord("a") + i) * 100_000 for i in range(8)]
    answer["data"]["objects"] = ["o" * 50_000]
    return answer


def echo_key(answer: dict, key: str) -> dict:
    """The caller's own key echoed into the description, tags, an ignored nested field and a message."""
    answer["data"]["description"] = f"Analysed for {key}: {answer['data']['description']}"
    answer["data"]["tags"] += [key, f"Bearer {key}"]
    answer["data"]["objects"].append(f"key={key}")
    answer["debug"] = {"request": {"headers": {"authorization": f"Bearer {key}"}, "key": key}}
    answer["message"] = f"processed with key {key}"
    return answer


def deep_nesting(answer: dict, key: str) -> str:
    """A complete analysis plus an ignored field nested DEEP levels: Python's json cannot read it."""
    text = json.dumps(answer)
    return text[:-1] + ', "debug": ' + "[" * DEEP + "]" * DEEP + "}"


CONTENT_MODES: dict[str, Callable[[dict, str], Any]] = {
    "surrogates": surrogates, "control-chars": control_chars, "markup": markup,
    "huge-numbers": huge_numbers, "special-numbers": special_numbers, "negative-numbers": negative_numbers,
    "many-tags": many_tags, "huge-description": huge_description, "long-tags": long_tags,
    "echo-key": echo_key, "deep-nesting": deep_nesting,
}


def iso(wall: float) -> str:
    """ISO-8601 UTC with milliseconds, rounded up so a client waiting until then is never early."""
    wall = math.ceil(wall * 1000) / 1000
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rate_limited(reset: Any, kind: str = "minute", limit: int = 60) -> dict:
    error = {"code": "RATE_LIMIT_EXCEEDED", "message": "Rate limit exceeded. Try again later.",
             "type": kind, "limit": limit}
    if reset is not None:
        error["reset"] = reset
    return {"success": False, "error": error}


def quota_answer(mode: str, reset_in: float) -> tuple[dict, dict[str, str]]:
    """(body, headers) of a 429 for a quota mode; `reset_in` seconds from now where a mode uses it."""
    now = time.time()
    if mode == "quota-daily":
        midnight = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return rate_limited(midnight.isoformat().replace("+00:00", "Z"), "daily", 1000), {}
    if mode == "reset-epoch":
        return rate_limited(math.ceil(now + reset_in)), {}
    retry_after = {"retry-after-nan": "NaN", "retry-after-negative": "-1", "retry-after-inf": "inf",
                   "retry-after-huge": str(10**12),
                   "retry-after-date": email.utils.formatdate(math.ceil(now + reset_in), usegmt=True)}[mode]
    return rate_limited(None), {"Retry-After": retry_after}


QUOTA_MODES = ("quota-daily", "reset-epoch", "retry-after-nan", "retry-after-negative", "retry-after-inf",
               "retry-after-huge", "retry-after-date")
