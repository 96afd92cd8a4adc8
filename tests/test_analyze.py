"""The analysis stage end to end: offline by default, ImgTags over a real loopback server otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from imgtags_server import FAIL_422, FAIL_500, FAIL_MALFORMED, serve_imgtags
from PIL import Image

from catalog.analyze import analyze, make_analyzer
from catalog.analyzers.imgtags import ImgTagsAnalyzer
from catalog.config import AnalysisSettings, Config
from catalog.db import open_db
from catalog.errors import AuthenticationFailed
from catalog.scan import scan

FAST_HTTP = dict(requests_per_minute=6000, window_seconds=60.0, backoff_base=0.01, timeout=5.0, max_retries=2)


def settings(**analysis) -> Config:
    return Config(analysis=AnalysisSettings(**{"requests_per_minute": 6000, "enrichers": (), **analysis}))


@pytest.fixture
def real_library(photos):
    """Only the real photos (34 unique + 1 duplicate)."""
    return photos / "real"


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "catalog.db")
    yield database
    database.close()


def photo_of(db, path: Path) -> dict:
    return db["photos"].get(db["files"].get(str(path))["photo_id"])


def test_offline_is_the_default_and_analyses_each_photo_once(real_library, db):
    assert make_analyzer(Config()).name == "offline"
    scan(db, Config(), [real_library], progress=False)
    summary = analyze(db, settings(), progress=False)
    assert (summary.analyzer, summary.pending, summary.analysed, summary.failed) == ("offline", 34, 34, 0)
    assert summary.requests == 0 and summary.tokens_used == 0
    statuses = {r[0]: r[1] for r in db.execute("SELECT analysis_status, COUNT(*) FROM photos GROUP BY 1")}
    assert statuses == {"done": 34}
    again = analyze(db, settings(), progress=False)
    assert again.pending == 0 and again.analysed == 0
    # The duplicate shares the one analysis.
    assert photo_of(db, real_library / "el_torcal_rocks.jpg")["id"] == photo_of(db, real_library / "dup/el_torcal_rocks.jpeg")["id"]
    run = list(db.query("SELECT * FROM runs WHERE command = 'analyze' ORDER BY id LIMIT 1"))[0]
    assert run["status"] == "ok" and json.loads(run["counts"])["analysed"] == 34


def test_offline_signals_are_real(real_library, db, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.new("RGB", (300, 200), (200, 20, 25)).save(extra / "red.jpg")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    exif.get_ifd(0x8769)[0x9003] = "2022:07:15 07:30:00"
    exif.get_ifd(0x8825).update({1: "S", 2: (33.0, 52.0, 0.0), 3: "E", 4: (151.0, 12.0, 0.0)})  # Sydney
    Image.new("RGB", (100, 100), (240, 240, 240)).save(extra / "sydney.jpg", exif=exif)
    scan(db, Config(), [real_library, extra], progress=False)
    analyze(db, settings(), progress=False)

    red = photo_of(db, extra / "red.jpg")
    assert "red" in json.loads(red["tags"]) and red["dominant_color"].startswith("#c")
    assert red["shape"] == "landscape" and red["scene"] == "unknown" and json.loads(red["objects"]) == []
    sydney = json.loads(photo_of(db, extra / "sydney.jpg")["tags"])
    assert {"canon", "2022", "july", "winter", "morning", "square", "white"} <= set(sydney)  # southern July
    nikon = json.loads(photo_of(db, real_library / "DSCN0010.jpg")["tags"])
    assert {"nikon", "coolpix p6000", "2008", "october", "autumn", "afternoon"} <= set(nikon)
    # Stored sideways (450x600, EXIF orientation 6): upright it is a landscape picture.
    assert photo_of(db, real_library / "landscape_6.jpg")["shape"] == "landscape"
    description = photo_of(db, real_library / "DSCN0010.jpg")["description"]
    assert "NIKON COOLPIX P6000" in description or "COOLPIX P6000" in description


@pytest.fixture
def server():
    with serve_imgtags(key="test-key-123") as srv:
        yield srv


def imgtags(server, key="test-key-123", **http):
    return ImgTagsAnalyzer(api_key=key, base_url=server.base_url, **{**FAST_HTTP, **http})


def test_api_key_selects_imgtags_and_each_unique_photo_is_sent_once(real_library, db, server, monkeypatch):
    monkeypatch.setenv("IMGTAGS_API_KEY", "test-key-123")
    monkeypatch.setenv("IMGTAGS_BASE_URL", server.base_url)
    scan(db, Config(), [real_library], progress=False)
    summary = analyze(db, settings(concurrency=4), progress=False)
    # landscape_2..8 are landscape_1 turned by their EXIF orientation (another digit drawn on):
    # copies, which take the answer bought for one of them (catalog.reuse).
    copies = db.execute("SELECT COUNT(*) FROM analyses WHERE copied_from IS NOT NULL").fetchone()[0]
    assert (summary.analyzer, summary.analysed + summary.reused, summary.failed) == ("imgtags", 34, 0)
    assert summary.reused == copies and 0 < copies <= 7
    sent = server.requests.snapshot()
    assert len(sent) == summary.requests == summary.analysed
    assert len({r.fields["image"]["sha256"] for r in sent}) == summary.analysed  # distinct uploads
    for r in sent:
        assert r.headers["authorization"] == "Bearer test-key-123"
        assert r.fields["image"]["content_type"] in ("image/jpeg", "image/png", "image/gif", "image/webp")
        assert r.fields["image"]["size"] <= 10_000_000
    done = db.execute("SELECT COUNT(*), SUM(tokens_used) FROM photos WHERE provider = 'imgtags' "
                      "AND analysis_status = 'done'").fetchone()
    assert done[0] == 34 and done[1] == summary.tokens_used > 0
    stored = photo_of(db, real_library / "jolla.jpg")
    assert json.loads(stored["raw_response"])["success"] is True and json.loads(stored["tags"])
    # Nothing more to pay for on a rerun.
    assert analyze(db, settings(), progress=False).pending == 0 and len(server.requests) == summary.analysed
    # The key is nowhere in the database.
    assert b"test-key-123" not in Path(db.conn.execute("PRAGMA database_list").fetchone()[2]).read_bytes()


def test_refused_key_stops_the_run_and_marks_nothing_failed(real_library, db, server):
    scan(db, Config(), [real_library], progress=False)
    with pytest.raises(AuthenticationFailed) as exc:
        analyze(db, settings(), analyzer=imgtags(server, key="wrong-key-456"), progress=False)
    assert "wrong-key-456" not in str(exc.value)
    assert len(server.requests) <= 8  # stopped at once: only what was already in flight
    assert db.execute("SELECT COUNT(*) FROM photos WHERE analysis_status IS NOT NULL").fetchone()[0] == 0


def test_422_is_a_permanent_failure_never_retried(real_library, db, server):
    scan(db, Config(), [real_library], progress=False)
    server.fail_next.append(FAIL_422)
    summary = analyze(db, settings(concurrency=1), analyzer=imgtags(server), progress=False)
    assert (summary.analysed + summary.reused, summary.failed) == (33, 1)
    failed = list(db.query("SELECT * FROM photos WHERE analysis_status = 'failed'"))
    assert len(failed) == 1 and failed[0]["analysis_permanent"] == 1 and failed[0]["attempts"] == 1
    assert "422" in failed[0]["analysis_error"]
    before = len(server.requests)
    assert analyze(db, settings(), analyzer=imgtags(server), progress=False).pending == 0
    assert len(server.requests) == before  # never sent again


def test_transient_failures_retried_then_recorded_then_retried_next_run(real_library, db, server):
    scan(db, Config(), [real_library], progress=False)
    server.fail_next.extend([FAIL_500])  # one 500: the transport retries, the photo succeeds
    summary = analyze(db, settings(concurrency=1), analyzer=imgtags(server), progress=False, limit=2)
    assert (summary.analysed, summary.failed, summary.retries) == (2, 0, 1)
    server.fail_next.extend([FAIL_500] * 3)  # max_retries=2: three 500s in a row exhaust it
    summary = analyze(db, settings(concurrency=1, max_attempts=2), analyzer=imgtags(server), progress=False, limit=1)
    assert summary.failed == 1
    [failed] = db.query("SELECT * FROM photos WHERE analysis_status = 'failed'")
    assert failed["analysis_permanent"] == 0 and failed["attempts"] == 0 and "500" in failed["analysis_error"]
    # A server-side failure spends no attempt: later runs keep trying the photo.
    server.fail_next.extend([FAIL_500] * 3)
    summary = analyze(db, settings(concurrency=1, max_attempts=2), analyzer=imgtags(server), progress=False, limit=1)
    assert summary.failed == 1 and db["photos"].get(failed["id"])["attempts"] == 0
    # An unusable 200 is the photo's own failure (never re-sent, it may be charged): it spends one.
    server.fail_next.extend([FAIL_MALFORMED] * 2)
    for attempt in (1, 2):
        requests = len(server.requests)
        summary = analyze(db, settings(concurrency=1, max_attempts=2), analyzer=imgtags(server), progress=False,
                          limit=1)
        assert summary.failed == 1 and len(server.requests) == requests + 1
        assert db["photos"].get(failed["id"])["attempts"] == attempt
    pending_ids = [r["id"] for r in db.query(
        "SELECT id FROM photos WHERE analysis_status IS NULL OR analysis_status != 'done'")]
    summary = analyze(db, settings(max_attempts=2), analyzer=imgtags(server), progress=False)
    assert failed["id"] in pending_ids and summary.pending == len(pending_ids) - 1


def test_budget_stops_cleanly(real_library, db, server):
    scan(db, Config(), [real_library], progress=False)
    summary = analyze(db, settings(max_requests=5, concurrency=2), analyzer=imgtags(server), progress=False)
    assert summary.analysed == 5 and len(server.requests) == 5
    assert "request budget of 5" in summary.stopped and summary.skipped == 29
    budget = summary.tokens_used // 5 * 3  # about three photos' worth
    summary = analyze(db, settings(max_tokens=budget, concurrency=1), analyzer=imgtags(server), progress=False)
    assert "token budget" in summary.stopped and 1 <= summary.analysed < 29
    biggest = db.execute("SELECT MAX(tokens_used) FROM photos").fetchone()[0]
    assert summary.tokens_used <= budget + biggest  # overshoot by at most the photo in flight


def run_cli(*args, env):
    return subprocess.run([sys.executable, "-m", "catalog", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_cli_dry_run_sends_nothing_and_bad_key_exits_2(real_library, tmp_path, server):
    env = {"CATALOG_DB": str(tmp_path / "c.db"), "IMGTAGS_BASE_URL": server.base_url,
           "IMGTAGS_API_KEY": "wrong-key-789"}
    assert run_cli("scan", real_library, env=env).returncode == 0
    dry = run_cli("analyze", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)
    sent = data["would_send"]  # the landscape_N copies take one answer (catalog.reuse)
    assert sent + data["reused"] == 34 and data["reused"] > 0
    assert data["analyzer"] == "imgtags" and data["tokens_estimate"] == sent * 1250
    assert len(server.requests) == 0
    bad = run_cli("-vv", "analyze", env=env)
    assert bad.returncode == 2 and "refused the API key" in bad.stderr
    assert "wrong-key-789" not in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    env["IMGTAGS_API_KEY"] = "test-key-123"
    good = run_cli("-vv", "analyze", "--json", "--limit", "3", env=env)
    assert good.returncode == 0, good.stderr
    done = json.loads(good.stdout)
    assert done["analysed"] + done["reused"] == 3 and "test-key-123" not in good.stderr
    dry = json.loads(run_cli("analyze", "--dry-run", "--json", env=env).stdout)
    assert dry["would_send"] + dry["reused"] == 31 and dry["estimate_from"] == "history"


def test_dead_api_records_failures_and_goes_on(real_library, db):
    scan(db, Config(), [real_library], progress=False)
    dead = ImgTagsAnalyzer(api_key="k", base_url="http://127.0.0.1:9/api/v1", **FAST_HTTP)
    summary = analyze(db, settings(), analyzer=dead, progress=False, limit=3)
    assert summary.failed == 3 and summary.analysed == 0
    errors = [r[0] for r in db.execute("SELECT analysis_error FROM photos WHERE analysis_status = 'failed'")]
    assert all("cannot connect" in e for e in errors)
