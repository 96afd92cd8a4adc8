"""Text we print that came from a server or a file name, made harmless to a terminal.

A tag, a description, a file name or a server's error message may hold control
characters: ESC sequences that set the window title, clear the screen or write the
clipboard (OSC 52), C1 controls that some terminals obey like ESC, bidi overrides that
reorder what the reader sees. Every command prints such text through `escape` (or
`dumps_json`), and the CLI's log lines go through `EscapingFormatter`, so they arrive
visibly escaped (`\\x1b`, `\\u202e`) instead of being obeyed. Imports stay light: search
must start fast.
"""

from __future__ import annotations

import json
import logging
import re

# C0 controls, DEL and C1 controls; bidi embeddings, overrides, isolates and marks; the
# Unicode line and paragraph separators; lone surrogates (unprintable in UTF-8).
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
# The same minus the C0 controls, which json.dumps already writes as \u00XX escapes.
UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape(text, *, multiline: bool = False) -> str:
    """`text` (any value, str() applied) with every control character escaped visibly.

    With `multiline`, newlines stay: for text we lay out on several lines ourselves.
    """
    text = text if isinstance(text, str) else str(text)
    if multiline:
        return "\n".join(UNSAFE.sub(_visible, line) for line in text.split("\n"))
    return UNSAFE.sub(_visible, text)


def dumps_json(data) -> str:
    """Readable JSON (non-ASCII kept) that carries no raw C1, DEL or bidi character.

    They only occur inside JSON strings, so writing them as \\uXXXX keeps the document
    valid and decoding it gives back exactly the same text.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class EscapingFormatter(logging.Formatter):
    """Log lines carry file paths and server messages: escape them, tracebacks line by line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return escape(super().formatException(ei), multiline=True)

    def formatStack(self, stack_info: str) -> str:
        return escape(super().formatStack(stack_info), multiline=True)
