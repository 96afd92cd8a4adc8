"""A real loopback server speaking POST /v1/chat/completions like a local vision model, for tests and humans.

Every answer is a mode: "good" (plain JSON), "fenced" (```json), "prose" (JSON inside sentences),
"untidy" (tags as one string, upper case, duplicates), "nojson", "echo-key" (the Authorization
header read back inside the analysis), "slow", or a failure ("400", "401", "404", "429", "500",
"quota", "no-vision"). `server.modes` (a deque) gives the next requests theirs; the rest get
`server.default`. `refuse=("response_format",)` answers 400 to any request carrying that field,
as servers without structured output do.

In tests: `with serve_openai(key=None) as server: ... server.base_url`.
As a script: `python tests/openai_server.py --port 11435 --mode prose` (base URL .../v1).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from imgtags_server import (LoopbackServer, Recorded, RequestLog, analysis_for, serve_until_interrupted,
                            serving)

ANALYSIS_MODES = ("good", "fenced", "prose", "untidy", "echo-key", "slow")
FAILURES = {
    "400": (400, "invalid image: could not decode the image data"),
    "401": (401, "Incorrect API key provided."),
    "404": (404, 'model "llava:7b" not found, try pulling it first'),
    "429": (429, "Rate limit reached for requests. Please try again in 1s."),
    "500": (500, "llama runner process has terminated: signal: killed"),
    "quota": (429, "You exceeded your current quota, please check your plan and billing details."),
    "no-vision": (400, "this model does not support images"),
}


def _error(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "api_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def content_for(mode: str, data: dict[str, Any], authorization: str) -> str:
    """What the model 'says' in each mode; `data` is a contract-shaped ImgTags data object."""
    text = json.dumps(data)
    if mode == "fenced":
        return f"Here is the analysis:\n```json\n{json.dumps(data, indent=2)}\n```\n"
    if mode == "prose":
        return f"Sure! Looking at the photo {{as you asked}}, I see this: {text} I hope that helps."
    if mode == "untidy":
        untidy = dict(data, tags=", ".join(["  Sunset ", "#Beach", "sunset", *(t.upper() for t in data["tags"])]),
                      safe_search={"adult": "very unlikely", "violence": "Possible"},
                      colors={"dominant": "ff6b35", "palette": ["#004e89", "navy blue"]})
        return json.dumps(untidy)
    if mode == "nojson":
        return "I'm sorry, but I can't make out what is in this picture."
    if mode == "echo-key":
        echoed = dict(data, description=f"your header was {authorization}", tags=[*data["tags"], authorization],
                      mood=authorization.lower())
        return json.dumps(echoed)
    return text


class OpenAIServer(LoopbackServer):
    """The server plus its switches; change one at any time, it applies to the next request."""

    api_path = "/v1"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, key: str | None = None, model: str = "llava:7b-test",
                 default: str = "good", latency: float = 0.0, slow_seconds: float = 3.0, refuse: tuple[str, ...] = ()):
        super().__init__((host, port), _Handler)
        self.key, self.model, self.default, self.latency, self.slow_seconds = key, model, default, latency, slow_seconds
        self.refuse = refuse
        self.modes: deque[str] = deque()
        self.requests = RequestLog()
        self.stopping = threading.Event()


def _image_of(body: Any) -> tuple[bytes | None, str | None]:
    """The image bytes and MIME type of the first image_url part that is a base64 data: URL."""
    try:
        for part in body["messages"][-1]["content"]:
            url = part["image_url"]["url"] if part.get("type") == "image_url" else None
            if url and url.startswith("data:") and ";base64," in url:
                head, data = url[5:].split(";base64,", 1)
                return base64.b64decode(data, validate=True), head
    except (KeyError, TypeError, IndexError, AttributeError, binascii.Error):
        pass
    return None, None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, paid: bool = False) -> None:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else str(body).encode()
        self.record.status, self.record.paid = status, paid
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        srv = self.server
        self.record = Recorded(time.monotonic(), "POST", self.path, {k.lower(): v for k, v in self.headers.items()})
        srv.requests.append(self.record)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(400, _error("could not parse the JSON body", 400))
        image, mime = _image_of(body)
        if image is not None:
            self.record.fields = {"image": {"content_type": mime, "size": len(image), "data": image,
                                            "sha256": hashlib.sha256(image).hexdigest()}}
            parts = body["messages"][-1]["content"]
            body["messages"][-1]["content"] = [p for p in parts if p.get("type") != "image_url"]
        self.record.json = body  # without the image: the log stays small
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": "404 page not found"})
        mode = srv.modes.popleft() if srv.modes else srv.default
        authorization = self.headers.get("Authorization", "")
        if mode in FAILURES or (srv.key is not None and authorization != f"Bearer {srv.key}"):
            status, message = FAILURES.get(mode, FAILURES["401"])
            if status == 401:  # echoes what it got, lower-cased: a leak an exact-case scrub would miss
                message = f"{message} You sent: {authorization.lower() or 'nothing'}"
            return self._send(status, _error(message, status), {"Retry-After": "1"} if status == 429 else None)
        for name in srv.refuse:
            if name in body:
                return self._send(400, _error(f"Invalid parameter: '{name}' is not supported with this model.",
                                              400, name))
        if image is None or body.get("model") != srv.model:
            return self._send(400, _error("a model and one image_url part with a base64 data: URL are required", 400))
        if mode == "slow" or srv.latency:
            srv.stopping.wait(srv.slow_seconds if mode == "slow" else srv.latency)
        content = content_for(mode, analysis_for(image, 40)["data"], authorization)
        completion = len(content) // 4
        self._send(200, {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                         "model": srv.model, "system_fingerprint": "fp_test",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 600, "completion_tokens": completion,
                                   "total_tokens": 600 + completion}},
                   paid=mode in ANALYSIS_MODES)


def serve_openai(**switches: Any):
    """Start the server on 127.0.0.1 (a free port) in a background thread; stop it afterwards."""
    return serving(OpenAIServer(**switches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    parser.add_argument("--key", default=None, help="require this Bearer key (default: none, like Ollama)")
    parser.add_argument("--model", default="llava:7b-test", help="the only model name the server knows")
    parser.add_argument("--mode", default="good", choices=[*ANALYSIS_MODES, "nojson", *FAILURES])
    parser.add_argument("--refuse", action="append", default=[], help="answer 400 to requests carrying this field")
    args = parser.parse_args()
    server = OpenAIServer(args.host, args.port, key=args.key, model=args.model, default=args.mode,
                          refuse=tuple(args.refuse))
    print(f"OpenAI-compatible test server on {server.base_url} (model {args.model!r}); Ctrl-C stops it", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
