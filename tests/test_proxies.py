"""Proxies from the environment, through a real loopback proxy: forwarded http, CONNECT-tunnelled https,
NO_PROXY, proxy credentials and refusals; the throttle, deadline, cap and breaker apply on every route."""

from __future__ import annotations

import time

import httpx
import pytest
from imgtags_server import serve_imgtags
from proxy_server import over_tls, serve_proxy

from catalog.analyze import make_analyzer
from catalog.analyzers import UploadImage
from catalog.config import load_config
from catalog.errors import ConfigError, ServiceDown
from catalog.http import UnreadableAnswer, make_client, stats_of
from catalog.proxies import from_environment

KEY = "sk-proxy-5e4d3c2b1a09f8e7"
AUTH = {"Authorization": f"Bearer {KEY}"}
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def server():
    with serve_imgtags(key=KEY) as srv:
        yield srv


@pytest.fixture
def proxy():
    with serve_proxy() as prx:
        yield prx


def client_via(srv_url: str, environ: dict[str, str], **settings) -> httpx.Client:
    options = dict(requests_per_minute=1000, window_seconds=1.0, backoff_base=0.01, timeout=2.0, headers=AUTH)
    return make_client(srv_url, proxies=from_environment(environ), **{**options, **settings})


def upload(client: httpx.Client) -> httpx.Response:
    return client.post("analyze", files={"image": ("a.jpg", JPEG, "image/jpeg")})


# --- which proxy, as curl reads the environment -------------------------------------------------

@pytest.mark.parametrize(("environ", "url", "expected"), [
    ({"HTTPS_PROXY": "http://p:3128"}, "https://api.example.org/v1", "http://p:3128"),
    ({"HTTPS_PROXY": "http://p:3128"}, "http://api.example.org/v1", None),  # https only
    ({"HTTP_PROXY": "p:8080"}, "http://api.example.org/v1", "http://p:8080"),  # a bare host:port is http
    ({"ALL_PROXY": "https://p"}, "https://api.example.org/v1", "https://p:443"),
    ({"ALL_PROXY": "http://all:1", "https_proxy": "http://low:2", "HTTPS_PROXY": "http://up:3"},
     "https://x.org", "http://low:2"),  # the scheme's own variable, lower case first
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.org"}, "https://api.example.org", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.org"}, "https://example.org", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.org"}, "https://badexample.org", "http://p:1"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "192.168.0.0/16, nas.lan"}, "https://192.168.4.20:8443", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "192.168.0.0/16"}, "https://10.0.0.1", "http://p:1"),
    ({"HTTPS_PROXY": "http://p:1", "no_proxy": "*"}, "https://anything.example", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "::1"}, "https://[::1]:9000", None),
    ({"HTTPS_PROXY": "  "}, "https://x.org", None),  # empty counts as unset
])
def test_the_proxy_for_a_url_follows_the_environment_as_curl_does(environ, url, expected):
    proxy = from_environment(environ).proxy_for(url)
    assert (str(proxy) if proxy else None) == expected


def test_proxy_credentials_are_decoded_and_never_shown():
    proxy = from_environment({"HTTPS_PROXY": "http://nas%40home:s3cr%3At@p:3128"}).proxy_for("https://x.org")
    assert (proxy.username, proxy.password) == ("nas@home", "s3cr:t")
    assert "s3cr" not in str(proxy) and "s3cr" not in repr(proxy)


@pytest.mark.parametrize(("value", "message"), [
    ("http://user:pw@p:99999", "$HTTPS_PROXY is not a valid proxy URL"),
    ("http://", "$HTTPS_PROXY is not a valid proxy URL: it needs a host, like http://proxy:3128"),
    ("socks5://user:pw@p:1080", "$HTTPS_PROXY names a socks5 proxy; catalog talks to http:// and https:// "
                                "proxies only (or add x.org to $NO_PROXY to connect directly)"),
])
def test_a_proxy_we_cannot_use_is_one_line_without_its_password(value, message):
    with pytest.raises(ConfigError) as caught:
        from_environment({"HTTPS_PROXY": value}).proxy_for("https://x.org/v1")
    assert str(caught.value) == message and "pw" not in str(caught.value)


# --- every route keeps the transport's rules -----------------------------------------------------

def test_an_http_origin_is_forwarded_through_the_proxy(server, proxy):
    with client_via(server.base_url, {"HTTP_PROXY": proxy.url}) as client:
        response = upload(client)
        assert stats_of(client).requests == 1
    assert response.status_code == 200 and response.json()["success"] is True
    port = server.server_address[1]
    assert proxy.forwarded == [f"POST http://127.0.0.1:{port}/api/v1/analyze HTTP/1.1"] and not proxy.tunnels
    assert len(server.requests) == 1 and server.requests[0].path == "/api/v1/analyze"


def test_no_proxy_sends_loopback_direct(server, proxy):
    with client_via(server.base_url, {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}) as client:
        assert upload(client).status_code == 200
    assert len(server.requests) == 1 and not proxy.received


def test_httpx_never_mounts_the_environment_proxy_of_its_own(server, proxy, monkeypatch):
    """The settings choose the route; httpx reading $HTTP_PROXY behind our back would skip the transport."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY")
    with client_via(server.base_url, {}) as client:
        assert upload(client).status_code == 200
        assert stats_of(client).requests == 1
    assert len(server.requests) == 1 and not proxy.received


def test_the_deadline_holds_through_the_proxy(server, proxy):
    server.mode, server.trickle_interval = "trickle", 0.05
    start = time.monotonic()
    with client_via(server.base_url, {"HTTP_PROXY": proxy.url}, timeout=0.5) as client:
        with pytest.raises(UnreadableAnswer) as caught:
            upload(client)
    elapsed = time.monotonic() - start
    assert caught.value.reason == "too slow" and 0.45 <= elapsed < 1.5, f"took {elapsed:.2f} s"
    assert len(proxy.forwarded) == 1 and len(server.requests) == 1


def test_the_answer_cap_holds_through_the_proxy(server, proxy):
    server.mode = "endless-body"
    with client_via(server.base_url, {"HTTP_PROXY": proxy.url}, max_answer_bytes=100_000) as client:
        with pytest.raises(UnreadableAnswer) as caught:
            upload(client)
        assert stats_of(client).bytes_read <= 100_000 + 65_536 + 1000
    assert caught.value.reason == "too large" and len(server.requests) == 1


# --- https: always a CONNECT tunnel ---------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """The ImgTags server over TLS; $SSL_CERT_FILE makes clients trust it, as httpx honours it."""
    with serve_imgtags(key=KEY) as srv:
        cert_file, base_url = over_tls(srv, tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", cert_file)
        yield srv, base_url


def test_an_https_origin_is_tunnelled_and_the_proxy_never_sees_the_key(tls_server, proxy):
    srv, base_url = tls_server
    with client_via(base_url, {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url}) as client:
        responses = [upload(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert proxy.tunnels == [f"127.0.0.1:{srv.server_address[1]}"] and not proxy.forwarded  # one kept-alive tunnel
    assert len(srv.requests) == 3 and srv.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert len(proxy.received) > len(JPEG) * 3  # the uploads did pass through it, encrypted
    assert KEY.encode() not in proxy.received and b"Bearer" not in proxy.received and JPEG[:64] not in proxy.received


def test_proxy_credentials_from_the_url_open_the_tunnel(tls_server, proxy):
    srv, base_url = tls_server
    proxy.credentials = ("nas", "p@ss word")
    port = proxy.server_address[1]
    with client_via(base_url, {"HTTPS_PROXY": f"http://nas:p%40ss%20word@127.0.0.1:{port}"}) as client:
        assert upload(client).status_code == 200
    assert len(proxy.tunnels) == 1 and proxy.auth_seen == ["Basic bmFzOnBAc3Mgd29yZA=="]


@pytest.mark.parametrize("refusal", [407, 502])
def test_a_proxy_that_refuses_the_tunnel_is_retried_then_stops_the_stage(tls_server, proxy, refusal):
    srv, base_url = tls_server
    if refusal == 407:
        proxy.credentials = ("nas", "right")
    else:
        proxy.refuse = 502
    with client_via(base_url, {"HTTPS_PROXY": proxy.url.replace("//", "//nas:wrong@")},
                    max_retries=1, breaker_failures=2, service="ImgTags") as client:
        for _ in range(2):
            with pytest.raises(httpx.ProxyError):
                upload(client)
        with pytest.raises(ServiceDown) as caught:
            upload(client)
        assert stats_of(client).retries == 2
    assert str(caught.value) == (f"ImgTags failed 2 times in a row (last: the proxy refused the connection "
                                 f"(HTTP {refusal})); analysis stops for this run")
    assert len(proxy.refused) == 4 and not proxy.tunnels and not srv.requests


# --- from the settings: the environment is read once, at load -------------------------------------

def test_the_settings_route_the_analyzer_through_the_environment_proxy(server, proxy, monkeypatch):
    """HTTP_PROXY reaches the real analyzer; NO_PROXY=127.0.0.1 sends it direct again."""
    monkeypatch.setenv("IMGTAGS_API_KEY", KEY)
    monkeypatch.setenv("IMGTAGS_BASE_URL", server.base_url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    image = UploadImage(JPEG, "image/jpeg", "a.jpg")
    for no_proxy, forwarded in (("", 1), ("127.0.0.1", 1)):  # the second went direct
        monkeypatch.setenv("NO_PROXY", no_proxy)
        with make_analyzer(load_config()) as analyzer:
            assert analyzer.analyze(image).tags
        assert len(proxy.forwarded) == forwarded
    assert len(server.requests) == 2


def test_an_unusable_proxy_stops_at_load_only_when_the_key_would_use_it(monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "socks5h://127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY")
    assert load_config().analyzer_name() == "offline"  # no key: nothing would go through it
    monkeypatch.setenv("IMGTAGS_API_KEY", KEY)
    with pytest.raises(ConfigError, match=r"^\$ALL_PROXY names a socks5h proxy; .* add www\.imgtags\.com to"):
        load_config()
    monkeypatch.setenv("NO_PROXY", "imgtags.com")
    assert load_config().proxies.proxy_for("https://www.imgtags.com/api/v1") is None
