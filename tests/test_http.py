"""catalog.http against a real loopback server: throttling, 429 waits, bounded retries, no 4xx retries,
deadlines, answer caps, quota stops and the circuit breaker."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fake_clock import FakeClock
from imgtags_server import (FAIL_401, FAIL_403, FAIL_422, FAIL_429, FAIL_500, FAIL_503_HTML, FAIL_CLOSE,
                            FAIL_HANG, FAIL_MALFORMED, Canned, refused_base_url, serve_imgtags)

from catalog.errors import Interrupted, QuotaExhausted, ServiceDown
from catalog.http import HttpStats, UnreadableAnswer, make_client, stats_of
from catalog.pacing import RateLimiter, rate_limit_hint

KEY = "sk-test-9f8e7d6c5b4a3921"
AUTH = {"Authorization": f"Bearer {KEY}"}
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@pytest.fixture
def server():
    with serve_imgtags(key=KEY) as srv:
        yield srv


def fast_client(srv, **settings) -> httpx.Client:
    """No throttling to speak of (1000 per second) and millisecond back-off, unless overridden."""
    options = dict(requests_per_minute=1000, window_seconds=1.0, backoff_base=0.01, timeout=2.0, headers=AUTH,
                   service="ImgTags")
    options.update(settings)
    return make_client(srv.base_url, **options)


def upload(client: httpx.Client, data: bytes = JPEG, name: str = "a.jpg") -> httpx.Response:
    return client.post("analyze", files={"image": (name, data, "image/jpeg")})


def max_in_window(times: list[float], window: float) -> int:
    """The most events any closed window [t, t + window] holds (the strictest reading)."""
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u - t <= window) for i, t in enumerate(times)), default=0)


# --- the limiter's arithmetic --------------------------------------------------------------

def test_limiter_spreads_a_burst_and_never_overfills_a_window():
    clock = FakeClock()
    limiter = RateLimiter(4, 2.0, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(21):
        limiter.acquire()
        times.append(clock.now)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.5 - 1e-9  # spread evenly, not four at once
    assert max_in_window(times, 2.0) <= 4
    assert 20 / (times[-1] - times[0]) >= 0.85 * 4 / 2.0  # and not wasteful


def test_limiter_does_not_delay_after_an_idle_spell_and_honours_a_pause():
    clock = FakeClock()
    limiter = RateLimiter(4, 2.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 10
    start = clock.now
    limiter.acquire()
    assert clock.now == start
    limiter.pause_until(clock.now + 5)
    limiter.acquire()
    assert clock.now == pytest.approx(start + 5)


# --- throttling as the server sees it ------------------------------------------------------

def test_four_threads_never_exceed_the_limit_and_use_most_of_it():
    limit, window, total = 4, 2.0, 9
    with serve_imgtags(key=KEY, rate_limit=limit, rate_window=window) as srv:
        with fast_client(srv, requests_per_minute=limit, window_seconds=window) as client:
            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(lambda i: upload(client, JPEG + bytes([i])).status_code, range(total)))
            stats = stats_of(client)
        arrivals = sorted(r.at for r in srv.requests)
    assert statuses == [200] * total
    assert srv.rate_limited == 0 and stats.rate_limited == 0
    assert len(arrivals) == total
    assert max_in_window(arrivals, window) <= limit
    achieved = (total - 1) / (arrivals[-1] - arrivals[0])
    assert achieved >= 0.85 * limit / window, f"only {achieved:.2f} req/s of {limit / window:.2f}"


def test_429_waits_for_reset_then_resends_the_same_request(server):
    server.rate_limit, server.rate_window = 1, 1.0
    with fast_client(server) as client:
        assert upload(client, JPEG + b"first").status_code == 200
        second = upload(client, JPEG + b"second")
        stats = stats_of(client)
    seen = server.requests.snapshot()
    assert second.status_code == 200
    assert [r.status for r in seen] == [200, 429, 200]
    assert seen[1].fields["image"]["sha256"] == seen[2].fields["image"]["sha256"]
    assert seen[2].fields["image"]["filename"] == "a.jpg"
    assert seen[2].at - seen[0].at >= 1.0  # the retry came after the window had room
    assert stats.rate_limited == 1 and stats.retries == 0 and stats.gave_up == 0


def fake_paced(srv, **settings) -> tuple[httpx.Client, "FakeClock"]:
    """A client whose limiter (and so every 429 wait) and back-off run on a fake clock."""
    clock = FakeClock()
    limiter = RateLimiter(1000, 1.0, clock=clock, sleep=clock.sleep)
    return fast_client(srv, limiter=limiter, sleep=clock.sleep, **settings), clock


def test_429s_are_capped_so_nothing_loops_forever(server):
    server.fail_next.extend([FAIL_429] * 3)
    client, clock = fake_paced(server, max_rate_limit_retries=2)
    with client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == 429
    assert len(server.requests) == 3
    assert stats.rate_limited == 3 and stats.gave_up == 1
    assert 1.5 <= stats.waited_seconds <= 2.1  # two resets about 1 s away, waited on the fake clock


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"error": {"reset": "2030-01-01T00:00:30Z"}}, {}, (30.0, "")),
        ({"error": {"reset": "2030-01-01T00:00:12.500+00:00", "type": "minute"}}, {"Retry-After": "99"}, (12.5, "minute")),
        ({"error": {"type": "minute"}}, {"Retry-After": "99"}, (99.0, "")),  # the type goes with the body's reset
        ({"error": {"reset": "2030-01-02T00:00:00Z", "type": "daily"}}, {}, (86400.0, "daily")),
        ({"error": {"reset": "2029-12-31T23:59:00Z"}}, {"Retry-After": "7"}, (7.0, "")),  # reset in the past
        ({"error": {"reset": 1893456045}}, {}, (45.0, "")),  # epoch seconds
        ({"error": {"reset": 1893456045500}}, {}, (45.5, "")),  # epoch milliseconds
        ({"error": {"reset": 60}}, {}, (60.0, "")),  # below 1e9: seconds from now
        ({"error": {"reset": "1893456100"}}, {}, (100.0, "")),  # a numeric string
        ({"error": {"reset": True, "type": "\x1b]0;x\x07"}}, {"Retry-After": "3"}, (3.0, "")),  # odd values ignored
        (None, {"Retry-After": "Tue, 01 Jan 2030 00:00:20 GMT"}, (20.0, "")),
        (None, {"Retry-After": "1e12"}, (1e12, "")),  # huge: a quota for ever, reported as such
        (None, {"Retry-After": "NaN"}, (None, "")),
        (None, {"Retry-After": "-1"}, (None, "")),
        (None, {"Retry-After": "inf"}, (None, "")),
        (None, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, (253402300799.0 - 1893456000.0, "")),
        (None, {}, (None, "")),  # neither: the transport backs off
    ],
)
def test_rate_limit_hint_reads_reset_then_retry_after(body, headers, expected):
    now = 1893456000.0  # 2030-01-01T00:00:00Z
    response = httpx.Response(429, json=body, headers=headers) if body else httpx.Response(429, headers=headers)
    wait, kind = rate_limit_hint(response, now)
    assert (wait if wait is None else pytest.approx(wait), kind) == (
        expected[0] if expected[0] is None else pytest.approx(expected[0]), expected[1])


# --- quotas beyond the horizon ----------------------------------------------------------------

def test_a_daily_quota_stops_at_once_for_every_thread_without_waiting(server):
    server.mode = "quota-daily"
    client, clock = fake_paced(server)
    start = clock.now
    with client:
        with pytest.raises(QuotaExhausted) as caught:
            upload(client)
        with pytest.raises(QuotaExhausted):  # the next request does not touch the network
            upload(client, JPEG + b"other")
    message = str(caught.value)
    assert message.startswith("ImgTags quota exhausted until ")
    assert message.endswith(" UTC (daily limit); analysis resumes on a later run") and "\n" not in message
    assert caught.value.reset_at > time.time()
    assert len(server.requests) == 1 and clock.now == start  # no sleep at all


@pytest.mark.parametrize(("mode", "reset_in"), [("reset-epoch", 86400), ("retry-after-date", 7200),
                                                ("retry-after-huge", 0)])
def test_a_reset_beyond_the_horizon_is_a_quota_stop(server, mode, reset_in):
    server.mode, server.reset_in = mode, reset_in
    client, clock = fake_paced(server, max_rate_limit_wait=900.0)
    with client:
        with pytest.raises(QuotaExhausted, match=r"quota exhausted (until \d{4}-|for [0-9,]+ years)"):
            upload(client)
    assert len(server.requests) == 1 and clock.now == 1000.0


@pytest.mark.parametrize("mode", ["reset-epoch", "retry-after-date"])
def test_a_reset_within_the_horizon_is_waited_out(server, mode):
    server.fail_next.append(mode)
    server.reset_in = 120
    client, clock = fake_paced(server)
    with client:
        assert upload(client).status_code == 200
    assert 118 <= clock.now - 1000.0 <= 125  # waited on the fake clock, for the server's reset
    assert [r.status for r in server.requests] == [429, 200]


@pytest.mark.parametrize("mode", ["retry-after-nan", "retry-after-negative", "retry-after-inf"])
def test_unusable_retry_after_falls_back_to_backoff(server, mode):
    server.mode = mode
    client, clock = fake_paced(server, max_rate_limit_retries=3, backoff_base=0.5)
    with client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == 429 and len(server.requests) == 4
    assert stats.waited_seconds == pytest.approx(0.5 + 1 + 2)  # 0.5 * 2**n: finite, growing, no NaN


# --- bounded retries with back-off ---------------------------------------------------------

def test_500_and_html_503_are_retried_with_jittered_backoff(server):
    server.fail_next.extend([FAIL_500, FAIL_503_HTML])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with fast_client(server, backoff_base=0.05, sleep=sleep) as client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == 200 and response.json()["success"] is True
    assert [r.status for r in server.requests] == [500, 503, 200]
    assert len({r.fields["image"]["sha256"] for r in server.requests}) == 1  # the same body each time
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.05 and 0 <= sleeps[1] <= 0.10
    assert stats.retries == 2 and stats.requests == 3


def test_after_the_retry_bound_the_last_5xx_is_returned(server):
    server.fail_next.extend([FAIL_500] * 6)
    with fast_client(server, max_retries=4) as client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "ANALYSIS_FAILED"
    assert len(server.requests) == 5
    assert stats.retries == 4 and stats.gave_up == 1


def test_a_2xx_is_never_resent_even_when_its_body_is_not_json(server):
    server.fail_next.append(FAIL_MALFORMED)
    with fast_client(server) as client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == 200 and response.text.startswith('{"success": true')
    assert len(server.requests) == 1 and stats.retries == 0


@pytest.mark.parametrize("kind", [FAIL_422, FAIL_401, FAIL_403])
def test_4xx_is_returned_at_once(server, kind):
    server.fail_next.append(kind)
    with fast_client(server) as client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == int(kind)
    assert len(server.requests) == 1 and stats.retries == 0


def test_a_real_422_from_the_server_is_not_retried(server):
    with fast_client(server) as client:
        response = client.post("analyze", json={"not_url": 1})
    assert response.status_code == 422
    assert response.json()["message"] == "Either a URL or an image file is required."
    assert len(server.requests) == 1


# --- timeouts and broken connections -------------------------------------------------------

def test_read_timeout_is_retried_then_raised(server):
    server.latency = 1.0
    start = time.monotonic()
    with fast_client(server, timeout=0.2, max_retries=2) as client:
        with pytest.raises(httpx.ReadTimeout):
            upload(client)
        stats = stats_of(client)
    assert len(server.requests) == 3 and stats.retries == 2 and stats.gave_up == 1
    assert time.monotonic() - start < 1.5


def test_a_hang_then_an_answer_succeeds(server):
    server.fail_next.append(FAIL_HANG)
    server.hang_seconds = 2.0
    with fast_client(server, timeout=0.3) as client:
        assert upload(client).status_code == 200
    assert len(server.requests) == 2


def test_a_dropped_connection_is_retried(server):
    server.fail_next.append(FAIL_CLOSE)
    with fast_client(server) as client:
        assert upload(client).status_code == 200
        assert stats_of(client).retries == 1
    assert [r.status for r in server.requests] == [None, 200]


def test_connection_refused_is_retried_then_raised():
    stats = HttpStats()
    with make_client(refused_base_url(), requests_per_minute=1000, window_seconds=1.0,
                     backoff_base=0.01, max_retries=2, stats=stats) as client:
        with pytest.raises(httpx.ConnectError):
            client.post("analyze", json={"url": "https://example.com/a.jpg"})
    assert stats.requests == 3 and stats.retries == 2 and stats.gave_up == 1


def test_stop_cuts_a_long_429_wait_short_and_no_request_follows(server):
    server.mode, server.reset_in = "reset-epoch", 600  # within the horizon: waited, for real
    with fast_client(server) as client:
        outcome: list[BaseException] = []
        worker = threading.Thread(target=lambda: outcome.append(pytest.raises(Interrupted, upload, client).value))
        worker.start()
        time.sleep(0.3)
        start = time.monotonic()
        client._transport.stop(Interrupted("interrupted by SIGTERM"))
        worker.join(timeout=5)
        stopped_in = time.monotonic() - start
        with pytest.raises(Interrupted):
            upload(client)
    assert not worker.is_alive() and stopped_in < 0.5 and str(outcome[0]) == "interrupted by SIGTERM"
    assert len(server.requests) == 1


# --- answer caps: a body is read up to max_answer_bytes, never more ---------------------------

@pytest.mark.parametrize("mode", ["huge-body", "endless-body"])
def test_an_answer_over_the_cap_is_dropped_not_resent(server, mode):
    server.mode = mode
    start = time.monotonic()
    with fast_client(server, max_answer_bytes=100_000, timeout=5.0) as client:
        with pytest.raises(UnreadableAnswer) as caught:
            upload(client)
        stats = stats_of(client)
    assert caught.value.reason == "too large" and caught.value.status == 200
    assert stats.bytes_read <= 100_000 + 65_536 + 1000  # by Content-Length: nothing; streaming: one chunk past
    assert len(server.requests) == 1 and stats.retries == 0 and stats.gave_up == 1
    assert time.monotonic() - start < 2


def test_the_default_cap_is_2_mb_and_a_body_under_it_is_read_whole(server):
    server.fail_next.append("many-tags")  # a 1.3 MB answer
    with fast_client(server) as client:
        assert len(upload(client).json()["data"]["tags"]) == 100_000
        server.fail_next.append("huge-body")  # 50 MB
        with pytest.raises(UnreadableAnswer):
            upload(client)
        assert stats_of(client).bytes_read < 1_400_000  # the 50 MB body was refused by its Content-Length


def test_an_error_page_over_the_cap_keeps_its_status_and_its_start(server):
    server.fail_next.extend([Canned(503, "<html>" + "x" * 300_000, "text/html")] * 2)
    with fast_client(server, max_answer_bytes=1000, max_retries=1) as client:
        response = upload(client)
    assert response.status_code == 503 and response.content == b"<html>" + b"x" * 994
    assert len(server.requests) == 2


def test_a_body_shorter_than_its_content_length_is_not_resent(server):
    server.mode = "short-body"
    with fast_client(server) as client:
        with pytest.raises(UnreadableAnswer) as caught:
            upload(client)
    assert caught.value.reason == "broken off" and len(server.requests) == 1


# --- timeout_seconds is a deadline for the whole request --------------------------------------

def test_a_trickling_body_ends_at_the_deadline(server):
    server.mode, server.trickle_interval = "trickle", 0.05  # 20 bytes/s: each read is quick
    start = time.monotonic()
    with fast_client(server, timeout=0.5) as client:
        with pytest.raises(UnreadableAnswer) as caught:
            upload(client)
        stats = stats_of(client)
    elapsed = time.monotonic() - start
    assert caught.value.reason == "too slow" and 0 < caught.value.bytes_read < 30
    assert 0.45 <= elapsed < 1.5, f"took {elapsed:.2f} s"
    assert len(server.requests) == 1 and stats.retries == 0


def test_a_hang_before_the_headers_is_retried_each_time_within_the_deadline(server):
    server.mode, server.hang_seconds = "hang", 5.0
    start = time.monotonic()
    with fast_client(server, timeout=0.3, max_retries=2) as client:
        with pytest.raises(httpx.ReadTimeout):
            upload(client)
    assert len(server.requests) == 3
    assert time.monotonic() - start < 3 * 0.3 + 0.5


# --- the circuit breaker ---------------------------------------------------------------------

def test_the_breaker_opens_after_n_failed_requests_and_spares_the_network(server):
    server.mode = "500"
    with fast_client(server, max_retries=1, breaker_failures=3) as client:
        for _ in range(3):
            assert upload(client).status_code == 500  # each: 1 + 1 retry
        with pytest.raises(ServiceDown) as caught:
            upload(client)
    assert len(server.requests) == 6
    assert str(caught.value) == "ImgTags failed 3 times in a row (last: HTTP 500); analysis stops for this run"


def test_any_other_answer_resets_the_breaker(server):
    with fast_client(server, max_retries=0, breaker_failures=2) as client:
        for kind in (FAIL_500, FAIL_422, FAIL_500, None, FAIL_CLOSE, FAIL_MALFORMED, FAIL_503_HTML):
            if kind:
                server.fail_next.append(kind)
            try:
                upload(client)
            except httpx.RemoteProtocolError:
                pass
        assert upload(client).status_code == 200  # never two failures in a row: still closed


def test_the_breaker_stops_every_thread_on_a_refused_port():
    stats = HttpStats()
    with make_client(refused_base_url(), requests_per_minute=6000, window_seconds=60.0, backoff_base=0.001,
                     max_retries=1, breaker_failures=5, stats=stats, service="ImgTags") as client:
        def send(i: int) -> str:
            try:
                client.post("analyze", json={"url": f"https://example.com/{i}.jpg"})
            except (httpx.ConnectError, ServiceDown) as exc:
                return type(exc).__name__
            return "answer"
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(send, range(40)))
    assert outcomes.count("ServiceDown") >= 40 - 8
    assert stats.requests <= 2 * (5 + 4)  # the threshold plus what was in flight, each with its retry


# --- the key stays secret -------------------------------------------------------------------

def test_the_key_never_reaches_logs_or_reprs(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.fail_next.extend([FAIL_500, FAIL_CLOSE, FAIL_429, "echo-key-500"])
    client, _ = fake_paced(server)
    with client:
        assert upload(client).status_code == 200
        texts = [repr(client), repr(client._transport), repr(client.headers), repr(stats_of(client))]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert caplog.text and KEY not in caplog.text
    assert not any(KEY in text for text in texts)


def test_stats_are_exact_under_concurrency(server):
    with fast_client(server) as client:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: upload(client), range(40)))
        assert stats_of(client).requests == 40 == len(server.requests)
    assert all(r.status == 200 for r in server.requests)
    assert threading.active_count() < 50
