"""Copies of one picture in one run (issue 13): each picture is paid for once, whatever the order or a failure."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from audit import answers_lost, crashes, key_places, run_cli
from imgtags_server import FAIL_422, serve_imgtags
from similar_pairs import COPIES, variants

KEY = "sk-live-reuse-not-for-logs"
ORIGINALS = ("DSCN0010.jpg", "jolla.jpg", "el_torcal_rocks.jpg")
KINDS = ("resize50", "resize25", "jpeg60", "png", "webp")


@pytest.fixture
def case(tmp_path, shared_photos):
    """Three pictures, each as its original and five copies, all new in one folder; the real CLI."""
    library = tmp_path / "lib"
    library.mkdir()
    groups = []
    for name in ORIGINALS:
        shutil.copy(shared_photos / "real" / name, library / name)
        made = variants(shared_photos / "real" / name, library, {k: COPIES[k] for k in KINDS})
        groups.append([library / name, *made.values()])
    config = tmp_path / "config.toml"
    config.write_text("[analysis]\nrequests_per_minute = 6000\nmax_retries = 1\ntimeout_seconds = 5\n"
                      "concurrency = 4\nenrichers = []\n")
    with serve_imgtags(key=KEY, latency=0.05) as server:  # answers take a moment: copies meet in flight
        env = {"CATALOG_DB": str(tmp_path / "c.db"), "CATALOG_CONFIG": str(config),
               "IMGTAGS_API_KEY": KEY, "IMGTAGS_BASE_URL": server.base_url, "CI": "true"}
        scanned = run_cli("scan", library, env=env)
        assert scanned.returncode == 0, scanned.stderr
        yield server, env, groups, tmp_path / "c.db"


def pictures_paid_twice(server, db_path: Path, groups: list[list[Path]]) -> int:
    """Extra charges per picture: a picture is its original and its copies, whatever the file."""
    with sqlite3.connect(db_path) as conn:
        photo = dict(conn.execute("SELECT path, photo_id FROM files"))
        paid = {row[0] for row in conn.execute(
            "SELECT photo_id FROM analyses WHERE kind = 'backend' AND copied_from IS NULL AND tokens_used > 0")}
    charges = sum(1 for r in server.requests if r.paid)
    assert charges == len(paid)  # every charge is a stored answer of its own
    return sum(max(0, sum(photo[str(f)] in paid for f in group) - 1) for group in groups)


def test_copies_in_one_run_are_paid_once(case, figures):
    """Eighteen new photos, three pictures, four requests in flight: three requests."""
    server, env, groups, db_path = case
    started = time.monotonic()
    result = run_cli("analyze", "--json", env=env)
    seconds = time.monotonic() - started
    figures.crashes = crashes(result)
    figures.answers_lost = answers_lost(server, db_path)
    figures.paid_twice = pictures_paid_twice(server, db_path, groups)
    figures.key_found = key_places(KEY, texts=[result.stdout, result.stderr], files=[db_path])
    summary = json.loads(result.stdout)
    figures.note = (f"{len(server.requests)} requests for {summary['pending']} photos of {len(groups)} pictures, "
                    f"{summary['reused']} copies reused, in {seconds:.1f} s")
    assert result.returncode == 0, result.stderr
    assert figures.crashes == figures.answers_lost == figures.paid_twice == figures.key_found == 0
    assert len(server.requests) == len(groups) and summary["reused"] == summary["pending"] - len(groups)


def test_copies_waiting_on_a_refused_original_buy_one_answer(case, figures):
    """The first request is refused (422): the copies waiting on it buy one answer between them."""
    server, env, groups, db_path = case
    server.fail_next.append(FAIL_422)
    result = run_cli("analyze", "--json", env=env)
    figures.crashes = crashes(result)
    figures.answers_lost = answers_lost(server, db_path)
    figures.paid_twice = pictures_paid_twice(server, db_path, groups)
    summary = json.loads(result.stdout)
    figures.note = (f"{len(server.requests)} requests ({summary['failed']} refused) for {summary['pending']} photos "
                    f"of {len(groups)} pictures, {summary['reused']} copies reused")
    assert result.returncode == 1 and summary["failed"] == 1, result.stderr  # the refused photo is recorded
    assert figures.crashes == figures.answers_lost == figures.paid_twice == 0
    assert len(server.requests) == len(groups) + 1
    assert summary["analysed"] + summary["reused"] == summary["pending"] - 1
