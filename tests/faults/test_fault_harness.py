"""The fault suite's own measures: they must see what they claim to count."""

from __future__ import annotations

import sqlite3

from audit import answers_lost, charged, crashes, key_places, paid_twice
from imgtags_server import Canned, serve_imgtags
import httpx


def test_server_marks_only_complete_analyses_as_paid(figures):
    """A 200 analysis counts as charged; errors, non-objects and deep nesting do not."""
    with serve_imgtags(key="k") as server:
        server.fail_next.extend([Canned(200, '{"success": true, "data": {"tags": ["\\ud800"]}}'),
                                 Canned(200, "[" * 5000 + "]" * 5000), Canned(500, {"success": False})])
        for body in (b"one", b"one", b"two", b"three"):
            httpx.post(f"{server.base_url}/analyze", headers={"Authorization": "Bearer k"},
                       files={"image": ("a.jpg", body, "image/jpeg")})
        assert [r.paid for r in server.requests] == [True, False, False, True]
        assert sum(charged(server).values()) == 2 and paid_twice(server) == 0
    figures.note = "4 requests, 2 charged"


def test_lost_answers_and_leaks_are_counted(tmp_path, figures):
    db = tmp_path / "c.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE photos (analysis_status TEXT, provider TEXT, raw_response TEXT)")
        conn.execute("INSERT INTO photos VALUES ('done', 'imgtags', 'echo sk-secret')")
    with serve_imgtags(key="k") as server:
        for body in (b"a", b"b", b"b"):
            httpx.post(f"{server.base_url}/analyze", headers={"Authorization": "Bearer k"},
                       files={"image": ("a.jpg", body, "image/jpeg")})
        assert answers_lost(server, db) == 1 and paid_twice(server) == 1
    assert key_places("sk-secret", texts=["x", "has sk-secret"], files=[db]) == 2

    class Result:
        returncode, stdout, stderr = 1, "", "Traceback (most recent call last):\n"

    assert crashes(Result) == 1
