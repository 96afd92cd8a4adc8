"""Text from servers and file names reaches the terminal escaped, and JSON stays valid JSON."""

from __future__ import annotations

import json
import logging
import re

import pytest

from catalog.terminal import EscapingFormatter, dumps_json, escape

HOSTILE = {
    "\x1b]0;owned\x07": "\\x1b]0;owned\\x07",  # set the window title
    "\x1b[2J\x1b[H": "\\x1b[2J\\x1b[H",  # clear the screen
    "\x1b]52;c;ZWNobyBvd25lZA==\x07": "\\x1b]52;c;ZWNobyBvd25lZA==\\x07",  # write the clipboard (OSC 52)
    "\x9b31m\x9d0;x\x9c": "\\x9b31m\\x9d0;x\\x9c",  # the same with C1 controls
    "evil\u202egpj.exe": "evil\\u202egpj.exe",  # right-to-left override
    "a\u2066b\u2069\u200f\u061c": "a\\u2066b\\u2069\\u200f\\u061c",  # isolates, marks
    "line\nforged: ok\r\tx\x7f\x00": "line\\nforged: ok\\r\\tx\\x7f\\x00",
    "lone \udcff surrogate": "lone \\udcff surrogate",
    "\u2028\u2029": "\\u2028\\u2029",
}
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.mark.parametrize("raw, shown", HOSTILE.items())
def test_controls_are_escaped_visibly(raw, shown):
    assert escape(raw) == shown
    assert not RAW_CONTROL.search(escape(raw)) and "\n" not in escape(raw)


def test_ordinary_text_is_left_alone():
    for text in ("Café au lait", "東京タワー", "👨‍👩‍👧 family", "C:\\photos\\x.jpg", "a\\x1b literal", "עברית"):
        assert escape(text) == text
    assert escape(42) == "42" and escape(None) == "None"
    assert escape("one\ntwo\x1b", multiline=True) == "one\ntwo\\x1b"


def test_json_stays_valid_and_carries_no_raw_controls():
    data = {"tags": list(HOSTILE), "name\u202e": "ok", "n": 1}
    text = dumps_json(data)
    assert json.loads(text) == data  # the very same strings come back
    assert not RAW_CONTROL.search(text)
    assert "Café" in dumps_json({"t": "Café"})  # still readable: non-ASCII is kept


def test_log_lines_and_tracebacks_are_escaped():
    formatter = EscapingFormatter("catalog: %(levelname)s: %(message)s")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "cannot read %s", ("/p/\x1b]0;t\x07.jpg",), None)
    assert formatter.format(record) == "catalog: WARNING: cannot read /p/\\x1b]0;t\\x07.jpg"
    try:
        raise ValueError("server said \x1b[2J\nand more")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = formatter.format(record)
    assert "Traceback" in lines and "\\x1b[2J" in lines and not RAW_CONTROL.search(lines)
