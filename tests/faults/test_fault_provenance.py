"""Enrichers and sources on a bad night: a worker killed mid-run, a missing model package."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit import crashes, run_cli

from catalog.enrichers import REGISTRY, unavailable

pytestmark = pytest.mark.skipif(bool(unavailable(REGISTRY)), reason="; ".join(unavailable(REGISTRY).values()))
PHOTOS = ["DSCN0010.jpg", "87_OSError.jpg", "iphone_hdr_YES.jpg", "hopper.gif", "landscape_1.jpg",
          "el_torcal_rocks.jpg", "jolla.jpg", "sony-d700.jpg"]


def library(photos: Path, tmp_path: Path) -> tuple[Path, dict]:
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in PHOTOS:
        shutil.copy(photos / "real" / name, lib / name)
    env = {"CATALOG_DB": str(tmp_path / "c.db"), "CATALOG_ENRICHERS": "places,faces"}
    assert run_cli("scan", lib, env=env).returncode == 0
    return lib, env


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def workers_of(pid: int) -> list[int]:
    """The pool's worker processes: children of `pid` started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def start_analyze(env: dict) -> subprocess.Popen:
    """`catalog analyze` in a child process, running while the test watches it."""
    return subprocess.Popen([sys.executable, "-m", "catalog", "analyze"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def without(package: str, env: dict) -> subprocess.CompletedProcess:
    """`catalog analyze` in a child process where `package` cannot be imported (as if not installed)."""
    script = (f"import runpy, sys\nsys.modules[{package!r}] = None\nsys.argv = ['catalog', 'analyze']\n"
              "runpy.run_module('catalog', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_enricher_worker_killed_mid_run(photos, tmp_path, figures):
    """An enricher worker SIGKILLed mid-run fails no photo; its photos are enriched again in the same run."""
    lib, env = library(photos, tmp_path)
    db = Path(env["CATALOG_DB"])
    proc = start_analyze(env)
    killed, deadline = None, time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        workers = workers_of(proc.pid)
        if workers and count(db, "SELECT COUNT(*) FROM analyses WHERE kind = 'backend'") >= 1:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    figures.crashes = crashes(result)
    assert killed is not None, "no worker seen"
    assert figures.crashes == 0 and proc.returncode == 0, err
    enriched = count(db, "SELECT COUNT(DISTINCT photo_id) FROM analyses WHERE source IN ('places', 'faces')")
    both = count(db, "SELECT COUNT(*) FROM (SELECT photo_id FROM analyses WHERE source IN ('places', 'faces') "
                     "GROUP BY photo_id HAVING COUNT(*) = 2)")
    assert count(db, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done' AND attempts = 1") == len(PHOTOS)
    assert count(db, "SELECT COUNT(*) FROM analyses WHERE error IS NOT NULL") == 0
    assert enriched == both == len(PHOTOS)
    figures.note = ("a worker killed after the first answer; 0 photos failed, "
                    f"{both} of {len(PHOTOS)} enriched in the same run")



def test_missing_enricher_dependency(photos, tmp_path, figures):
    """A missing enricher package is one line per run; the back-end and the other enrichers go on."""
    lib, env = library(photos, tmp_path)
    db = Path(env["CATALOG_DB"])
    first = without("reverse_geocode", env)
    figures.crashes = crashes(first)
    assert figures.crashes == 0 and first.returncode == 0, first.stderr
    lines = [x for x in first.stderr.splitlines() if "reverse_geocode" in x]
    assert len(lines) == 1 and "pip install 'catalog[local]'" in lines[0], first.stderr
    assert count(db, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'") == len(PHOTOS)
    assert count(db, "SELECT COUNT(*) FROM analyses WHERE source = 'faces'") == len(PHOTOS)
    assert count(db, "SELECT COUNT(*) FROM analyses WHERE source = 'places'") == 0
    # Installed again: the next run adds the missing source only, without analysing anything again.
    second = run_cli("analyze", "--json", env=env)
    assert second.returncode == 0 and '"analysed": 0' in second.stdout, second.stderr
    assert count(db, "SELECT COUNT(*) FROM analyses WHERE source = 'places'") == len(PHOTOS)
    assert count(db, "SELECT MAX(attempts) FROM photos") == 1
    figures.note = (f"1 line for {len(PHOTOS)} photos; {len(PHOTOS)} analysed, places added by the next run "
                    "with 0 photos sent again")


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigterm_while_enrichers_run(photos, tmp_path, figures):
    """SIGTERM while enricher workers are busy stops within seconds, keeps every row, leaves no worker."""
    lib, env = library(photos, tmp_path)
    db = Path(env["CATALOG_DB"])
    proc = start_analyze(env)
    workers, deadline = [], time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        workers = workers_of(proc.pid) or workers
        if count(db, "SELECT COUNT(*) FROM analyses WHERE kind = 'enricher'") >= 1:
            break
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    stopped = time.monotonic() - sent
    figures.crashes = crashes(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert workers and figures.crashes == 0 and proc.returncode == 130, err
    time.sleep(1)
    left = [pid for pid in workers if alive(pid)]
    assert stopped < 10 and left == [], (stopped, left)
    kept = count(db, "SELECT COUNT(*) FROM analyses")
    assert count(db, "SELECT status FROM runs WHERE command = 'analyze'") == "interrupted"
    rerun = run_cli("analyze", "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert count(db, "SELECT COUNT(*) FROM analyses WHERE kind = 'enricher'") == len(PHOTOS) * 2
    assert count(db, "SELECT MAX(attempts) FROM photos") == 1  # nothing analysed twice
    figures.note = f"stopped in {stopped:.1f} s with {kept} rows kept, 0 workers left; the rerun finished the rest"



def test_safety_gate_without_its_model(photos, tmp_path, figures):
    """upload_if_adult_below with the safety model missing: nothing is uploaded, one line says why."""
    from imgtags_server import serve_imgtags

    lib, env = library(photos, tmp_path)
    config = tmp_path / "gate.toml"
    config.write_text('[analysis]\nrequests_per_minute = 6000\nupload_if_adult_below = "LIKELY"\n')
    db = Path(env["CATALOG_DB"])
    with serve_imgtags(key="sk-gate") as server:
        env.update(CATALOG_CONFIG=str(config), IMGTAGS_API_KEY="sk-gate", IMGTAGS_BASE_URL=server.base_url,
                   CATALOG_ENRICHERS="")
        result = without("nudenet", env)
        uploaded = len(server.requests)
    figures.crashes = crashes(result)
    assert figures.crashes == 0 and result.returncode == 0, result.stderr
    lines = [x for x in result.stderr.splitlines() if "nudenet" in x]
    assert uploaded == 0 and len(lines) == 1 and "stays local" in lines[0], result.stderr
    assert count(db, "SELECT COUNT(*) FROM analyses WHERE source = 'offline'") == len(PHOTOS)
    figures.note = f"0 of {len(PHOTOS)} photos uploaded, {len(PHOTOS)} analysed here; 1 line"
