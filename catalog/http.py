"""The one place for HTTP behaviour: throttling, retries, 429 waits and timeouts for every caller."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import httpx

log = logging.getLogger(__name__)

RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass
class HttpStats:
    """Counters shared by every worker thread, so a run can report what the network cost."""

    requests: int = 0  # requests put on the wire, including re-sends
    rate_limited: int = 0  # 429 answers seen
    retries: int = 0  # re-sends after a 5xx, a bad body, a timeout or a connection error
    gave_up: int = 0  # requests that ran out of retries
    waited_seconds: float = 0.0  # time spent waiting out 429s

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # not a field, so asdict() and == still work

    def add(self, **deltas: float) -> None:
        """Increment counters atomically: `+=` on a shared int is not atomic across threads."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, float]:
        """A consistent copy for reports, taken under the lock."""
        with self._lock:
            return {k: getattr(self, k) for k in ("requests", "rate_limited", "retries", "gave_up", "waited_seconds")}


class RateLimiter:
    """Keeps every sliding window of `window_seconds` at or under `limit` requests.

    Two rules, both from a log of real send times: consecutive requests are at least
    window/limit apart (so a burst from many threads is spread out instead of tripping the
    server at the start of each window), and the request `limit` places back is at least
    window + `margin` ago (the margin absorbs jitter between our clock and the server's).
    Callers queue on one lock, so the recorded time is the time the request really leaves.
    """

    def __init__(
        self,
        requests_per_minute: int = 60,
        window_seconds: float = 60.0,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if requests_per_minute < 1 or window_seconds <= 0:
            raise ValueError("requests_per_minute must be >= 1 and window_seconds > 0")
        self.limit = int(requests_per_minute)
        self.window = float(window_seconds)
        self.margin = max(0.02 * self.window, 0.1) if margin is None else float(margin)
        self.interval = self.window / self.limit
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque(maxlen=self.limit)
        self._paused_until = float("-inf")
        self._turn = threading.Lock()  # one caller at a time waits for its slot
        self._state = threading.Lock()  # guards the log and the pause, never held while sleeping

    def _wait_needed(self, now: float) -> float:
        with self._state:
            earliest = self._paused_until
            if self._sent:
                earliest = max(earliest, self._sent[-1] + self.interval)
            if len(self._sent) == self.limit:
                earliest = max(earliest, self._sent[0] + self.window + self.margin)
            return earliest - now

    def acquire(self) -> None:
        """Block until sending now keeps every window under the limit, then record the send."""
        with self._turn:
            while (wait := self._wait_needed(self._clock())) > 0:
                self._sleep(wait)
            with self._state:
                self._sent.append(self._clock())

    def now(self) -> float:
        """The limiter's clock, so callers can express pauses on it."""
        return self._clock()

    def pause_until(self, when: float) -> None:
        """Hold every thread back until `when` (on our clock): the server said we are over."""
        with self._state:
            self._paused_until = max(self._paused_until, when)


def _parse_reset(value: object, now_wall: float) -> float | None:
    """Seconds until an ISO-8601 `reset` time ("2025-01-15T10:30:00Z"), or None if unusable."""
    if not isinstance(value, str):
        return None
    try:
        reset = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=timezone.utc)
    return reset.timestamp() - now_wall


def _parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds from a Retry-After header: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now_wall
    except (TypeError, ValueError, IndexError):
        return None


def rate_limit_wait(response: httpx.Response, attempt: int, *, now_wall: float, backoff_base: float, max_wait: float) -> float:
    """How long a 429 asks us to wait: body `error.reset`, else Retry-After, else back-off; capped."""
    wait = None
    try:
        error = json.loads(response.content).get("error") or {}
        wait = _parse_reset(error.get("reset"), now_wall)
    except (ValueError, AttributeError):
        pass
    if wait is None or wait < 0:  # a reset in the past means clock skew: trust the next hint
        wait = _parse_retry_after(response.headers.get("retry-after"), now_wall)
    if wait is None or wait < 0:
        wait = backoff_base * 2 ** min(attempt, 16)
    return min(max(wait, 0.0), max_wait)


def _is_json(response: httpx.Response) -> bool:
    try:
        json.loads(response.content)
        return True
    except (ValueError, RecursionError):
        return False


class RetryingTransport(httpx.BaseTransport):
    """Wraps `httpx.HTTPTransport` so every request is throttled and retried the same way.

    - 429: wait for the server's reset (all threads pause), re-send the same request; not a failure.
    - 5xx, timeouts, dropped connections (and, with `require_json`, a 2xx body that is not
      JSON): up to `max_retries` re-sends with full-jitter exponential back-off, then the last
      response is returned or the last exception raised, so the caller records a failure.
    - Any other 4xx: returned at once; re-sending a refused request cannot help.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        limiter: RateLimiter | None = None,
        stats: HttpStats | None = None,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_wait: float = 300.0,
        max_rate_limit_retries: int = 20,
        require_json: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.inner = inner or httpx.HTTPTransport()
        self.limiter = limiter or RateLimiter()
        self.stats = stats or HttpStats()
        self.max_retries, self.max_rate_limit_retries = max_retries, max_rate_limit_retries
        self.backoff_base, self.backoff_cap, self.max_wait = backoff_base, backoff_cap, max_wait
        self.require_json = require_json
        self._sleep, self._wall_clock = sleep, wall_clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:  # no headers, so no key, can ever show up here
        return f"<RetryingTransport max_retries={self.max_retries} limit={self.limiter.limit}/{self.limiter.window:g}s>"

    def _backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, base * 2**(n-1)], so retrying threads do not stampede."""
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1)))

    def _retry_or_give_up(self, failures: int, what: str, request: httpx.Request) -> bool:
        if failures > self.max_retries:
            self.stats.add(gave_up=1)
            log.warning("%s %s: %s; giving up after %d attempts", request.method, request.url, what, failures)
            return False
        delay = self._backoff(failures)
        self.stats.add(retries=1)
        log.info("%s %s: %s; retry %d/%d in %.2f s", request.method, request.url, what, failures, self.max_retries, delay)
        self._sleep(delay)
        return True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body must be replayable for re-sends
        failures = rate_limited = 0
        while True:
            self.limiter.acquire()
            self.stats.add(requests=1)
            response = None
            try:
                response = self.inner.handle_request(request)
                status = response.status_code
                if status == 429 or status >= 500 or (self.require_json and status < 300):
                    response.read()
            except RETRYABLE_ERRORS as exc:
                if response is not None:  # the answer broke off mid-body
                    response.close()
                failures += 1
                if not self._retry_or_give_up(failures, f"{type(exc).__name__}: {exc}", request):
                    raise
                continue
            if status == 429:
                self.stats.add(rate_limited=1)
                if rate_limited >= self.max_rate_limit_retries:
                    self.stats.add(gave_up=1)
                    return response
                wait = rate_limit_wait(response, rate_limited, now_wall=self._wall_clock(),
                                       backoff_base=self.backoff_base, max_wait=self.max_wait)
                rate_limited += 1
                response.close()
                log.info("%s %s: 429 rate limited; waiting %.2f s", request.method, request.url, wait)
                self.stats.add(waited_seconds=wait)
                # plus the limiter's margin: the reset is on the server's clock, not ours
                self.limiter.pause_until(self.limiter.now() + wait + self.limiter.margin)
                continue
            bad_body = self.require_json and status < 300 and not _is_json(response)
            if status >= 500 or bad_body:
                failures += 1
                what = f"HTTP {status}" + (" with a body that is not JSON" if bad_body else "")
                if self._retry_or_give_up(failures, what, request):
                    response.close()
                    continue
            return response

    def close(self) -> None:
        self.inner.close()


def make_client(
    base_url: str = "",
    *,
    timeout: float = 120.0,
    connect_timeout: float = 10.0,
    requests_per_minute: int = 60,
    window_seconds: float = 60.0,
    max_retries: int = 4,
    backoff_base: float = 1.0,
    max_wait: float = 300.0,
    max_rate_limit_retries: int = 20,
    require_json: bool = False,
    limiter: RateLimiter | None = None,
    stats: HttpStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An `httpx.Client` whose every request goes through `RetryingTransport`.

    `timeout` bounds reading the answer (and writing the upload); connecting gets
    `connect_timeout`. Share one client between worker threads: they then share the limiter.
    """
    transport = RetryingTransport(
        httpx.HTTPTransport(),
        limiter=limiter or RateLimiter(requests_per_minute, window_seconds),
        stats=stats,
        max_retries=max_retries,
        backoff_base=backoff_base,
        max_wait=max_wait,
        max_rate_limit_retries=max_rate_limit_retries,
        require_json=require_json,
        sleep=sleep,
    )
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        headers=headers,
    )


def stats_of(client: httpx.Client) -> HttpStats | None:
    """The counters of a client built by `make_client` (None for any other client)."""
    transport = getattr(client, "_transport", None)
    return transport.stats if isinstance(transport, RetryingTransport) else None
