"""The ImgTags back-end: build the request, turn every answer into an `Analysis` or a clear error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from catalog.analyzers import LIKELIHOODS, Analysis, UploadImage
from catalog.analyzers.storable import clean_int, clean_text
from catalog.analyzers.client import HttpAnalyzer
from catalog.errors import AnalysisFailed, AuthenticationFailed, ConfigError
from catalog.http import HttpStats, UnreadableAnswer

if TYPE_CHECKING:
    from catalog.settings import Config

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


def create(config: Config) -> ImgTagsAnalyzer:
    """The registry's factory: the key from the environment, pace and retries from [analysis]."""
    key = config.api_key()
    if not key:
        raise ConfigError(f"analyzer imgtags needs an API key in ${config.imgtags.api_key_env}")
    a = config.analysis
    return ImgTagsAnalyzer(api_key=key, base_url=config.imgtags_base_url(), timeout=a.timeout_seconds,
                           requests_per_minute=a.requests_per_minute, max_retries=a.max_retries,
                           max_answer_bytes=a.max_answer_bytes, max_rate_limit_wait=a.max_rate_limit_wait_seconds,
                           breaker_failures=a.breaker_failures, proxies=config.proxies)


class ImgTagsAnalyzer(HttpAnalyzer):
    """ImgTags over HTTP (see `HttpAnalyzer` for the client, the key, stopping and closing)."""

    name = "imgtags"
    service = "ImgTags"

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, client: httpx.Client | None = None,
                 stats: HttpStats | None = None, **http_settings: Any):
        if not api_key:
            raise AuthenticationFailed("no ImgTags API key: set IMGTAGS_API_KEY")
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/analyze"
        self._connect(api_key, client, stats, http_settings)

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
