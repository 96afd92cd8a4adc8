"""When a request may go: the shared rate limiter, what a 429 asks for, and the circuit breaker."""

from __future__ import annotations

import copy
import email.utils
import json
import math
import re
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Callable

import httpx

from catalog.errors import CatalogError, QuotaExhausted, ServiceDown

# A numeric `reset` at or above this is a point in time (epoch seconds; 1e9 is 2001-09-09),
# and at or above EPOCH_MS epoch milliseconds; below it, seconds from now. No limiter
# asks for a 31-year wait, and no epoch timestamp we meet lies before 2001.
EPOCH_SECONDS, EPOCH_MS = 1e9, 1e12


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
        self._shared: Callable[[], None] | None = None

    def share(self, gate: Callable[[], None] | None) -> None:
        """Also pass `gate` before every request: a limit shared with other processes (a Dask
        worker's share of the run's rate, flows/spread.py); blocks until the request may go."""
        self._shared = gate

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
            if self._shared is not None:
                self._shared()
            with self._state:
                self._sent.append(self._clock())

    def now(self) -> float:
        """The limiter's clock, so callers can express pauses on it."""
        return self._clock()

    def pause_until(self, when: float) -> None:
        """Hold every thread back until `when` (on our clock): the server said we are over."""
        with self._state:
            self._paused_until = max(self._paused_until, when)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _from_number(value: float, now_wall: float) -> float | None:
    """Seconds until a numeric `reset`: epoch milliseconds, epoch seconds or a delta (see EPOCH_SECONDS)."""
    if _finite(value) is None or value < 0:
        return None
    if value >= EPOCH_MS:
        return value / 1000 - now_wall
    return value - now_wall if value >= EPOCH_SECONDS else value


def _parse_reset(value: object, now_wall: float) -> float | None:
    """Seconds until the body's `reset`: ISO-8601 ("2025-01-15T10:30:00Z") or a number; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _from_number(float(value), now_wall)
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return _from_number(float(value), now_wall)
    except ValueError:
        pass
    try:
        reset = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=timezone.utc)
    return reset.timestamp() - now_wall


def _parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; NaN, infinite or negative is no hint."""
    if not value or len(value) > 64:
        return None
    value = value.strip()
    try:
        seconds = _finite(float(value))
        return seconds if seconds is not None and seconds >= 0 else None
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now_wall
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def rate_limit_hint(response: httpx.Response, now_wall: float) -> tuple[float | None, str]:
    """What a 429 asks for: (seconds until its reset or None, the limit's kind such as "daily" or "").

    Body `error.reset` first, then Retry-After; a reset in the past (clock skew) is no hint.
    """
    wait, kind = None, ""
    try:
        error = json.loads(response.content).get("error") or {}
        wait = _parse_reset(error.get("reset"), now_wall)
        if isinstance(error.get("type"), str) and re.fullmatch(r"[A-Za-z][A-Za-z -]{0,19}", error["type"]):
            kind = error["type"].lower()
    except (ValueError, AttributeError, RecursionError):
        pass
    if wait is None or wait < 0:  # the body's limit type goes with its reset, not with Retry-After
        wait, kind = _parse_retry_after(response.headers.get("retry-after"), now_wall), ""
    return (wait if wait is not None and wait >= 0 else None), kind


def quota_exhausted(service: str, wait: float, kind: str, now_wall: float) -> QuotaExhausted:
    """The one line for a 429 whose reset lies beyond the wait horizon."""
    reset_at = now_wall + wait
    try:
        when = "until " + datetime.fromtimestamp(reset_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        when = f"for {wait / (365.25 * 86400):,.0f} years"
    limit = f" ({kind} limit)" if kind else ""
    return QuotaExhausted(f"{service} quota exhausted {when}{limit}; analysis resumes on a later run",
                          reset_at=reset_at if math.isfinite(reset_at) else None)


class CircuitBreaker:
    """Shared by every thread of a client: once open, every request raises its one line at once.

    It opens after `threshold` consecutive requests that ended in a server-side failure
    (after their own retries), or when a stop is recorded: a quota exhausted until tomorrow,
    or Interrupted from a signal handler. Any other outcome resets the count. It never closes
    again: the next run starts afresh. `wait` is a sleep that a stop cuts short.
    """

    def __init__(self, threshold: int = 5, service: str = "the server"):
        self.threshold, self.service = threshold, service
        self.in_a_row = 0
        self._stop: CatalogError | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise the recorded stop (a fresh copy: threads must not share one traceback)."""
        with self._lock:
            stop = self._stop
        if stop is not None:
            raise copy.copy(stop)

    def wait(self, seconds: float) -> None:
        """Sleep, unless a stop comes first: then raise it at once (a 15-minute 429 wait, too)."""
        if self._stopped.wait(max(seconds, 0.0)):
            self.check()

    def succeeded(self) -> None:
        with self._lock:
            self.in_a_row = 0

    def failed(self, what: str) -> None:
        with self._lock:
            self.in_a_row += 1
            if self._stop is None and self.threshold and self.in_a_row >= self.threshold:
                self._stop = ServiceDown(f"{self.service} failed {self.in_a_row} times in a row (last: {what}); "
                                         "analysis stops for this run")
                self._stopped.set()

    def stop(self, reason: CatalogError) -> None:
        """Open for good with this reason (the first reason recorded wins); sleepers wake and raise it."""
        with self._lock:
            if self._stop is None:
                self._stop = reason
        self._stopped.set()
