"""What every HTTP back-end shares: one throttled client, a key that stays secret, close() and `with`."""

from __future__ import annotations

from typing import Any

import httpx

from catalog.http import HttpStats, UnreadableAnswer, make_client, stats_of, transport_of


class HttpAnalyzer:
    """Base of the HTTP back-ends. Safe to share between worker threads: they share one client.

    Without `client`, one is built by `catalog.http.make_client` from the keyword settings
    (timeout, requests_per_minute, window_seconds, max_retries, backoff_base, ...).
    """

    name = ""
    service = ""  # how messages name the other side: "ImgTags", a model
    endpoint = ""

    def _connect(self, key: str | None, client: httpx.Client | None, stats: HttpStats | None,
                 http_settings: dict[str, Any]) -> None:
        self._key = key or ""
        self._own_client = client is None
        if client is None:
            stats = stats or HttpStats()
            client = make_client(**{"service": self.service or "the server", **http_settings}, stats=stats)
        self.client = client
        self.stats = stats or stats_of(client) or HttpStats()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"  # never the key

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be stored or printed, even when a server echoes it back."""
        return (self._key,) if self._key else ()

    def stop(self, reason: Exception) -> None:
        """Stop every request of this analyzer from any thread (e.g. Interrupted on SIGTERM):
        waits end at once and raise `reason`; requests on the wire end within their deadline."""
        transport = transport_of(self.client)
        if transport:
            transport.stop(reason)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deadline(self) -> float:
        transport = transport_of(self.client)
        return transport.timeout if transport else self.client.timeout.read

    def _unreadable_message(self, exc: UnreadableAnswer) -> str:
        """A 2xx whose body never arrived whole, in words (never re-sent: it may have been charged)."""
        if exc.reason == "too large":
            transport = transport_of(self.client)
            cap = f" {transport.max_answer_bytes:,}-byte" if transport else ""
            return (f"{self.service} answered HTTP {exc.status} with a body over the{cap} cap "
                    "(analysis.max_answer_bytes); the connection was dropped")
        if exc.reason == "too slow":
            return (f"{self.service} answered HTTP {exc.status} but the body did not arrive within "
                    f"{self._deadline():g} s ({exc.bytes_read:,} bytes came); not re-sent")
        return (f"{self.service} answered HTTP {exc.status} but the body broke off after "
                f"{exc.bytes_read:,} bytes; not re-sent")

    def _transport_message(self, exc: httpx.TransportError) -> str:
        """What a request that got no answer means, in words; never the headers (the key)."""
        timeout = self.client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"cannot connect to {self.endpoint}: no answer within {timeout.connect:g} s"
        if isinstance(exc, httpx.TimeoutException):
            return f"{self.service} did not answer within {self._deadline():g} s ({self.endpoint})"
        if isinstance(exc, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
            return f"cannot connect to {self.endpoint}: {reason}"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"{self.service} closed the connection without an answer ({self.endpoint})"
        if isinstance(exc, httpx.ProxyError):
            return f"cannot connect to {self.endpoint}: {exc}"  # the proxy refused, said without its words
        return f"talking to {self.endpoint} failed: {type(exc).__name__}"
