"""Which proxy, if any, carries a request: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY, as curl reads them.

catalog/config.py reads the environment once, at load, into a `ProxyRoutes`; the transport
(catalog/transport_pool.py) asks it for each request's proxy. http:// and https:// proxies
are supported; an https origin always goes through a CONNECT tunnel, so the proxy sees
neither the key nor the photos. A proxy's user name and password never appear in a message.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote, urlsplit

from catalog.errors import ConfigError

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Proxy:
    """One proxy server: `scheme` is how we talk to it (http or https), not the origin's."""

    scheme: str
    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def __str__(self) -> str:  # never the credentials
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class ProxyRoutes:
    """Proxy settings by origin scheme; `None` for a scheme means a direct connection."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()
    # Proxies we cannot use, as (origin scheme, variable, reason): refused only when a request would go
    # through one, so a SOCKS proxy meant for other tools stops nothing it does not carry.
    unusable: tuple[tuple[str, str, str], ...] = ()

    def proxy_for(self, url: str) -> Proxy | None:
        """The proxy for a request to `url`, or None to connect directly; ConfigError for an unusable one."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme not in SCHEMES or bypassed(host, self.no_proxy):
            return None
        for origin, variable, reason in self.unusable:
            if origin == scheme:
                raise ConfigError(f"${variable} {reason}; catalog talks to http:// and https:// proxies only "
                                  f"(or add {host} to $NO_PROXY to connect directly)")
        return self.https if scheme == "https" else self.http


def bypassed(host: str, no_proxy: tuple[str, ...]) -> bool:
    """Whether NO_PROXY sends `host` direct: `*`, a name and its subdomains (`.example.org` or
    `example.org`), an IP address, or a network in CIDR notation (`192.168.0.0/16`, `fd00::/8`)."""
    host = host.strip("[]").rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy:
        entry = entry.strip("[]").lstrip(".").rstrip(".").lower()
        if entry == "*" or entry == host or (address is None and host.endswith("." + entry)):
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def parse_proxy(value: str, variable: str) -> Proxy:
    """`http://user:pass@host:3128`, `https://host`, or a bare `host:port` (taken as http)."""
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"${variable} is not a valid proxy URL") from None  # the value may hold a password
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"names a {scheme} proxy")
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in value):
        raise ConfigError(f"${variable} is not a valid proxy URL: it needs a host, like http://proxy:3128")
    return Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme],
                 unquote(parts.username or ""), unquote(parts.password or ""))


def from_environment(environ: Mapping[str, str]) -> ProxyRoutes:
    """Proxy routes from `environ`: the lower-case variable first, then the upper-case one, as curl does.

    An empty variable counts as unset. ConfigError for a malformed URL; a proxy of another
    kind (socks5://) is kept as unusable and refused when a request would need it.
    """
    def variable(name: str) -> tuple[str, str]:
        for spelling in (name.lower(), name.upper()):
            if environ.get(spelling, "").strip():
                return spelling, environ[spelling].strip()
        return "", ""

    routes: dict[str, Proxy | None] = {}
    unusable: list[tuple[str, str, str]] = []
    fallback = variable("all_proxy")
    for scheme in SCHEMES:
        name, value = variable(f"{scheme}_proxy")
        name, value = (name, value) if value else fallback
        routes[scheme] = None
        if value:
            try:
                routes[scheme] = parse_proxy(value, name)
            except ValueError as exc:
                unusable.append((scheme, name, str(exc)))
    _, no_proxy = variable("no_proxy")
    entries = tuple(e.strip() for e in no_proxy.split(",") if e.strip())
    return ProxyRoutes(routes["http"], routes["https"], entries, tuple(unusable))
