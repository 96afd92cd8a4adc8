"""A real loopback HTTP proxy for tests: CONNECT tunnels and forwarded requests, counted and recorded.

`with serve_proxy() as proxy: ... proxy.url` ("http://127.0.0.1:PORT"). It records each
CONNECT target (`proxy.tunnels`), each forwarded request line (`proxy.forwarded`) and every
byte a client sent it (`proxy.received`), so a test can check what the proxy could read.
`proxy.credentials = ("user", "pass")` makes it answer 407 to anything without them;
`proxy.refuse = 502` refuses every request with that status (an upstream that is down).
One request per forwarded connection (both sides are told `Connection: close`).
`over_tls(server, folder)` turns a loopback ImgTags server into an https origin for tunnels.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import select
import socket
import socketserver
import ssl
import threading
from contextlib import AbstractContextManager
from pathlib import Path

from imgtags_server import serving

HEAD_LIMIT = 64 * 1024


class ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tunnels: list[str] = []  # "host:port" of each CONNECT let through
        self.forwarded: list[str] = []  # the request line of each forwarded request
        self.refused: list[str] = []  # request lines answered 407 or `refuse`
        self.auth_seen: list[str] = []  # Proxy-Authorization values received
        self.received = bytearray()  # everything clients sent, tunnelled bytes included
        self.credentials: tuple[str, str] | None = None
        self.refuse: int | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def seen(self, data: bytes) -> None:
        with self.lock:
            self.received.extend(data)


def _read_head(sock: socket.socket, server: ProxyServer) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
        chunk = sock.recv(65536)
        if not chunk:
            break
        server.seen(chunk)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(client: socket.socket, upstream: socket.socket, server: ProxyServer, close_reply: bool = False) -> None:
    """Copy bytes both ways until either side closes (recording what the client sends).

    `close_reply`: the first reply head gets `Connection: close`, so the client does not reuse it.
    """
    pending = b""
    sockets = [client, upstream]
    while not server.stopping.is_set():
        readable, _, _ = select.select(sockets, [], [], 0.1)
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                if pending:
                    client.sendall(pending)
                return
            if sock is client:
                server.seen(data)
                upstream.sendall(data)
            elif close_reply:
                pending += data
                if b"\r\n\r\n" in pending:
                    head, _, rest = pending.partition(b"\r\n\r\n")
                    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
                    client.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + rest)
                    pending, close_reply = b"", False
            else:
                client.sendall(data)


class _Handler(socketserver.BaseRequestHandler):
    server: ProxyServer

    def handle(self) -> None:
        head, rest = _read_head(self.request, self.server)
        if not head:
            return
        lines = head.split(b"\r\n")
        request_line = lines[0].decode("latin-1")
        method, target, _version = (request_line.split(" ") + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.decode("latin-1").partition(":")
                                                                 for line in lines[1:])}
        if "proxy-authorization" in headers:
            self.server.auth_seen.append(headers["proxy-authorization"])
        status = self._refusal(headers)
        if status:
            self.server.refused.append(request_line)
            self.request.sendall(b"HTTP/1.1 %d Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status)
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.server.tunnels.append(target)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with upstream:
                upstream.sendall(rest)
                _pipe(self.request, upstream, self.server)
            return
        # absolute-form: "POST http://host:port/path HTTP/1.1" goes out as "POST /path HTTP/1.1"
        authority, _, path = target.partition("://")[2].partition("/")
        host, _, port = authority.rpartition(":")
        self.server.forwarded.append(request_line)
        kept = [line for line in lines[1:] if not line.lower().startswith((b"connection:", b"proxy-"))]
        upstream = socket.create_connection((host, int(port or 80)), timeout=10)
        with upstream:
            first = f"{method} /{path} {_version}".encode("latin-1")
            upstream.sendall(b"\r\n".join([first, *kept, b"Connection: close"]) + b"\r\n\r\n" + rest)
            _pipe(self.request, upstream, self.server, close_reply=True)

    def _refusal(self, headers: dict[str, str]) -> int | None:
        if self.server.refuse:
            return self.server.refuse
        if self.server.credentials:
            expected = "Basic " + base64.b64encode(":".join(self.server.credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                return 407
        return None


def self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def over_tls(server: socketserver.TCPServer, folder: Path) -> tuple[str, str]:
    """Make a loopback ImgTags server (not yet serving a request) speak TLS with a new
    self-signed certificate; (the certificate file for $SSL_CERT_FILE, the https base URL)."""
    cert_file, key_file = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return cert_file, f"https://127.0.0.1:{server.server_address[1]}/api/v1"


def serve_proxy() -> AbstractContextManager[ProxyServer]:
    """The proxy on 127.0.0.1 (a free port), as a context manager that serves in a background thread."""
    return serving(ProxyServer())
