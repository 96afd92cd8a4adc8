"""catalog.http against a real loopback server: throttling, 429 waits, bounded retries, no 4xx retries."""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from imgtags_server import (FAIL_401, FAIL_403, FAIL_422, FAIL_429, FAIL_500, FAIL_503_HTML, FAIL_CLOSE,
                            FAIL_HANG, FAIL_MALFORMED, serve_imgtags)

from catalog.http import HttpStats, RateLimiter, make_client, rate_limit_wait, stats_of

KEY = "sk-test-9f8e7d6c5b4a3921"
AUTH = {"Authorization": f"Bearer {KEY}"}
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@pytest.fixture
def server():
    with serve_imgtags(key=KEY) as srv:
        yield srv


def fast_client(srv, **settings) -> httpx.Client:
    """No throttling to speak of (1000 per second) and millisecond back-off, unless overridden."""
    options = dict(requests_per_minute=1000, window_seconds=1.0, backoff_base=0.01, timeout=2.0, headers=AUTH)
    options.update(settings)
    return make_client(srv.base_url, **options)


def upload(client: httpx.Client, data: bytes = JPEG, name: str = "a.jpg") -> httpx.Response:
    return client.post("analyze", files={"image": (name, data, "image/jpeg")})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def max_in_window(times: list[float], window: float) -> int:
    """The most events any closed window [t, t + window] holds (the strictest reading)."""
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u - t <= window) for i, t in enumerate(times)), default=0)


class FakeClock:
    """A clock that only moves when something sleeps, so the limiter's arithmetic is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


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


def test_429s_are_capped_so_nothing_loops_forever(server):
    server.fail_next.extend([FAIL_429] * 3)
    with fast_client(server, max_rate_limit_retries=2, max_wait=0.02) as client:
        response = upload(client)
        stats = stats_of(client)
    assert response.status_code == 429
    assert len(server.requests) == 3
    assert stats.rate_limited == 3 and stats.gave_up == 1


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"error": {"reset": "2030-01-01T00:00:30Z"}}, {}, 30.0),
        ({"error": {"reset": "2030-01-01T00:00:12.500+00:00"}}, {"Retry-After": "99"}, 12.5),
        ({"error": {"reset": "2030-01-01T02:00:00Z"}}, {}, 300.0),  # capped
        ({"error": {"reset": "2029-12-31T23:59:00Z"}}, {"Retry-After": "7"}, 7.0),  # reset in the past
        (None, {"Retry-After": "Tue, 01 Jan 2030 00:00:20 GMT"}, 20.0),
        (None, {}, 0.5 * 2**2),  # neither: exponential back-off
    ],
)
def test_rate_limit_wait_reads_reset_then_retry_after_then_backs_off(body, headers, expected):
    now = 1893456000.0  # 2030-01-01T00:00:00Z
    response = httpx.Response(429, json=body, headers=headers) if body else httpx.Response(429, headers=headers)
    assert rate_limit_wait(response, 2, now_wall=now, backoff_base=0.5, max_wait=300.0) == pytest.approx(expected)


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


def test_malformed_json_is_retried_only_when_json_is_required(server):
    server.fail_next.append(FAIL_MALFORMED)
    with fast_client(server) as client:
        assert upload(client).status_code == 200  # returned as is: this client does not parse
    assert len(server.requests) == 1
    server.fail_next.append(FAIL_MALFORMED)
    with fast_client(server, require_json=True) as client:
        response = upload(client)
    assert response.json()["success"] is True
    assert len(server.requests) == 3


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
    port = closed_port()
    stats = HttpStats()
    with make_client(f"http://127.0.0.1:{port}/api/v1", requests_per_minute=1000, window_seconds=1.0,
                     backoff_base=0.01, max_retries=2, stats=stats) as client:
        with pytest.raises(httpx.ConnectError):
            client.post("analyze", json={"url": "https://example.com/a.jpg"})
    assert stats.requests == 3 and stats.retries == 2 and stats.gave_up == 1


# --- the key stays secret -------------------------------------------------------------------

def test_the_key_never_reaches_logs_or_reprs(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.fail_next.extend([FAIL_500, FAIL_CLOSE, FAIL_429])
    with fast_client(server, max_wait=0.01) as client:
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
