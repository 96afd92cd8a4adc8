"""The ImgTags back-end: build the request, turn every answer into an `Analysis` or a clear error."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from catalog.analyzers import LIKELIHOODS, Analysis, UploadImage, register
from catalog.analyzers.storable import clean_int, clean_text
from catalog.errors import AnalysisFailed, AuthenticationFailed
from catalog.http import HttpStats, UnreadableAnswer, make_client, stats_of, transport_of

DEFAULT_BASE_URL = "https://www.imgtags.com/api/v1"
MAX_UPLOAD_BYTES = 10_000_000  # the contract says 10MB; stay under either reading of it
SUPPORTED_MIMES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_URL_CHARS = 2048
DEFAULT_MODEL = "imgtags-v1"
PERMANENT_STATUSES = (400, 413, 415, 422)  # this image or URL will never be accepted as it is


def _strs(value: Any) -> tuple[str, ...]:
    """The words of a list; nested lists and objects are not words (and str() of a deep one recurses)."""
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, (str, int, float)) and not isinstance(v, bool))


def _text(value: Any, default: str) -> str:
    return value.strip() if isinstance(value, str) and value.strip() else default


def _likelihood(value: Any) -> str:
    value = _text(value, "UNKNOWN").upper()
    return value if value in LIKELIHOODS else "UNKNOWN"


def _int(value: Any) -> int:
    return clean_int(value)  # 1e300, Infinity, NaN and -5 never reach SQLite as they are


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_answer(body: dict[str, Any]) -> Analysis:
    """A 200 answer → `Analysis`; missing optional fields keep the dataclass defaults."""
    data, meta = _dict(body.get("data")), _dict(body.get("meta"))
    colors, safe = _dict(data.get("colors")), _dict(data.get("safe_search"))
    return Analysis(
        tags=_strs(data.get("tags")),
        description=_text(data.get("description"), ""),
        objects=_strs(data.get("objects")),
        dominant_color=_text(colors.get("dominant"), "unknown"),
        palette=_strs(colors.get("palette")),
        scene=_text(data.get("scene"), "unknown"),
        mood=_text(data.get("mood"), "unknown"),
        safe_adult=_likelihood(safe.get("adult")),
        safe_violence=_likelihood(safe.get("violence")),
        orientation=_text(_dict(data.get("dimensions")).get("orientation"), "unknown"),
        provider="imgtags",
        model=_text(data.get("model") or meta.get("model"), DEFAULT_MODEL),
        tokens_used=_int(meta.get("tokens_used")),
        processing_time_ms=_int(meta.get("processing_time_ms")),
        raw=body,
    )


def _server_message(body: Any) -> str:
    """The human part of an error body: `error.message` or the 422 `message` plus `errors`.

    Only plain values are words: str() of a deeply nested object would recurse.
    """
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else body.get("message")
    details = [f"{name}: {' '.join(_strs(msgs)) if isinstance(msgs, list) else _plain(msgs)}"
               for name, msgs in _dict(body.get("errors")).items()]
    return " ".join(filter(None, [_plain(message), f"({'; '.join(details)})" if details else ""]))


def _plain(value: Any) -> str:
    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""


@register("imgtags")
class ImgTagsAnalyzer:
    """ImgTags over HTTP. Safe to share between worker threads: they share one throttled client.

    Without `client`, one is built by `catalog.http.make_client` from the remaining keyword
    settings (timeout, requests_per_minute, window_seconds, max_retries, backoff_base, ...).
    """

    name = "imgtags"

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, client: httpx.Client | None = None,
                 stats: HttpStats | None = None, **http_settings: Any):
        if not api_key:
            raise AuthenticationFailed("no ImgTags API key: set IMGTAGS_API_KEY")
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/analyze"
        self._own_client = client is None
        if client is None:
            stats = stats or HttpStats()
            client = make_client(**{"service": "ImgTags", **http_settings}, stats=stats)
        self.client = client
        self.stats = stats or stats_of(client) or HttpStats()

    def __repr__(self) -> str:
        return f"<ImgTagsAnalyzer {self.endpoint}>"  # never the key

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be stored or printed, even when a server echoes it back."""
        return (self._key,)

    def stop(self, reason: Exception) -> None:
        """Stop every request of this analyzer from any thread (e.g. Interrupted on SIGTERM):
        waits end at once and raise `reason`; requests on the wire end within timeout_seconds."""
        transport = transport_of(self.client)
        if transport:
            transport.stop(reason)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> ImgTagsAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyze(self, image: UploadImage) -> Analysis:
        """Upload the bytes; refuses locally what the server would refuse, so it never sees it."""
        mime = image.mime.split(";")[0].strip().lower()
        if mime not in SUPPORTED_MIMES:
            raise AnalysisFailed(f"{image.filename}: ImgTags accepts JPEG, PNG, GIF and WebP, not {image.mime!r}",
                                 permanent=True)
        if not image.data:
            raise AnalysisFailed(f"{image.filename}: the upload is empty", permanent=True)
        if len(image.data) > MAX_UPLOAD_BYTES:
            raise AnalysisFailed(f"{image.filename}: {len(image.data):,} bytes is over ImgTags' "
                                 f"{MAX_UPLOAD_BYTES:,}-byte upload limit", permanent=True)
        return self._post(files={"image": (image.filename, image.data, mime)})

    def analyze_url(self, url: str) -> Analysis:
        """Let ImgTags fetch the picture itself; the URL is checked here first."""
        if len(url) > MAX_URL_CHARS:
            raise AnalysisFailed(f"the image URL is {len(url)} characters; ImgTags accepts at most {MAX_URL_CHARS}",
                                 permanent=True)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise AnalysisFailed(f"not an http(s) URL: {url[:200]!r}", permanent=True)
        return self._post(json={"url": url})

    def _post(self, **content: Any) -> Analysis:
        """Send one request. A fault on the service's side spends no attempt; a 2xx we could
        not use spends one (it may have been charged, so max_attempts bounds the cost).
        QuotaExhausted and ServiceDown (the transport's StageStopped) pass through as they are."""
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        try:
            response = self.client.post(self.endpoint, headers=headers, **content)
        except UnreadableAnswer as exc:
            raise AnalysisFailed(self._unreadable_message(exc), status=exc.status) from None
        except httpx.TransportError as exc:
            raise AnalysisFailed(self._transport_message(exc), spends_attempt=False) from None
        return self._answer(response)

    def _deadline(self) -> float:
        transport = transport_of(self.client)
        return transport.timeout if transport else self.client.timeout.read

    def _unreadable_message(self, exc: UnreadableAnswer) -> str:
        if exc.reason == "too large":
            transport = transport_of(self.client)
            cap = f" {transport.max_answer_bytes:,}-byte" if transport else ""
            return (f"ImgTags answered HTTP {exc.status} with a body over the{cap} cap "
                    "(analysis.max_answer_bytes); the connection was dropped")
        if exc.reason == "too slow":
            return (f"ImgTags answered HTTP {exc.status} but the body did not arrive within "
                    f"{self._deadline():g} s ({exc.bytes_read:,} bytes came); not re-sent")
        return f"ImgTags answered HTTP {exc.status} but the body broke off after {exc.bytes_read:,} bytes; not re-sent"

    def _transport_message(self, exc: httpx.TransportError) -> str:
        timeout = self.client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"cannot connect to {self.endpoint}: no answer within {timeout.connect:g} s"
        if isinstance(exc, httpx.TimeoutException):
            return f"ImgTags did not answer within {self._deadline():g} s ({self.endpoint})"
        if isinstance(exc, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
            return f"cannot connect to {self.endpoint}: {reason}"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"ImgTags closed the connection without an answer ({self.endpoint})"
        return f"talking to {self.endpoint} failed: {type(exc).__name__}"

    def _answer(self, response: httpx.Response) -> Analysis:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        except RecursionError:  # Python's json gives up on very deep nesting
            raise AnalysisFailed(f"ImgTags answered HTTP {status} with JSON nested too deeply to read",
                                 status=status) from None
        if status in (401, 403):
            raise AuthenticationFailed(f"ImgTags refused the API key (HTTP {status}): check IMGTAGS_API_KEY")
        if 200 <= status < 300:  # never re-sent; a failure here is this photo's and spends an attempt
            if not isinstance(body, dict):
                snippet = self._said(response.text, 80)
                raise AnalysisFailed(f"ImgTags answered HTTP {status} with a body that is not a JSON object: {snippet!r}",
                                     status=status)
            if body.get("success") is not True or not isinstance(body.get("data"), dict):
                why = self._said(_server_message(body) or "success is not true or there is no data")
                raise AnalysisFailed(f"ImgTags answered HTTP {status} without an analysis: {why}", status=status)
            return parse_answer(body)
        message = self._said(_server_message(body) or self._describe_body(response))
        if status == 429:  # the transport waited as long as it may: not this photo's fault
            raise AnalysisFailed(f"ImgTags kept answering 429 (rate limit): {message}", status=status,
                                 spends_attempt=False)
        if status in PERMANENT_STATUSES:
            raise AnalysisFailed(f"ImgTags rejected the image (HTTP {status}): {message}", permanent=True, status=status)
        if status >= 500:
            raise AnalysisFailed(f"ImgTags failed (HTTP {status}): {message}", status=status, spends_attempt=False)
        # 404, 405, 409, ...: a wrong base_url or a service change, not something this photo did
        raise AnalysisFailed(f"ImgTags answered HTTP {status} at {self.endpoint}: {message}", status=status,
                             spends_attempt=False)

    def _said(self, text: str, limit: int = 500) -> str:
        """A server's words as one storable line, our key redacted if it echoes it."""
        return clean_text(" ".join(clean_text(text, limit * 4, self.secrets).split()), limit)

    def _describe_body(self, response: httpx.Response) -> str:
        ctype = self._said(response.headers.get("content-type", "no content type").split(";")[0], 60)
        return f"a {len(response.content)}-byte {ctype} body, not the JSON the contract promises"
