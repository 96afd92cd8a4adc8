"""What every HTTP back-end shares: one throttled client, a key that stays secret, close() and `with`."""

from __future__ import annotations

from typing import Any

import httpx

from catalog.http import HttpStats, make_client, stats_of


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
            client = make_client(**{"require_json": True, **http_settings}, stats=stats)
        self.client = client
        self.stats = stats or stats_of(client) or HttpStats()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"  # never the key

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be stored or printed, even when a server echoes it back."""
        return (self._key,) if self._key else ()

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transport_message(self, exc: httpx.TransportError) -> str:
        """What a request that got no answer means, in words; never the headers (the key)."""
        timeout = self.client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"cannot connect to {self.endpoint}: no answer within {timeout.connect:g} s"
        if isinstance(exc, httpx.TimeoutException):
            return f"{self.service} did not answer within {timeout.read:g} s ({self.endpoint})"
        if isinstance(exc, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(exc).lower() else str(exc) or type(exc).__name__
            return f"cannot connect to {self.endpoint}: {reason}"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"{self.service} closed the connection without an answer ({self.endpoint})"
        return f"talking to {self.endpoint} failed: {type(exc).__name__}: {exc}"
