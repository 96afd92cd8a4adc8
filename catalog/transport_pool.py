"""The innermost transport: httpcore connection pools, built with public API, under a whole-request deadline.

Every pool (the direct one and one per proxy) gets httpcore's sync network backend wrapped
in `DeadlineBackend`, so each connect, TLS handshake, read and write keeps to the deadline
(catalog/deadline.py). Proxies come from `ProxyRoutes` (catalog/proxies.py): a plain http
origin is forwarded, an https origin always tunnelled with CONNECT. HTTP/1.1 only; TLS is
verified as httpx does (certifi, or $SSL_CERT_FILE / $SSL_CERT_DIR).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from typing import Iterator

import httpcore
import httpx

from catalog.deadline import Deadline, DeadlineBackend
from catalog.proxies import Proxy, ProxyRoutes

# httpcore's exceptions and the httpx ones a caller expects, most specific first.
ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Re-raise an httpcore exception as its httpx counterpart, carrying the request."""
    try:
        yield
    except Exception as exc:
        for core, mapped in ERRORS:
            if isinstance(exc, core):
                raise mapped(_message(exc), request=request) from exc
        raise


def _message(exc: Exception) -> str:
    """httpcore's message; for a refused CONNECT ("407 Proxy Authentication Required") only the
    status, since the rest is the proxy's own words and ends up in logs and stored failures."""
    if not isinstance(exc, httpcore.ProxyError):
        return str(exc)
    code = str(exc)[:3]
    return f"the proxy refused the connection (HTTP {code})" if code.isdigit() else "the proxy refused the connection"


class PoolStream(httpx.SyncByteStream):
    """An httpcore response body as httpx reads it: same bytes, httpx exceptions."""

    def __init__(self, stream: httpcore.Response, request: httpx.Request):
        self.stream, self.request = stream, request

    def __iter__(self) -> Iterator[bytes]:
        with httpx_errors(self.request):
            yield from self.stream.iter_stream()

    def close(self) -> None:
        with httpx_errors(self.request):
            self.stream.close()


class PoolTransport(httpx.BaseTransport):
    """httpx requests over httpcore pools whose every socket operation keeps to `deadline`.

    `routes`: which proxy carries which request (None: always direct). Safe to share
    between threads, like the pools it holds.
    """

    def __init__(self, deadline: Deadline, routes: ProxyRoutes | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, limits: httpx.Limits | None = None):
        self.routes = routes or ProxyRoutes()
        self.ssl_context = ssl_context or httpx.create_ssl_context()
        self.limits = limits or httpx.Limits()
        self.backend = DeadlineBackend(httpcore.SyncBackend(), deadline)
        self.direct = httpcore.ConnectionPool(ssl_context=self.ssl_context, network_backend=self.backend,
                                              **self._pool_limits())
        self._proxied: dict[Proxy, httpcore.HTTPProxy] = {}
        self._lock = threading.Lock()

    def _pool_limits(self) -> dict[str, int | float | None]:
        return dict(max_connections=self.limits.max_connections,
                    max_keepalive_connections=self.limits.max_keepalive_connections,
                    keepalive_expiry=self.limits.keepalive_expiry)

    def pool_for(self, url: httpx.URL) -> httpcore.ConnectionPool:
        """The direct pool, or the pool of the proxy that `routes` names for `url` (made once)."""
        proxy = self.routes.proxy_for(str(url))
        if proxy is None:
            return self.direct
        with self._lock:
            if proxy not in self._proxied:
                self._proxied[proxy] = httpcore.HTTPProxy(
                    proxy_url=httpcore.URL(scheme=proxy.scheme.encode(), host=proxy.host.encode("idna"),
                                           port=proxy.port, target=b"/"),
                    proxy_auth=(proxy.username, proxy.password) if proxy.username or proxy.password else None,
                    ssl_context=self.ssl_context,
                    proxy_ssl_context=self.ssl_context if proxy.scheme == "https" else None,
                    network_backend=self.backend, **self._pool_limits())
            return self._proxied[proxy]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("PoolTransport sends synchronous requests only")
        pool = self.pool_for(request.url)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with httpx_errors(request):
            response = pool.handle_request(core)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=PoolStream(response, request), extensions=response.extensions)

    def close(self) -> None:
        with self._lock:
            pools = [self.direct, *self._proxied.values()]
            self._proxied.clear()
        for pool in pools:
            pool.close()
