"""A whole-request deadline at the socket: every connect, read and write gets only the time left.

httpx's timeouts bound each socket operation, so a server trickling one byte a second
keeps a request open for ever. Here the transport sets a deadline for the attempt on its
own thread (all I/O of a sync request happens on the calling thread, whichever pooled
connection it uses), and the network backend shortens every operation to what is left.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

import httpcore

WRITE_PIECE = 64 * 1024  # uploads go out in pieces, so a slow reader cannot stretch one write


class Deadline(threading.local):
    """The current thread's deadline on `clock`, or None outside a request."""

    at: float | None = None

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The timeout to use now: the smaller of httpx's and the time left; `error` once none is left."""
        if self.at is None:
            return timeout
        left = self.at - self.clock()
        if left <= 0:
            raise error("the request deadline has passed")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline):
        self.inner, self.deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self.deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_PIECE):
            self.inner.write(buffer[start:start + WRITE_PIECE], self.deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self.inner.start_tls(ssl_context, server_hostname, self.deadline.left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps httpcore's own backend; install it with `install(transport, deadline)`."""

    def __init__(self, inner: httpcore.NetworkBackend, deadline: Deadline):
        self.inner, self.deadline = inner, deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self.inner.connect_tcp(host, port, self.deadline.left(timeout, httpcore.ConnectTimeout),
                                        local_address, socket_options)
        return DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self.inner.connect_unix_socket(path, self.deadline.left(timeout, httpcore.ConnectTimeout),
                                                socket_options)
        return DeadlineStream(stream, self.deadline)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def install(transport: Any, deadline: Deadline) -> None:
    """Put the deadline under an `httpx.HTTPTransport`'s connection pool.

    httpx has no public hook for the network backend, so this reaches its pool (httpx 0.28,
    httpcore 1.0); tests/test_http.py's trickle test fails loudly if that ever changes.
    """
    pool = transport._pool
    pool._network_backend = DeadlineBackend(pool._network_backend, deadline)
