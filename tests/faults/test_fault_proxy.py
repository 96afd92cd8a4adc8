"""`catalog analyze` behind a real loopback proxy: a tunnelled night, a proxy that refuses, one we cannot use."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time

import pytest
from audit import answers_lost, crashes, key_places, paid_twice, run_cli, scanned_library
from imgtags_server import serve_imgtags
from proxy_server import over_tls, serve_proxy

KEY = "sk-fault-proxy-3c9d0e1f2a4b"
PHOTOS = ["landscape_1.jpg", "landscape_2.jpg", "landscape_3.jpg", "BlueSquare.jpg", "DSCN0010.jpg",
          "prairie_falcon.jpg"]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, shared_photos):
    return scanned_library(tmp_path_factory.mktemp("scanned"), shared_photos / "real", PHOTOS)


@pytest.fixture
def night(scanned, tmp_path):
    """An https ImgTags server, a proxy, and `analyze(**env)` running the real CLI through both."""
    db_path = tmp_path / "c.db"
    shutil.copy(scanned, db_path)
    config = tmp_path / "config.toml"
    config.write_text("[analysis]\nrequests_per_minute = 6000\nmax_retries = 1\ntimeout_seconds = 2.0\n"
                      "concurrency = 2\nbreaker_failures = 3\n"
                      "reuse_for_copies = false\n")  # every photo one request (landscape_2, 3 copy landscape_1)
    with serve_imgtags(key=KEY) as server, serve_proxy() as proxy:
        cert_file, base_url = over_tls(server, tmp_path)
        env = {"CATALOG_DB": str(db_path), "CATALOG_CONFIG": str(config), "IMGTAGS_API_KEY": KEY,
               "IMGTAGS_BASE_URL": base_url, "SSL_CERT_FILE": cert_file, "HTTPS_PROXY": proxy.url,
               "NO_PROXY": "", "CI": "true"}

        def analyze(**more: str):
            start = time.monotonic()
            result = run_cli("analyze", env={**env, **more}, timeout=120)
            return result, time.monotonic() - start
        yield analyze, server, proxy, db_path


def column(db_path, sql: str) -> list:
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute(sql)]


def test_cli_a_night_through_a_tunnelling_proxy(night, figures):
    """Every request goes through $HTTPS_PROXY in a CONNECT tunnel: all photos done, the proxy never reads the key."""
    analyze, server, proxy, db_path = night
    result, seconds = analyze()
    done = column(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'")[0]
    figures.crashes = crashes(result)
    figures.answers_lost, figures.paid_twice = answers_lost(server, db_path), paid_twice(server)
    figures.key_found = key_places(KEY, texts=[result.stdout, result.stderr, proxy.received.decode("latin-1")],
                                   files=[db_path])
    figures.note = (f"{done} of {len(PHOTOS)} done in {seconds:.1f} s over {len(proxy.tunnels)} tunnel(s); "
                    f"{len(proxy.received):,} bytes through the proxy, none of them readable")
    assert result.returncode == 0 and figures.crashes == 0, result.stderr
    assert (figures.answers_lost, figures.paid_twice, figures.key_found) == (0, 0, 0)
    assert done == len(PHOTOS) == len(server.requests) and 1 <= len(proxy.tunnels) <= 2 and not proxy.forwarded
    assert b"image/jpeg" not in proxy.received  # not even the multipart headers


@pytest.mark.parametrize("refusal", [407, 502])
def test_cli_a_proxy_that_refuses_the_tunnel_stops_the_stage(night, figures, refusal):
    """The proxy answers CONNECT with 407 (wrong password) or 502: one line, no attempt spent, nothing sent."""
    analyze, server, proxy, db_path = night
    if refusal == 407:
        proxy.credentials = ("nas", "right")
    else:
        proxy.refuse = 502
    result, seconds = analyze(HTTPS_PROXY=proxy.url.replace("//", "//nas:wrong-pw@"))
    spent = column(db_path, "SELECT COALESCE(SUM(attempts), 0) FROM photos")[0]
    lines = [line for line in result.stderr.splitlines() if "times in a row" in line]
    figures.crashes = crashes(result)
    figures.key_found = key_places(KEY, texts=[result.stdout, result.stderr], files=[db_path])
    figures.note = f"stopped in {seconds:.1f} s after {len(proxy.refused)} refused tunnels; attempts spent: {spent}"
    assert figures.crashes == 0 and spent == 0 and not server.requests, result.stderr
    assert lines == [f"Stopped early: ImgTags failed 3 times in a row (last: the proxy refused the connection "
                     f"(HTTP {refusal})); analysis stops for this run"]
    assert "wrong-pw" not in result.stdout + result.stderr and len(proxy.refused) <= 2 * (3 + 2)


def test_cli_a_socks_proxy_is_refused_at_start(night, figures):
    """$ALL_PROXY names a SOCKS proxy the key would go through: exit 2 with one line, before any request."""
    analyze, server, proxy, db_path = night
    refused, _ = analyze(HTTPS_PROXY="", ALL_PROXY="socks5://nas:pw@127.0.0.1:1080")
    direct, seconds = analyze(HTTPS_PROXY="", ALL_PROXY="socks5://nas:pw@127.0.0.1:1080", NO_PROXY="127.0.0.1")
    figures.crashes = crashes(refused) + crashes(direct)
    figures.note = f"exit {refused.returncode}, {len(refused.stderr.splitlines())} line; with NO_PROXY: exit " \
                   f"{direct.returncode}, {len(server.requests)} photos sent direct"
    assert figures.crashes == 0
    assert refused.returncode == 2 and re.fullmatch(
        r"catalog: error: \$ALL_PROXY names a socks5 proxy; catalog talks to http:// and https:// proxies only "
        r"\(or add 127\.0\.0\.1 to \$NO_PROXY to connect directly\)\n", refused.stderr), refused.stderr
    assert direct.returncode == 0 and len(server.requests) == len(PHOTOS) and not proxy.received
