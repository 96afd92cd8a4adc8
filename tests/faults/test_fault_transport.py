"""Transport faults: hostile bodies, quotas and outages through the real ImgTags analyzer."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from audit import answers_lost, crashes, key_places, paid_twice, run_cli
from fake_clock import FakeClock
from imgtags_server import CONTENT_MODES, refused_base_url, serve_imgtags

from catalog.analyzers import UploadImage
from catalog.analyzers.imgtags import ImgTagsAnalyzer
from catalog.errors import AnalysisFailed, Interrupted, StageStopped
from catalog.pacing import RateLimiter

KEY = "sk-fault-7d1e0c4b9a8f2e61"
FAST = dict(requests_per_minute=6000, window_seconds=60.0, backoff_base=0.01, timeout=2.0, max_retries=2)


def photos(n: int) -> list[UploadImage]:
    return [UploadImage(b"\xff\xd8\xff\xe0 photo %d " % i + bytes(200), "image/jpeg", f"p{i}.jpg") for i in range(n)]


def run(server_or_url, images, *, threads: int = 1, **settings):
    """Send every image through one shared analyzer; outcomes, failures and timings as measured."""
    base_url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    outcomes: Counter = Counter()
    failures: list[AnalysisFailed] = []
    messages: list[str] = []
    crashes = 0

    def one(image):
        nonlocal crashes
        try:
            analyzer.analyze(image)
            outcomes["analysed"] += 1
        except AnalysisFailed as exc:
            failures.append(exc)
            outcomes["spent" if exc.spends_attempt else "free"] += 1
            messages.append(str(exc))
        except StageStopped as exc:
            outcomes[type(exc).__name__] += 1
            messages.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - what the case counts as a crash
            crashes += 1
            messages.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    with ImgTagsAnalyzer(KEY, base_url=base_url, **{**FAST, **settings}) as analyzer:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, images))
        stats = analyzer.stats.snapshot()
    crashes += sum(1 for m in messages if "\n" in m or "Traceback" in m)
    return outcomes, messages, crashes, stats, time.monotonic() - start


def resent_2xx(server) -> int:
    """Extra 2xx answers for an image already answered 2xx once: each would be a second charge."""
    seen = Counter(r.fields["image"]["sha256"] for r in server.requests if r.fields and r.status and r.status < 300)
    return sum(n - 1 for n in seen.values() if n > 1)


@pytest.fixture
def server():
    with serve_imgtags(key=KEY) as srv:
        yield srv


# --- bodies: capped, bounded in time, never re-sent --------------------------------------------

@pytest.mark.parametrize("mode", ["huge-body", "endless-body"])
def test_an_answer_over_the_cap_is_a_recorded_failure(server, figures, mode):
    """A 50 MB or endless 200 answer: refused at the 2 MB cap, one failure per photo, never re-sent."""
    server.mode = mode
    outcomes, messages, crashes, stats, seconds = run(server, photos(3))
    figures.crashes, figures.paid_twice = crashes, resent_2xx(server)
    figures.key_found = key_places(KEY, texts=messages)
    figures.note = (f"{stats['bytes_read']:,} bytes read for 3 photos in {seconds:.2f} s; "
                    f"{len(server.requests)} requests")
    assert outcomes == {"spent": 3} and len(server.requests) == 3
    assert stats["bytes_read"] <= 3 * (2_000_000 + 65_536)
    assert all("2,000,000-byte cap" in m for m in messages)
    assert crashes == 0 and figures.paid_twice == 0


def test_a_trickling_answer_ends_at_the_deadline(server, figures):
    """One byte every 0.2 s with timeout_seconds = 1: the request ends after about 1 s, not minutes."""
    server.mode, server.trickle_interval = "trickle", 0.2
    outcomes, messages, crashes, stats, seconds = run(server, photos(1), timeout=1.0)
    figures.crashes, figures.paid_twice = crashes, resent_2xx(server)
    figures.note = f"gave up after {seconds:.2f} s with {stats['bytes_read']} bytes of a 420-byte answer"
    assert outcomes == {"spent": 1} and seconds < 1.0 + 1.0
    assert "did not arrive within 1 s" in messages[0]


def test_a_body_shorter_than_promised_is_not_bought_twice(server, figures):
    """Content-Length 100 bytes more than sent, then the connection closes: one request per photo."""
    server.mode = "short-body"
    outcomes, messages, crashes, stats, seconds = run(server, photos(3))
    figures.crashes, figures.paid_twice = crashes, resent_2xx(server)
    figures.note = f"{len(server.requests)} requests for 3 photos, {stats['retries']} re-sends"
    assert outcomes == {"spent": 3} and len(server.requests) == 3


@pytest.mark.parametrize("mode", ["malformed-json", "deep-nesting"])
def test_an_unreadable_200_is_one_failure_not_a_resend(server, figures, mode):
    """A 200 cut mid-JSON, or nested past Python's recursion limit: recorded, never re-sent."""
    server.mode = mode
    outcomes, messages, crashes, stats, seconds = run(server, photos(3))
    figures.crashes = crashes
    figures.paid_twice = max(paid_twice(server), resent_2xx(server))
    figures.note = f"{len(server.requests)} requests for 3 photos; each failure spends 1 of max_attempts"
    assert outcomes == {"spent": 3} and len(server.requests) == 3 and crashes == 0


@pytest.mark.parametrize("mode", sorted(CONTENT_MODES))
def test_a_hostile_but_complete_analysis_is_handed_over_once(server, figures, mode, caplog):
    """Surrogates, escapes, markup, huge numbers and fields, echoed keys: one request, one answer each."""
    caplog.set_level(logging.DEBUG)
    server.mode = mode
    outcomes, messages, crashes, stats, seconds = run(server, photos(2))
    figures.crashes, figures.paid_twice = crashes, paid_twice(server)
    figures.key_found = key_places(KEY, texts=[*messages, caplog.text])
    figures.note = f"{dict(outcomes)} from {len(server.requests)} requests, {stats['bytes_read']:,} bytes"
    assert len(server.requests) == 2 and crashes == 0 and figures.paid_twice == 0
    expected = {"spent": 2} if mode == "deep-nesting" else {"analysed": 2}
    assert outcomes == expected, messages


# --- quotas: wait within the horizon, stop beyond it ------------------------------------------

@pytest.mark.parametrize(("mode", "reset_in"), [("quota-daily", 0), ("reset-epoch", 6 * 3600),
                                                ("retry-after-huge", 0), ("retry-after-date", 3600)])
def test_a_quota_beyond_the_horizon_stops_at_once(server, figures, mode, reset_in):
    """A reset hours or days away: one line, no photo failed, no sleep, no further requests."""
    server.mode, server.reset_in = mode, reset_in
    clock = FakeClock()
    limiter = RateLimiter(6000, 60.0, clock=clock, sleep=clock.sleep)
    outcomes, messages, crashes, stats, seconds = run(server, photos(8), threads=4, limiter=limiter,
                                                      sleep=clock.sleep)
    figures.crashes = crashes
    figures.note = f"stopped in {seconds:.2f} s after {len(server.requests)} request(s): {messages[0]}"
    assert outcomes == {"QuotaExhausted": 8}
    assert len(server.requests) <= 4 and clock.now - 1000.0 < 1  # the limiter's spacing, no wait
    assert messages[0].startswith("ImgTags quota exhausted ") and messages[0].endswith(
        "; analysis resumes on a later run")


@pytest.mark.parametrize("mode", ["reset-epoch", "retry-after-date"])
def test_a_reset_within_the_horizon_is_waited_out(server, figures, mode):
    """A numeric epoch reset or an HTTP date 10 minutes away: waited (on a fake clock), then answered."""
    server.fail_next.append(mode)
    server.reset_in = 600
    clock = FakeClock()
    limiter = RateLimiter(6000, 60.0, clock=clock, sleep=clock.sleep)
    outcomes, messages, crashes, stats, seconds = run(server, photos(2), limiter=limiter, sleep=clock.sleep)
    figures.crashes, figures.paid_twice = crashes, paid_twice(server)
    figures.note = f"waited {clock.now - 1000:.0f} s of fake time, {seconds:.2f} s of real time"
    assert outcomes == {"analysed": 2} and 598 <= clock.now - 1000 <= 615


@pytest.mark.parametrize("mode", ["retry-after-nan", "retry-after-negative", "retry-after-inf"])
def test_a_nonsense_retry_after_falls_back_to_backoff(server, figures, mode):
    """Retry-After NaN, -1 or inf: ignored, bounded back-off, then a failure that spends no attempt."""
    server.mode = mode
    clock = FakeClock()
    limiter = RateLimiter(6000, 60.0, clock=clock, sleep=clock.sleep)
    outcomes, messages, crashes, stats, seconds = run(server, photos(1), limiter=limiter, sleep=clock.sleep,
                                                      backoff_base=1.0, max_rate_limit_retries=5)
    figures.crashes = crashes
    figures.note = f"{len(server.requests)} requests, {clock.now - 1000:.0f} s of fake back-off, then given up"
    assert outcomes == {"free": 1} and len(server.requests) == 6
    assert clock.now - 1000 < 6 * 60 + 5


# --- outages: the breaker stops the stage, nothing spends an attempt ---------------------------

@pytest.mark.parametrize("mode", ["500", "503-html", "close", "hang", "refused"])
def test_an_outage_opens_the_breaker(server, figures, mode):
    """Every request fails on the service's side: 5 photos fail free, then every other stops at once."""
    server.hang_seconds = 5.0
    target = refused_base_url() if mode == "refused" else server
    server.mode = None if mode == "refused" else mode
    outcomes, messages, crashes, stats, seconds = run(target, photos(40), threads=4, timeout=0.3, max_retries=1)
    figures.crashes = crashes
    figures.note = (f"{stats['requests']} requests for 40 photos before the breaker opened, "
                    f"{seconds:.2f} s; {outcomes['free']} photos failed free")
    assert outcomes["ServiceDown"] >= 40 - 8 and outcomes["spent"] == 0 and crashes == 0
    assert stats["requests"] <= 2 * (5 + 3)
    down = next(m for m in messages if " times in a row " in m)
    assert down.endswith("; analysis stops for this run")


def test_an_error_that_echoes_the_key_never_repeats_it(server, figures, caplog):
    """A 500 whose message quotes the caller's key: the key is in no message and no log line."""
    caplog.set_level(logging.DEBUG)
    server.mode = "echo-key-500"
    outcomes, messages, crashes, stats, seconds = run(server, photos(2), max_retries=1)
    figures.crashes = crashes
    figures.key_found = key_places(KEY, texts=[*messages, caplog.text])
    figures.note = f"{len(messages)} messages and {len(caplog.records)} log records checked"
    assert outcomes == {"free": 2} and figures.key_found == 0
    assert all("[redacted]" in m for m in messages)


def test_a_stop_ends_every_wait_at_once(server, figures):
    """Four threads waiting out a 10-minute 429 when SIGTERM's handler calls stop(): all end within a second."""
    server.mode, server.reset_in = "reset-epoch", 600
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **FAST) as analyzer:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(analyzer.analyze, image) for image in photos(4)]
            time.sleep(0.5)
            start = time.monotonic()
            analyzer.stop(Interrupted("interrupted by SIGTERM"))
            outcomes = Counter(type(f.exception(timeout=10)).__name__ for f in futures)
            seconds = time.monotonic() - start
    figures.note = f"{sum(outcomes.values())} waiting threads ended {seconds:.2f} s after stop(); " \
                   f"{len(server.requests)} request(s) sent"
    assert outcomes == {"Interrupted": 4} and seconds < 1.0 and len(server.requests) <= 4


# --- the real `catalog analyze` over a scanned copy of a few photos ----------------------------

PHOTOS = ["landscape_1.jpg", "landscape_2.jpg", "landscape_3.jpg", "landscape_4.jpg", "landscape_5.jpg",
          "landscape_6.jpg", "landscape_7.jpg", "landscape_8.jpg", "BlueSquare.jpg", "DSCN0010.jpg",
          "el_torcal_rocks.jpg", "prairie_falcon.jpg"]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, shared_photos):
    """Twelve real photos, copied and scanned once; each case analyses its own copy of the database."""
    root = tmp_path_factory.mktemp("scanned")
    (root / "lib").mkdir()
    for name in PHOTOS:
        shutil.copy(shared_photos / "real" / name, root / "lib" / name)
    result = run_cli("scan", root / "lib", env={"CATALOG_DB": str(root / "template.db"), "CATALOG_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    return root / "template.db"


@pytest.fixture
def cli(scanned, tmp_path):
    """(run `catalog analyze` against this server with these [analysis] settings, database path)."""
    db_path = tmp_path / "c.db"
    shutil.copy(scanned, db_path)

    def analyze(base_url: str, **analysis):
        settings = {"requests_per_minute": 6000, "max_retries": 1, "timeout_seconds": 2.0, "concurrency": 2,
                    **analysis}
        config = tmp_path / "config.toml"
        # Each photo is one request here: landscape_2..8 are copies of landscape_1 (catalog.reuse).
        config.write_text("[analysis]\nreuse_for_copies = false\n"
                          + "".join(f"{k} = {v!r}\n" for k, v in settings.items()))
        env = {"CATALOG_DB": str(db_path), "CATALOG_CONFIG": str(config), "IMGTAGS_API_KEY": KEY,
               "IMGTAGS_BASE_URL": base_url, "CI": "true"}
        start = time.monotonic()
        result = run_cli("analyze", env=env, timeout=120)
        return result, time.monotonic() - start
    return analyze, db_path


def column(db_path, sql: str) -> list:
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute(sql)]


def test_cli_every_content_mode_in_one_night(server, cli, figures):
    """`catalog analyze` with a different hostile (but charged) answer for each photo, then a rerun."""
    analyze, db_path = cli
    server.fail_next.extend(sorted(CONTENT_MODES))
    first, seconds = analyze(server.base_url)
    again, _ = analyze(server.base_url)
    figures.crashes = crashes(first) + crashes(again)
    figures.answers_lost, figures.paid_twice = answers_lost(server, db_path), paid_twice(server)
    figures.key_found = key_places(KEY, texts=[first.stdout, first.stderr, again.stdout, again.stderr],
                                   files=[db_path])
    done = len(column(db_path, "SELECT id FROM photos WHERE analysis_status = 'done'"))
    figures.note = f"{len(CONTENT_MODES)} modes over 12 photos: {done} done after the rerun; first run {seconds:.1f} s"
    assert figures.crashes == 0, first.stderr + again.stderr
    assert (figures.answers_lost, figures.paid_twice, figures.key_found) == (0, 0, 0)
    assert done == 12 and resent_2xx(server) <= 1  # only the unparseable deep-nesting answer is asked again


def test_cli_daily_quota_stops_the_stage_and_the_next_run_resumes(server, cli, figures):
    """A daily-quota 429: one line, nothing marked failed, no attempt spent; the next night buys the rest."""
    analyze, db_path = cli
    server.mode = "quota-daily"
    first, seconds = analyze(server.base_url)
    sent = len(server.requests)
    lines = [line for line in first.stderr.splitlines() if "quota exhausted" in line]
    failed = column(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'failed' OR attempts > 0")[0]
    server.mode = None
    again, _ = analyze(server.base_url)
    figures.crashes = crashes(first) + crashes(again)
    figures.answers_lost, figures.paid_twice = answers_lost(server, db_path), paid_twice(server)
    figures.key_found = key_places(KEY, texts=[first.stdout, first.stderr, again.stderr], files=[db_path])
    figures.note = f"stopped in {seconds:.1f} s after {sent} request(s), {failed} photos touched; {lines[:1]}"
    assert first.returncode == 0 and len(lines) == 1 and "(daily limit); analysis resumes on a later run" in lines[0]
    assert sent <= 2 and failed == 0
    assert again.returncode == 0 and column(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'") == [12]


@pytest.mark.parametrize("mode", ["503-html", "refused"])
def test_cli_outage_opens_the_breaker_and_spends_no_attempt(server, cli, figures, mode):
    """An outage: after 3 failed requests in a row the stage stops with one line; no attempt spent."""
    analyze, db_path = cli
    server.mode = mode if mode != "refused" else None
    first, seconds = analyze(refused_base_url() if mode == "refused" else server.base_url, breaker_failures=3)
    spent = column(db_path, "SELECT COALESCE(SUM(attempts), 0) FROM photos")[0]
    lines = [line for line in first.stderr.splitlines() if "times in a row" in line]
    figures.crashes = crashes(first)
    figures.key_found = key_places(KEY, texts=[first.stdout, first.stderr], files=[db_path])
    requests = re.search(r"([\d,]+) requests", first.stdout)
    figures.note = (f"stopped in {seconds:.1f} s after {requests.group(1) if requests else '?'} requests "
                    f"for 12 photos; attempts spent: {spent}")
    assert figures.crashes == 0 and spent == 0 and len(lines) == 1, first.stderr
    assert lines[0].endswith("; analysis stops for this run")
    if mode != "refused":
        assert len(server.requests) <= 2 * (3 + 2)


def test_cli_broken_bodies_fail_their_photos_only(server, cli, figures):
    """A 50 MB, an endless, a trickling and a short body among 12 photos: 4 failures, 8 answers, in seconds."""
    analyze, db_path = cli
    server.trickle_interval = 0.2
    server.fail_next.extend(["huge-body", "endless-body", "trickle", "short-body"])
    first, seconds = analyze(server.base_url, timeout_seconds=1.0)
    errors = column(db_path, "SELECT analysis_error FROM photos WHERE analysis_status = 'failed'")
    figures.crashes = crashes(first)
    figures.answers_lost, figures.paid_twice = answers_lost(server, db_path), max(paid_twice(server), resent_2xx(server))
    figures.note = f"{len(errors)} failed, run took {seconds:.1f} s; {len(server.requests)} requests for 12 photos"
    assert figures.crashes == 0 and figures.paid_twice == 0 and len(errors) == 4, first.stderr
    assert len(server.requests) == 12 and seconds < 30
    assert column(db_path, "SELECT SUM(attempts) FROM photos WHERE analysis_status = 'failed'") == [4]
