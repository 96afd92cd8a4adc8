"""The two headers the guard judges by: which Host names are ours, and the Content-Security-Policy.

Pure functions of the request's ASGI scope and the Datasette instance; guard.py applies them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import re
import socket
import weakref

import jinja2

LOOPBACK = ("localhost", "127.0.0.1", "::1")
DEFAULT_TILES = "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png"  # datasette-cluster-map's

_template_hashes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Datasette -> hashes


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def template_script_hashes(datasette) -> frozenset:
    """Hashes of the inline scripts written in the templates (Datasette's and plugins')."""
    if datasette not in _template_hashes:
        env, found = datasette.jinja_env, set()
        for name in env.list_templates(extensions=["html"]):
            source = env.loader.get_source(env, name)[0]
            for body in re.findall(r"<script>(.*?)</script>", source, re.S):
                if "{{" not in body and "{%" not in body:
                    found.add(body)
                    continue
                for allow_facet in ("true", "false"):  # table.html: DATASETTE_ALLOW_FACET
                    try:
                        found.add(jinja2.Environment(autoescape=True).from_string(body).render(
                            datasette_allow_facet=allow_facet))
                    except jinja2.TemplateError:  # a script that needs more than that is not allowed
                        pass
        _template_hashes[datasette] = frozenset(_sha256(s) for s in found)
    return _template_hashes[datasette]


def tile_source(datasette) -> str:
    """Where the map's tiles come from, as a CSP source ({s}.tile... becomes *.tile...)."""
    config = datasette.plugin_config("datasette-cluster-map") or {}
    url = config.get("tile_layer") or DEFAULT_TILES
    match = re.match(r"^(https?://)([^/]+)", url)
    return match.group(1) + re.sub(r"\{[^}]*\}", "*", match.group(2)) if match else ""


def policy(datasette, page_scripts) -> str:
    """The Content-Security-Policy of one page: no inline script but the templates' and
    this page's plugin scripts (by hash), so no `javascript:` URL or `on...=` attribute runs."""
    scripts = sorted(template_script_hashes(datasette) | {_sha256(s) for s in page_scripts})
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' " + " ".join(scripts),
        "style-src 'self' 'unsafe-inline'",  # Datasette's column styles and the map's; no script
        f"img-src 'self' data: {tile_source(datasette)}".rstrip(),
        "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
        "form-action 'self'", "frame-ancestors 'none'",
    ])


def split_host(value: str) -> tuple[str, int | None]:
    """'Example.org:8001' -> ('example.org', 8001); '[::1]:80' -> ('::1', 80)."""
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", value.strip())
    if not match:
        return "", None
    name = (match.group(1) or match.group(3)).lower().rstrip(".")
    port = match.group(2) or match.group(4)
    return name, int(port) if port else None


@functools.cache  # getfqdn() may ask DNS: once per process, not per request
def machine_names() -> frozenset[str]:
    """What the LAN calls this machine: its host name, with .local (mDNS), and its full name."""
    name = socket.gethostname().lower()
    return frozenset({name, f"{name}.local", socket.getfqdn().lower()})


def host_allowed(scope, extra_hosts=()) -> bool:
    """Only the names this server answers to: localhost, the address the client connected
    to (the address served), this machine's own names, each with the port served; plus the
    names the user allowed (a proxy in front may use any port). A rebinding attacker's
    name is none of these."""
    header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
    if header is None:
        return False
    name, port = split_host(header)
    if not name:
        return False
    port = port if port is not None else (443 if scope.get("scheme") == "https" else 80)
    for allowed in extra_hosts:
        allowed_name, allowed_port = split_host(allowed)
        if name == allowed_name and allowed_port in (None, port):
            return True
    server = scope.get("server") or (None, None)
    served_port = server[1]
    if served_port is not None and port != served_port:
        return False
    names = set(LOOPBACK)
    if server[0]:
        names |= _forms(server[0])
        if not any(_is_loopback(n) for n in _forms(server[0])):
            names |= machine_names()
    return bool(_forms(name) & names)


def _forms(name: str) -> set[str]:
    """A name and, for an address, its canonical forms (IPv4-mapped IPv6 also as IPv4)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return {name.lower()}
    mapped = getattr(address, "ipv4_mapped", None)
    return {address.compressed} | ({mapped.compressed} if mapped else set())


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"
