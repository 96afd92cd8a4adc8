"""A real loopback ImgTags server that speaks the API contract, for tests, benchmarks and humans.

In tests: `with serve_imgtags(key="testkey", latency=0.1) as server: ... server.base_url`.
As a script: `python tests/imgtags_server.py --port 8765 --key testkey --latency 1.2 --rate-limit 60`.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import math
import struct
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

MAX_BYTES = 10_000_000
SUPPORTED = ("image/jpeg", "image/png", "image/gif", "image/webp")
WORDS = ("nature", "city", "portrait", "animal", "food", "mountain", "forest", "street", "family",
         "flower", "architecture", "night", "snow", "river", "car", "dog", "cat", "garden", "sky", "people")
OBJECTS = ("tree", "person", "building", "cloud", "water", "grass", "window", "table", "road", "rock")
PALETTE = ("#FF6B35", "#004E89", "#1A1A2E", "#2E7D32", "#F5F5F5", "#8D6E63", "#FFD54F", "#37474F")
LIKELIHOODS = ("VERY_UNLIKELY", "UNLIKELY", "POSSIBLE")

# Canned failures for `fail_next`: the next request gets one of these instead of an answer.
FAIL_500, FAIL_503_HTML, FAIL_MALFORMED, FAIL_422 = "500", "503-html", "malformed-json", "422"
FAIL_401, FAIL_403, FAIL_429, FAIL_HANG, FAIL_CLOSE = "401", "403", "429", "hang", "close"


@dataclass
class Canned:
    """Any answer at all, for `fail_next` (e.g. a 200 with a partial `data`)."""

    status: int
    body: Any  # dict/list → JSON, str/bytes → sent as is
    content_type: str = "application/json"


@dataclass
class Recorded:
    """What the server saw of one request, and what it answered."""

    at: float  # time.monotonic() on arrival, before anything else
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # multipart: name → filename/content_type/size/sha256
    json: Any = None
    status: int | None = None  # None: no answer (hang, closed connection)
    paid: bool = False  # a complete 200 analysis went out: the client was charged for it


class RequestLog:
    """A thread-safe list of `Recorded`; reading gives a snapshot."""

    def __init__(self) -> None:
        self._items: list[Recorded] = []
        self._lock = threading.Lock()

    def append(self, item: Recorded) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self.snapshot())

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.snapshot())

    def __getitem__(self, index: int) -> Recorded:
        return self.snapshot()[index]


def _iso(wall: float) -> str:
    """ISO-8601 UTC with milliseconds, rounded up so a client waiting until then is never early."""
    wall = math.ceil(wall * 1000) / 1000
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_analysis(data: bytes) -> bool:
    """Whether a 200 body is an answer the contract charges for (success and a data object)."""
    try:
        body = json.loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("success") is True and isinstance(body.get("data"), dict)


def parse_multipart(content_type: str, body: bytes) -> dict[str, dict[str, Any]]:
    """Split multipart/form-data by its boundary; headers parsed by `email`, not the removed `cgi`."""
    header = email.parser.Parser(policy=email.policy.HTTP).parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = header.get_param("boundary")
    if not boundary:
        raise ValueError("no boundary")
    fields: dict[str, dict[str, Any]] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("part without headers")
        content = content.removesuffix(b"\r\n")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + b"\r\n\r\n")
        name = msg.get_param("name", header="content-disposition")
        fields[name] = {"filename": msg.get_filename(), "content_type": msg.get("content-type"),
                        "size": len(content), "sha256": hashlib.sha256(content).hexdigest(), "data": content}
    return fields


def _orientation(data: bytes, digest: bytes) -> str:
    """Read width/height from a PNG, GIF or JPEG header; other bytes get one from the hash."""
    size = None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        size = struct.unpack(">II", data[16:24])
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        size = struct.unpack("<HH", data[6:10])
    elif data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                size = (w, h)
                break
            i += 2 + length
    if size is None:
        return ("landscape", "portrait", "square")[digest[9] % 3]
    w, h = size
    return "square" if w == h else "landscape" if w > h else "portrait"


def analysis_for(data: bytes, processing_ms: int) -> dict[str, Any]:
    """A deterministic, contract-shaped answer: same bytes, same tags. Bytes containing
    b"sunset" get the contract's example tags, so a test can ask for them on purpose."""
    d = hashlib.sha256(data).digest()
    tags = list(dict.fromkeys(WORDS[b % len(WORDS)] for b in d[:4]))
    if b"sunset" in data:
        tags = ["sunset", "beach", "ocean"] + [t for t in tags if t not in ("sunset", "beach", "ocean")]
    objects = list(dict.fromkeys(OBJECTS[b % len(OBJECTS)] for b in d[4:7]))
    palette = [PALETTE[b % len(PALETTE)] for b in d[7:10]]
    return {
        "success": True,
        "data": {
            "tags": tags,
            "description": f"A photo of {' and '.join(tags[:2])}",
            "objects": objects,
            "colors": {"dominant": palette[0], "palette": list(dict.fromkeys(palette))},
            "scene": ("outdoor", "indoor", "abstract")[d[10] % 3],
            "mood": ("peaceful", "joyful", "calm", "dramatic")[d[11] % 4],
            "safe_search": {"adult": LIKELIHOODS[d[12] % 2], "violence": LIKELIHOODS[d[13] % 3]},
            "dimensions": {"orientation": _orientation(data, d)},
        },
        "meta": {"tokens_used": 900 + len(data) // 2000 + d[14], "processing_time_ms": processing_ms},
    }


class LoopbackServer(ThreadingHTTPServer):
    """What the loopback test servers share: daemon handler threads, quiet hang-ups, `base_url`."""

    daemon_threads = True
    api_path = ""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) before we answered is expected here, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{self.api_path}"


class ImgTagsServer(LoopbackServer):
    """The server plus its switches; change a switch at any time, it applies to the next request."""

    api_path = "/api/v1"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, key: str = "testkey", latency: float = 0.0,
                 rate_limit: int | None = None, rate_window: float = 60.0, hang_seconds: float = 30.0,
                 max_bytes: int = MAX_BYTES):
        super().__init__((host, port), _Handler)
        self.key, self.latency, self.hang_seconds, self.max_bytes = key, latency, hang_seconds, max_bytes
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.fail_next: deque[str | Canned] = deque()  # deque appends/pops are thread-safe
        self.requests = RequestLog()
        self.rate_limited = 0  # 429s answered because of `rate_limit` (not canned ones)
        self.stopping = threading.Event()  # wakes sleeping handlers at shutdown
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def over_limit(self, now: float) -> float | None:
        """Sliding window over accepted requests: None if this one may pass, else seconds to reset."""
        if not self.rate_limit:
            return None
        with self._lock:
            while self._accepted and self._accepted[0] <= now - self.rate_window:
                self._accepted.popleft()
            if len(self._accepted) >= self.rate_limit:
                self.rate_limited += 1
                return self._accepted[0] + self.rate_window - now
            self._accepted.append(now)
            return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    server: ImgTagsServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests` instead
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        self.record.status = status  # before the client can see the answer
        self.record.paid = status == 200 and _is_analysis(data)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _canned(self, kind: str | Canned) -> None:
        if isinstance(kind, Canned):
            return self._send(kind.status, kind.body, kind.content_type)
        if kind == FAIL_500:
            return self._send(500, {"success": False, "error": {"code": "ANALYSIS_FAILED", "message": "Failed to fetch image from URL"}})
        if kind == FAIL_503_HTML:
            return self._send(503, "<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html")
        if kind == FAIL_MALFORMED:
            return self._send(200, '{"success": true, "data": {"tags": ["sun', "application/json")
        if kind == FAIL_422:
            return self._send(422, {"message": "The image field must be an image.", "errors": {"image": ["The image field must be an image."]}})
        if kind in (FAIL_401, FAIL_403):
            return self._send(int(kind), {"success": False, "error": {"code": "UNAUTHORIZED", "message": "Invalid API key."}})
        if kind == FAIL_429:
            return self._rate_limited(1.0)
        if kind == FAIL_HANG:
            self.server.stopping.wait(self.server.hang_seconds)
        self.close_connection = True  # FAIL_CLOSE, and a hang that ends: hang up without a word

    def _rate_limited(self, reset_in: float) -> None:
        self._send(429, {"success": False, "error": {
            "code": "RATE_LIMIT_EXCEEDED", "message": "Rate limit exceeded. Try again later.",
            "type": "minute", "limit": self.server.rate_limit or 60, "reset": _iso(time.time() + reset_in)}})

    def do_POST(self) -> None:
        srv = self.server
        self.record = Recorded(time.monotonic(), "POST", self.path, {k.lower(): v for k, v in self.headers.items()})
        srv.requests.append(self.record)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ctype, image, bad_body = self.headers.get("Content-Type", ""), None, False
        try:  # record what was sent before deciding anything
            if ctype.startswith("multipart/form-data"):
                self.record.fields = parse_multipart(ctype, body)
                blobs = {name: f.pop("data") for name, f in self.record.fields.items()}  # keep the log small
                image = self.record.fields.get("image")
            elif ctype.startswith("application/json"):
                self.record.json = json.loads(body)
        except ValueError:
            bad_body = True
        if self.path.rstrip("/") != "/api/v1/analyze":
            return self._send(404, {"message": "Not Found"})
        if (reset_in := srv.over_limit(self.record.at)) is not None:
            return self._rate_limited(reset_in)
        try:
            kind = srv.fail_next.popleft()
        except IndexError:
            kind = None
        if kind is not None:
            return self._canned(kind)
        if self.headers.get("Authorization") != f"Bearer {srv.key}":
            return self._send(401, {"success": False, "error": {"code": "UNAUTHORIZED", "message": "Invalid API key."}})
        if bad_body:
            return self._send(400, {"message": "Malformed request body."})
        url = self.record.json.get("url") if isinstance(self.record.json, dict) else None
        if image is None and not url:
            return self._send(422, {"message": "Either a URL or an image file is required.",
                                    "errors": {"url": ["The url field is required when image is not present."]}})
        if image is not None and image["size"] > srv.max_bytes:
            return self._send(422, {"message": "The image field must not be greater than 10240 kilobytes.",
                                    "errors": {"image": ["The image field must not be greater than 10240 kilobytes."]}})
        if image is not None and image["content_type"] not in SUPPORTED:
            return self._send(422, {"message": "The image field must be a file of type: jpeg, png, gif, webp.",
                                    "errors": {"image": ["The image field must be a file of type: jpeg, png, gif, webp."]}})
        if not isinstance(url, (str, type(None))) or (url and (len(url) > 2048 or not url.startswith(("http://", "https://")))):
            return self._send(422, {"message": "The url field must be a valid URL.",
                                    "errors": {"url": ["The url field must be a valid URL."]}})
        if srv.latency:
            srv.stopping.wait(srv.latency)
        data = blobs["image"] if image is not None else url.encode()
        self._send(200, analysis_for(data, int(srv.latency * 1000) + 40 + len(data) // 100_000))

    def do_GET(self) -> None:
        self.record = Recorded(time.monotonic(), "GET", self.path, {k.lower(): v for k, v in self.headers.items()})
        self.server.requests.append(self.record)
        self._send(405, {"message": "The GET method is not supported for this route."})


@contextmanager
def serving(server: Any) -> Iterator[Any]:
    """Run a loopback test server (one with a `stopping` event) in a background thread; stop it afterwards."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_until_interrupted(server: Any) -> None:
    """Serve in the foreground (a human trying it by hand) until Ctrl-C."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()


def serve_imgtags(**switches: Any):
    """Start the server on 127.0.0.1 (a free port) in a background thread; stop it afterwards."""
    return serving(ImgTagsServer(**switches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--key", default="testkey", help="the API key clients must send as a Bearer token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to think before each answer")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests allowed per window (default: no limit)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="window length in seconds")
    args = parser.parse_args()
    server = ImgTagsServer(args.host, args.port, key=args.key, latency=args.latency,
                           rate_limit=args.rate_limit, rate_window=args.rate_window)
    print(f"ImgTags test server on {server.base_url} (key {args.key!r}); Ctrl-C stops it", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
