"""Any OpenAI-compatible vision server (Ollama, llama.cpp, vLLM, LM Studio, OpenAI): one chat request per photo."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from catalog import config_checks
from catalog.analyzers import LIKELIHOODS, Analysis, UploadImage
from catalog.analyzers.client import HttpAnalyzer
from catalog.analyzers.storable import REDACTED, clean_int, clean_text
from catalog.analyzers.untidy import find_json, to_analysis
from catalog.errors import AnalysisFailed, AuthenticationFailed, QuotaExhausted
from catalog.http import HttpStats, UnreadableAnswer

if TYPE_CHECKING:
    from catalog.settings import Config

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"  # Ollama on this machine
NO_LIMIT_RPM = 1_000_000  # make_client always paces; "0 = no limit" is a pace no server reaches
PERMANENT_STATUSES = (400, 413, 415, 422)  # this image, sent like this, will never be accepted
# Request fields a server may refuse; each is dropped for the rest of the run the first time.
OPTIONAL_FIELDS = {"response_format": ("response_format", "json_schema", "structured output", "guided"),
                   "temperature": ("temperature",)}
NO_VISION = ("does not support image", "not support images", "image input is not supported",
             "missing data required for image input", "mmproj", "not a multimodal model")

PROMPT = """Look at this photo and describe it for a searchable photo catalogue.
Answer with one JSON object and nothing else, in exactly this shape:
{"tags": ["5 to 15 lower-case keywords: subjects, place, activity, season, style"],
 "description": "one sentence saying what the photo shows",
 "objects": ["each visible object, lower-case"],
 "colors": {"dominant": "#RRGGBB", "palette": ["up to 5 colours as #RRGGBB"]},
 "scene": "indoor, outdoor or abstract",
 "mood": "one word, e.g. peaceful, joyful, dramatic",
 "safe_search": {"adult": "LEVEL", "violence": "LEVEL"},
 "dimensions": {"orientation": "landscape, portrait or square"}}
LEVEL is one of VERY_UNLIKELY, UNLIKELY, POSSIBLE, LIKELY, VERY_LIKELY.
Name only what you can see; never guess names, places or dates."""


def _object(**properties: Any) -> dict[str, Any]:
    """A JSON-schema object in the subset OpenAI's strict mode takes: all required, nothing else."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


_WORDS = {"type": "array", "items": {"type": "string"}}
_LEVEL = {"type": "string", "enum": list(LIKELIHOODS[1:])}
SCHEMA = _object(tags=_WORDS, description={"type": "string"}, objects=_WORDS,
                 colors=_object(dominant={"type": "string"}, palette=_WORDS),
                 scene={"type": "string"}, mood={"type": "string"},
                 safe_search=_object(adult=_LEVEL, violence=_LEVEL),
                 dimensions=_object(orientation={"type": "string", "enum": ["landscape", "portrait", "square"]}))
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "image_analysis", "strict": True, "schema": SCHEMA}}


def create(config: Config) -> OpenAIAnalyzer:
    """The registry's factory: everything from [openai], retries from [analysis]."""
    o = config.openai
    return OpenAIAnalyzer(config.openai_model(), base_url=config.openai_base_url(), api_key=config.openai_api_key(),
                          key_env=o.api_key_env, prompt=o.prompt, timeout=o.timeout_seconds,
                          max_retries=config.analysis.max_retries,
                          requests_per_minute=o.requests_per_minute or NO_LIMIT_RPM,
                          max_answer_bytes=config.analysis.max_answer_bytes,
                          max_rate_limit_wait=config.analysis.max_rate_limit_wait_seconds,
                          breaker_failures=config.analysis.breaker_failures, proxies=config.proxies)


def _server_message(body: Any) -> str:
    """The human part of an error body: OpenAI's error.message, a bare error string, or FastAPI's detail."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    for value in (error.get("message") if isinstance(error, dict) else error, body.get("message"), body.get("detail")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _content(body: dict) -> tuple[str, str]:
    """The model's text (text parts joined) and why it stopped; a reasoning-only answer as a last resort."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not isinstance(content, str) or not content.strip():
        content = next((v for v in (message.get("refusal"), message.get("reasoning_content"), message.get("reasoning"))
                        if isinstance(v, str) and v.strip()), "")
    reason = choice.get("finish_reason")
    return content, reason if isinstance(reason, str) else ""


class OpenAIAnalyzer(HttpAnalyzer):
    """One chat completion per photo (see `HttpAnalyzer` for the client, the key and closing)."""

    name = "openai"

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, prompt: str = "",
                 client: httpx.Client | None = None, stats: HttpStats | None = None, *,
                 key_env: str = "OPENAI_API_KEY", **http_settings: Any):
        if not model:
            raise ValueError("OpenAIAnalyzer needs a model name")
        self.model, self.service, self.prompt = model, model, prompt or PROMPT
        self.key_hint = f"${key_env} (openai.api_key_env)" if key_env else "openai.api_key_env to the key's variable"
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"
        self._dropped: frozenset[str] = frozenset()  # optional fields this server refused; not sent again
        self._settled = False  # a first answer came back: the fields it took are known
        self._stop: str | None = None  # why the run must stop (key, model): no photo is sent after it
        self._first = threading.Lock()  # until then requests go one at a time, so a refusal costs one resend
        self._connect(api_key, client, stats, http_settings)
        self._warn_if_key_travels_in_clear()

    def _warn_if_key_travels_in_clear(self) -> None:
        parts = urlsplit(self.base_url)
        if self._key and parts.scheme == "http" and not config_checks.loopback(self.base_url):
            log.warning("the API key goes unencrypted (http://) to %s; if that server needs no key, "
                        'set openai.api_key_env = ""', parts.hostname or "")

    def analyze(self, image: UploadImage) -> Analysis:
        """Send the prepared upload as a data: URL and read the model's JSON, however untidy."""
        mime = image.mime.split(";")[0].strip().lower()
        if not image.data or not mime.startswith("image/"):
            raise AnalysisFailed(f"{image.filename}: nothing to send (an empty or non-image upload)", permanent=True)
        url = f"data:{mime};base64,{base64.b64encode(image.data).decode('ascii')}"
        started = time.perf_counter()
        if not self._settled:
            with self._first:
                response = self._send(url)
        else:
            response = self._send(url)
        try:
            body = self._body(response)
        except AuthenticationFailed as exc:
            self._stop = str(exc)
            raise
        content, finish = _content(body)
        data = find_json(content)
        if data is None:
            said = clean_text(" ".join(content.split()), 80, self.secrets)
            cut = " (cut off: finish_reason length)" if finish == "length" else ""
            raise AnalysisFailed(f"{self.model} answered without a JSON analysis{cut}: {said!r}; tried again on a "
                                 "later run", status=response.status_code)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = clean_int(usage.get("total_tokens")) or (
            clean_int(usage.get("prompt_tokens")) + clean_int(usage.get("completion_tokens")))
        model = body.get("model") if isinstance(body.get("model"), str) and body["model"].strip() else self.model
        return to_analysis(data, image=image.data, model=model, tokens=tokens,
                           elapsed_ms=round((time.perf_counter() - started) * 1000), raw=body)

    def _redact(self, body: dict) -> dict:
        """The answer without the key in any letter case (tags are lower-cased later, where the
        stage's exact-case scrub would miss a key the model echoed; messages quote the body)."""
        if not self.secrets:
            return body
        try:
            text = json.dumps(body)
        except RecursionError:
            raise AnalysisFailed(f"{self.model} answered with JSON nested too deeply to read", status=200) from None
        for secret in self.secrets:
            text = re.sub(re.escape(json.dumps(secret)[1:-1]), REDACTED, text, flags=re.IGNORECASE)
        return json.loads(text)

    def _send(self, image_url: str) -> httpx.Response:
        """POST, dropping for good any optional field the server refuses, and resending once."""
        while True:
            if self._stop:  # photos already queued behind the one that found out send nothing
                raise AuthenticationFailed(self._stop)
            response = self._post(image_url)
            refused = self._refused_field(response)
            if refused is None:
                self._settled = self._settled or response.is_success
                return response
            log.warning("%s does not take %s; sending without it for the rest of this run", self.base_url, refused)
            self._dropped = self._dropped | {refused}  # replaced whole: other threads may be reading it

    def _post(self, image_url: str) -> httpx.Response:
        body: dict[str, Any] = {"model": self.model, "stream": False, "temperature": 0,
                                "response_format": RESPONSE_FORMAT,
                                "messages": [{"role": "user", "content": [
                                    {"type": "text", "text": self.prompt},
                                    {"type": "image_url", "image_url": {"url": image_url}}]}]}
        for name in self._dropped:
            body.pop(name, None)
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            return self.client.post(self.endpoint, json=body, headers=headers)
        except UnreadableAnswer as exc:  # a 2xx that never arrived whole: this photo's, not re-sent
            raise AnalysisFailed(self._unreadable_message(exc), status=exc.status) from None
        except httpx.TransportError as exc:
            raise AnalysisFailed(self._transport_message(exc), spends_attempt=False) from None

    def _refused_field(self, response: httpx.Response) -> str | None:
        """The optional field a 400/422/5xx blames (by `param` or by name in the message), if any."""
        if response.status_code not in (400, 422) and response.status_code < 500:
            return None
        try:
            body = response.json()
        except (ValueError, RecursionError):
            return None
        error = body.get("error") if isinstance(body, dict) else None
        param = error.get("param") if isinstance(error, dict) else None
        text = f"{param or ''} {_server_message(body)}".lower()
        return next((name for name, words in OPTIONAL_FIELDS.items()
                     if name not in self._dropped and any(w in text for w in words)), None)

    def _body(self, response: httpx.Response) -> dict:
        """A 2xx answer's JSON object, or the error the status means for this photo and this run."""
        status = response.status_code
        try:
            body = response.json()
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict):
            body = self._redact(body)
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        message = clean_text(_server_message(body) or f"a {len(response.content)}-byte answer", 300, self.secrets)
        where = f"{self.base_url} ({self.model})"
        if status in (401, 403):
            if self._key:
                raise AuthenticationFailed(f"{where} refused the API key (HTTP {status}: {message}): "
                                           f"check {self.key_hint}")
            raise AuthenticationFailed(f"{where} wants an API key (HTTP {status}): set {self.key_hint}")
        # Only the user can fix these, and every photo would hit them: stop the run (exit 2), fail nothing.
        if status == 404:
            raise AuthenticationFailed(f"{where}: HTTP 404 ({message}); check openai.model (is it pulled?) "
                                       "and openai.base_url (it usually ends in /v1)")
        if any(words in message.lower() for words in NO_VISION):
            raise AuthenticationFailed(f"{where} cannot look at images ({message}): choose a vision model")
        if status == 429:
            if "quota" in message.lower():
                raise QuotaExhausted(f"{where}: the account's quota is used up (HTTP 429: {message})")
            raise AnalysisFailed(f"{where} kept answering 429 (rate limit): {message}", status=status,
                                 spends_attempt=False)
        if status in PERMANENT_STATUSES:
            raise AnalysisFailed(f"{where} rejected the image (HTTP {status}): {message}", permanent=True,
                                 status=status)
        if 200 <= status < 300 or status >= 500 or status == 408:
            raise AnalysisFailed(f"{where} failed (HTTP {status}): {message}; tried again later", status=None,
                                 spends_attempt=False)
        raise AnalysisFailed(f"{where} answered HTTP {status}: {message}", status=status)
