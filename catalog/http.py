"""The one place for HTTP behaviour: throttling, retries, 429 waits, deadlines and answer caps for every caller."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

import httpx

from catalog.deadline import Deadline, install
from catalog.pacing import CircuitBreaker, RateLimiter, quota_exhausted, rate_limit_hint

log = logging.getLogger(__name__)

RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
DEFAULT_MAX_ANSWER_BYTES = 2_000_000


@dataclass
class HttpStats:
    """Counters shared by every worker thread, so a run can report what the network cost."""

    requests: int = 0  # requests put on the wire, including re-sends
    rate_limited: int = 0  # 429 answers seen
    retries: int = 0  # re-sends after a 5xx, a timeout or a connection error
    gave_up: int = 0  # requests that ran out of retries, or whose 2xx body could not be read
    waited_seconds: float = 0.0  # time spent waiting out 429s
    bytes_read: int = 0  # answer bytes received (bodies only)

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
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class UnreadableAnswer(httpx.TransportError):
    """A 2xx whose body could not be read whole: over the cap, past the deadline, or broken off.

    Never re-sent: the service may already have charged for it. `reason` is "too large",
    "too slow" or "broken off"; `bytes_read` how much arrived before we let go.
    """

    def __init__(self, reason: str, *, request: httpx.Request, status: int, bytes_read: int):
        super().__init__(f"HTTP {status} answer {reason} after {bytes_read:,} bytes", request=request)
        self.reason, self.status, self.bytes_read = reason, status, bytes_read


def describe_failure(exc: Exception, timeout: float) -> str:
    """A short, key-free phrase for a transport failure (for logs and the breaker's line)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no complete answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed without an answer"
    return type(exc).__name__


class RetryingTransport(httpx.BaseTransport):
    """Wraps `httpx.HTTPTransport` so every request is throttled, bounded and retried the same way.

    - Each attempt has a deadline of `timeout` seconds for all of it (connect, upload, headers,
      body; see catalog/deadline.py) and reads at most `max_answer_bytes` of an answer.
    - 429: wait for the server's reset (all threads pause) and re-send; a reset beyond
      `max_rate_limit_wait` (a daily quota) raises QuotaExhausted at once, for every thread.
    - 5xx, timeouts, dropped connections: up to `max_retries` re-sends with full-jitter
      exponential back-off, then the last response is returned or the last exception raised.
    - A 2xx is never re-sent (it may have been charged): a body that cannot be read whole
      raises UnreadableAnswer; a body that is not what the caller wanted is the caller's matter.
    - Any other 4xx: returned at once; re-sending a refused request cannot help.
    - The circuit breaker: after `breaker_failures` requests in a row ended in a server-side
      failure, every request raises ServiceDown without touching the network.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        limiter: RateLimiter | None = None,
        stats: HttpStats | None = None,
        breaker: CircuitBreaker | None = None,
        service: str = "the server",
        timeout: float = 120.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_rate_limit_wait: float = 900.0,
        max_rate_limit_retries: int = 20,
        sleep: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.deadline = Deadline()
        if inner is None:
            inner = httpx.HTTPTransport()
            install(inner, self.deadline)
        self.inner = inner
        self.service = service
        self.breaker = breaker or CircuitBreaker(service=service)
        self.limiter = limiter or RateLimiter(sleep=self.breaker.wait)
        self.stats = stats or HttpStats()
        self.timeout, self.max_answer_bytes = timeout, max_answer_bytes
        self.max_retries, self.max_rate_limit_retries = max_retries, max_rate_limit_retries
        self.backoff_base, self.backoff_cap, self.max_rate_limit_wait = backoff_base, backoff_cap, max_rate_limit_wait
        self._sleep, self._wall_clock = sleep or self.breaker.wait, wall_clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:  # no headers, so no key, can ever show up here
        return f"<RetryingTransport max_retries={self.max_retries} limit={self.limiter.limit}/{self.limiter.window:g}s>"

    def _backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, base * 2**(n-1)], so retrying threads do not stampede."""
        return self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 30)))

    def _retry_or_give_up(self, failures: int, what: str, request: httpx.Request) -> bool:
        if failures > self.max_retries:
            self.stats.add(gave_up=1)
            self.breaker.failed(what)
            log.info("%s %s: %s; giving up after %d attempts", request.method, request.url, what, failures)
            return False
        delay = self._backoff(failures)
        self.stats.add(retries=1)
        log.info("%s %s: %s; retry %d/%d in %.2f s", request.method, request.url, what, failures, self.max_retries, delay)
        self._sleep(delay)
        return True

    def _read_body(self, response: httpx.Response, request: httpx.Request) -> bytes:
        """The body, up to the cap; a 2xx that cannot be read whole raises UnreadableAnswer."""
        status, cap, size = response.status_code, self.max_answer_bytes, 0
        chunks: list[bytes] = []
        declared = response.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > cap and status < 300  # refused unread
        try:
            if not too_large:  # an error page is read up to the cap: its start is enough
                for chunk in response.stream:
                    size += len(chunk)
                    chunks.append(chunk)
                    if size > cap:
                        too_large = True
                        break
        except RETRYABLE_ERRORS as exc:
            if status < 300:
                reason = "too slow" if isinstance(exc, httpx.TimeoutException) else "broken off"
                raise UnreadableAnswer(reason, request=request, status=status, bytes_read=size) from None
            raise
        finally:
            self.stats.add(bytes_read=size)
        if too_large and status < 300:
            raise UnreadableAnswer("too large", request=request, status=status, bytes_read=size)
        return b"".join(chunks)[:cap]

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        """One send under the deadline; the answer comes back read, its connection released."""
        self.deadline.at = self.deadline.clock() + self.timeout
        try:
            response = self.inner.handle_request(request)
            try:
                body = self._read_body(response, request)
            finally:
                response.close()  # a body left unread (over the cap) drops the connection
        finally:
            self.deadline.at = None
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")]
        # We ask for identity encoding; a server that compresses anyway is not decoded here,
        # so a small compressed bomb cannot expand past the cap (the caller finds no JSON).
        return httpx.Response(response.status_code, headers=headers, content=body,
                              extensions={k: v for k, v in response.extensions.items() if k != "network_stream"})

    def _rate_limit_wait(self, response: httpx.Response, rate_limited: int) -> float:
        now_wall = self._wall_clock()
        wait, kind = rate_limit_hint(response, now_wall)
        if wait is None:  # no usable hint: exponential back-off, capped
            return min(self.backoff_cap, self.backoff_base * 2 ** min(rate_limited, 16))
        if wait > self.max_rate_limit_wait:
            stop = quota_exhausted(self.service, wait, kind, now_wall)
            self.breaker.stop(stop)  # the stage says it, once
            raise stop
        return wait

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body must be replayable for re-sends
        request.headers["Accept-Encoding"] = "identity"  # the cap counts the bytes we keep
        failures = rate_limited = 0
        while True:
            self.breaker.check()
            self.limiter.acquire()
            self.breaker.check()  # another thread may have stopped everything while we queued
            self.stats.add(requests=1)
            try:
                response = self._attempt(request)
            except UnreadableAnswer as exc:
                self.stats.add(gave_up=1)
                self.breaker.failed(f"HTTP {exc.status} answer {exc.reason}")
                log.info("%s %s: %s; not re-sent (it may have been charged)", request.method, request.url, exc)
                raise
            except RETRYABLE_ERRORS as exc:
                failures += 1
                if not self._retry_or_give_up(failures, describe_failure(exc, self.timeout), request):
                    raise
                continue
            status = response.status_code
            if status == 429:
                self.stats.add(rate_limited=1)
                if rate_limited >= self.max_rate_limit_retries:
                    self.stats.add(gave_up=1)
                    self.breaker.failed(f"HTTP 429 {rate_limited + 1} times")
                    return response
                wait = self._rate_limit_wait(response, rate_limited)
                rate_limited += 1
                log.info("%s %s: 429 rate limited; waiting %.2f s", request.method, request.url, wait)
                self.stats.add(waited_seconds=wait)
                # plus the limiter's margin: the reset is on the server's clock, not ours
                self.limiter.pause_until(self.limiter.now() + wait + self.limiter.margin)
                continue
            if status >= 500:
                failures += 1
                if self._retry_or_give_up(failures, f"HTTP {status}", request):
                    continue
                return response
            self.breaker.succeeded()
            return response

    def stop(self, reason: Exception) -> None:
        """From any thread (a signal handler): no request starts any more, every wait ends now
        and raises `reason`. Requests on the wire end within their deadline."""
        self.breaker.stop(reason)

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
    max_rate_limit_wait: float = 900.0,
    max_rate_limit_retries: int = 20,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    breaker_failures: int = 5,
    service: str = "the server",
    limiter: RateLimiter | None = None,
    stats: HttpStats | None = None,
    sleep: Callable[[float], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An `httpx.Client` whose every request goes through `RetryingTransport`.

    `timeout` is a deadline for each attempt as a whole; connecting gets at most
    `connect_timeout` of it. Share one client between worker threads: they then share the
    limiter, the counters and the circuit breaker.
    """
    breaker = CircuitBreaker(breaker_failures, service)
    transport = RetryingTransport(
        limiter=limiter or RateLimiter(requests_per_minute, window_seconds, sleep=sleep or breaker.wait),
        stats=stats,
        breaker=breaker,
        service=service,
        timeout=timeout,
        max_answer_bytes=max_answer_bytes,
        max_retries=max_retries,
        backoff_base=backoff_base,
        max_rate_limit_wait=max_rate_limit_wait,
        max_rate_limit_retries=max_rate_limit_retries,
        sleep=sleep,
        wall_clock=wall_clock,
    )
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
        headers=headers,
    )


def transport_of(client: httpx.Client) -> RetryingTransport | None:
    """The transport of a client built by `make_client` (None for any other client)."""
    transport = getattr(client, "_transport", None)
    return transport if isinstance(transport, RetryingTransport) else None


def stats_of(client: httpx.Client) -> HttpStats | None:
    """The counters of a client built by `make_client` (None for any other client)."""
    transport = transport_of(client)
    return transport.stats if transport else None
