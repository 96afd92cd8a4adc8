"""A real loopback ImgTags server that speaks the API contract, and a hostile one on request.

In tests: `with serve_imgtags(key="testkey", latency=0.1) as server: ... server.base_url`.
As a script: `python tests/imgtags_server.py --port 8765 --key testkey --latency 1.2 --rate-limit 60`
(add `--mode NAME` to answer every request in one of the modes below).

Answer modes, by name. `server.mode = NAME` applies to every request (None: honest answers);
`server.fail_next.append(NAME)` (or a `Canned`) to the next request only, before `mode`.
- outage (before the key is checked): "500", "503-html" (an HTML page), "hang" (no answer for
  `hang_seconds`, then hang up), "close" (hang up at once), "echo-key-500" (a 500 whose
  message quotes the caller's key); a refused connection: `refused_base_url()`.
- refusals: "401", "403", "422", "malformed-json" (a 200 cut mid-JSON), "429" (reset in 1 s).
- quota (429s, before the key is checked): "quota-daily" (ISO reset at the next UTC midnight,
  type "daily"), "reset-epoch" (numeric reset, epoch seconds, `reset_in` from now),
  "retry-after-nan", "retry-after-negative", "retry-after-inf", "retry-after-huge" (10**12 s),
  "retry-after-date" (an HTTP date `reset_in` from now); those carry no body `reset`.
- content (after validation; each a complete, charged analysis, so `Recorded.paid` is True):
  "surrogates", "control-chars", "markup", "huge-numbers", "special-numbers",
  "negative-numbers", "many-tags", "huge-description", "long-tags", "echo-key", and
  "deep-nesting" (an ignored field nested 100,000 deep: Python cannot parse it, so not paid).
  See tests/hostile_answers.py.
- body (after validation; a 200 analysis delivered badly, never whole, so not paid; count
  2xx re-sends to see a double charge): "huge-body" (`huge_body_bytes`, 50 MB), "endless-body"
  (chunked, until the client lets go or `endless_seconds`), "trickle" (one byte every
  `trickle_interval` seconds), "short-body" (Content-Length 100 more than is sent, then closed).
Every loop is bounded in bytes and time and ends when the server stops.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from hostile_answers import CONTENT_MODES, QUOTA_MODES, iso, quota_answer, rate_limited

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
ECHO_KEY_500 = "echo-key-500"
BODY_MODES = ("huge-body", "endless-body", "trickle", "short-body")
AFTER_VALIDATION = (*CONTENT_MODES, *BODY_MODES)
MODES = (FAIL_500, FAIL_503_HTML, FAIL_MALFORMED, FAIL_422, FAIL_401, FAIL_403, FAIL_429, FAIL_HANG, FAIL_CLOSE,
         ECHO_KEY_500, *QUOTA_MODES, *AFTER_VALIDATION)


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
    mode: str | None = None  # the answer mode this request got, if any


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


class ImgTagsServer(ThreadingHTTPServer):
    """The server plus its switches; change a switch at any time, it applies to the next request."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, key: str = "testkey", latency: float = 0.0,
                 rate_limit: int | None = None, rate_window: float = 60.0, hang_seconds: float = 30.0,
                 max_bytes: int = MAX_BYTES, mode: str | None = None):
        super().__init__((host, port), _Handler)
        self.key, self.latency, self.hang_seconds, self.max_bytes = key, latency, hang_seconds, max_bytes
        self.mode = mode  # an answer mode for every request (see the module docstring), or None
        self.reset_in = 1.0  # seconds to the reset of "reset-epoch" and "retry-after-date"
        self.trickle_interval = 1.0  # seconds between the bytes of "trickle"
        self.huge_body_bytes = 50_000_000
        self.endless_seconds = 60.0  # "endless-body" gives up after this long
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.fail_next: deque[str | Canned] = deque()  # deque appends/pops are thread-safe
        self.requests = RequestLog()
        self.rate_limited = 0  # 429s answered because of `rate_limit` (not canned ones)
        self.stopping = threading.Event()  # wakes sleeping handlers at shutdown
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) before we answered is expected here, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/api/v1"

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

    def _send(self, status: int, body: Any, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        self.record.status = status  # before the client can see the answer
        self.record.paid = status == 200 and _is_analysis(data)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
        if kind == ECHO_KEY_500:
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            return self._send(500, {"success": False, "error": {"code": "ANALYSIS_FAILED",
                                                                "message": f"Key {key} failed: Bearer {key}"}})
        if kind in QUOTA_MODES:
            body, headers = quota_answer(kind, self.server.reset_in)
            return self._send(429, body, headers=headers)
        if kind not in (FAIL_HANG, FAIL_CLOSE):
            return self._send(500, {"message": f"unknown test mode {kind!r}"})
        if kind == FAIL_HANG:
            self.server.stopping.wait(self.server.hang_seconds)
        self.close_connection = True  # FAIL_CLOSE, and a hang that ends: hang up without a word

    def _rate_limited(self, reset_in: float) -> None:
        self._send(429, rate_limited(iso(time.time() + reset_in), "minute", self.server.rate_limit or 60))

    def _write(self, data: bytes) -> bool:
        """Write, False once the client has gone (it let go: that is the point of these modes)."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _deliver_badly(self, kind: str, answer: dict) -> None:
        """A 200 analysis that never arrives whole; not paid. Every loop is bounded."""
        srv = self.server
        self.record.status = 200
        data = json.dumps(answer).encode()
        if kind == "huge-body":
            pad = srv.huge_body_bytes - (len(data) - 1) - len(b', "padding": ""}')
            data = data[:-1] + b', "padding": "' + b"x" * max(pad, 0) + b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if kind == "endless-body":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece, until = b"x" * 65536, time.monotonic() + srv.endless_seconds
            ok = self._write(b"%x\r\n%s\r\n" % (len(data) - 1, data[:-1]))
            while ok and not srv.stopping.is_set() and time.monotonic() < until:
                ok = self._write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(data) + (100 if kind == "short-body" else 0)))
        self.end_headers()
        if kind == "trickle":
            for i in range(len(data)):
                if not self._write(data[i:i + 1]) or srv.stopping.wait(srv.trickle_interval):
                    break
        else:
            for start in range(0, len(data), 1_000_000):
                if not self._write(data[start:start + 1_000_000]) or srv.stopping.is_set():
                    break
        self.close_connection = True

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
            kind = srv.mode
        self.record.mode = kind if isinstance(kind, str) else None
        if kind is not None and kind not in AFTER_VALIDATION:
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
        answer = analysis_for(data, int(srv.latency * 1000) + 40 + len(data) // 100_000)
        if kind in CONTENT_MODES:
            return self._send(200, CONTENT_MODES[kind](answer, srv.key))
        if kind in BODY_MODES:
            return self._deliver_badly(kind, answer)
        self._send(200, answer)

    def do_GET(self) -> None:
        self.record = Recorded(time.monotonic(), "GET", self.path, {k.lower(): v for k, v in self.headers.items()})
        self.server.requests.append(self.record)
        self._send(405, {"message": "The GET method is not supported for this route."})


def refused_base_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"


@contextmanager
def serve_imgtags(**switches: Any) -> Iterator[ImgTagsServer]:
    """Start the server on 127.0.0.1 (a free port) in a background thread; stop it afterwards."""
    server = ImgTagsServer(**switches)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--key", default="testkey", help="the API key clients must send as a Bearer token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to think before each answer")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests allowed per window (default: no limit)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="window length in seconds")
    parser.add_argument("--mode", choices=MODES, default=None, help="answer every request in this mode (see above)")
    args = parser.parse_args()
    server = ImgTagsServer(args.host, args.port, key=args.key, latency=args.latency,
                           rate_limit=args.rate_limit, rate_window=args.rate_window, mode=args.mode)
    print(f"ImgTags test server on {server.base_url} (key {args.key!r}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()


if __name__ == "__main__":
    main()
