"""Privacy routing: photos under local_only folders, or rated adult locally, never reach a cloud back-end."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from imgtags_server import serve_imgtags

from catalog.config import load_config
from catalog.enrichers import unavailable
from catalog.errors import ConfigError
from catalog.routing import at_or_above, under

KEY = "sk-routing-test-key"


def sources(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT f.name, a.source FROM analyses a JOIN files f ON f.photo_id = a.photo_id "
                                 "WHERE a.kind = 'backend' AND f.status = 'ok'").fetchall())


def setup(run_catalog, photos: Path, tmp_path: Path, settings: str, layout: dict[str, str]) -> tuple[Path, dict]:
    root = tmp_path / "lib"
    for rel, name in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / "real" / name, root / rel)
    config = tmp_path / "config.toml"
    config.write_text(f"[analysis]\nrequests_per_minute = 6000\n{settings}")
    env = {"CATALOG_DB": str(tmp_path / "c.db"), "CATALOG_CONFIG": str(config), "IMGTAGS_API_KEY": KEY}
    assert run_catalog("scan", root, env=env).returncode == 0
    return root, env


def test_local_only_folders_never_reach_the_cloud_server(photos, tmp_path, run_catalog):
    root, env = setup(run_catalog, photos, tmp_path, 'local_only = ["Family", "/nowhere/else"]\n', {
        "Family/kids/a.jpg": "DSCN0010.jpg", "Family/b.jpg": "jolla.jpg", "Trips/c.jpg": "sony-d700.jpg",
        "Trips/d.jpg": "el_torcal_rocks.jpg", "Trips/same as a.jpg": "DSCN0010.jpg",  # a copy outside
        "Familyish/e.jpg": "landscape_1.jpg"})
    with serve_imgtags(key=KEY) as server:
        env["IMGTAGS_BASE_URL"] = server.base_url
        dry = run_catalog("analyze", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert "Would send 3 photos to imgtags" in dry.stdout and "Would keep 2 photos" in dry.stdout
        assert json.loads(run_catalog("analyze", "--dry-run", "--json", env=env).stdout)["kept_local"] == 2
        assert len(server.requests) == 0
        done = run_catalog("analyze", "--json", env=env)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        sent = len(server.requests)
    assert (summary["analysed"], summary["kept_local"], sent) == (5, 2, 3)
    assert sources(tmp_path / "c.db") == {"a.jpg": "offline", "same as a.jpg": "offline", "b.jpg": "offline",
                                          "c.jpg": "imgtags", "d.jpg": "imgtags", "e.jpg": "imgtags"}
    # --analyzer imgtags --reanalyze over the private folder still keeps them here.
    with serve_imgtags(key=KEY) as server:
        env["IMGTAGS_BASE_URL"] = server.base_url
        again = run_catalog("analyze", "--analyzer", "imgtags", "--reanalyze", root / "Family", "--json", env=env)
        assert again.returncode == 0 and len(server.requests) == 0, again.stderr
    assert json.loads(again.stdout)["kept_local"] == 2


def test_routing_rules():
    assert under("/p/Family/kids/a.jpg", "/p", ["Family"]) and under("/p/Family/a.jpg", "/p", ["Family/"])
    assert not under("/p/Familyish/a.jpg", "/p", ["Family"]) and not under("/p/x/Family.jpg", "/p", ["Family"])
    assert under("/p/2020/private/a.jpg", "/p", ["*/private"]) and under("/p/a/b.jpg", "/p", ["/p/a"])
    assert [at_or_above(x, "LIKELY") for x in ("VERY_UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY", "UNKNOWN")] == [
        False, False, True, True, True]


@pytest.mark.parametrize("settings, message", [
    ('local_only = ["x"]\nlocal_analyzer = "imgtags"\n', 'must be "offline" or "openai"'),
    ('local_only = ["x"]\nlocal_analyzer = "openai"\n[openai]\nmodel = "m"\nbase_url = "https://api.example.com/v1"\n',
     "needs openai.base_url on this machine"),
    ('upload_if_adult_below = "SOMETIMES"\n', "must be one of UNLIKELY, POSSIBLE, LIKELY, VERY_LIKELY"),
])
def test_routing_settings_are_checked(tmp_path, settings, message):
    path = tmp_path / "c.toml"
    path.write_text("[analysis]\n" + settings)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.skipif(bool(unavailable(["safety"])), reason="; ".join(unavailable(["safety"]).values()))
def test_the_safety_model_rates_photos_before_they_leave(photos, tmp_path, run_catalog):
    # jolla.jpg (a leaf) rates UNLIKELY, the others VERY_UNLIKELY (see test_enrichers.py)
    _, env = setup(run_catalog, photos, tmp_path, 'upload_if_adult_below = "UNLIKELY"\n', {
        "a.jpg": "DSCN0010.jpg", "b.jpg": "jolla.jpg", "c.jpg": "sony-d700.jpg"})
    with serve_imgtags(key=KEY) as server:
        env["IMGTAGS_BASE_URL"] = server.base_url
        dry = run_catalog("analyze", "--dry-run", env=env)
        assert "rates those 3 photos first: UNLIKELY or above stays" in dry.stdout, dry.stdout
        done = run_catalog("analyze", "--json", env=env)
        assert done.returncode == 0, done.stderr
        sent = len(server.requests)
    assert sent == 2 and json.loads(done.stdout)["kept_local"] == 1
    assert sources(tmp_path / "c.db") == {"a.jpg": "imgtags", "b.jpg": "offline", "c.jpg": "imgtags"}
    with sqlite3.connect(tmp_path / "c.db") as conn:  # the rating is kept as the safety source's row
        rated = dict(conn.execute("SELECT f.name, a.safe_adult FROM analyses a JOIN files f "
                                  "ON f.photo_id = a.photo_id WHERE a.source = 'safety'").fetchall())
    assert rated == {"a.jpg": "VERY_UNLIKELY", "b.jpg": "UNLIKELY", "c.jpg": "VERY_UNLIKELY"}
