"""The Prefect flow for real: ephemeral runs, a scheduled run on a real server, kill -9, one run at a time.

These start Prefect (seconds each), so there are few of them. The scheduled-run
test is marked `slow`: CI runs it; `make test PYTEST_ARGS='-m "not slow"'` skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from imgtags_server import serve_imgtags

from catalog.ephemeral import wait_for_prefect
from catalog.lock import exclusive


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory):
    """One Prefect home for the session: the ephemeral server's database is made once."""
    return tmp_path_factory.mktemp("prefect-home")


def env_for(tmp_path: Path, prefect_home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "IMGTAGS_", "CATALOG_")) or k == "CATALOG_ENRICHERS"}
    env.update(PREFECT_HOME=str(prefect_home), CATALOG_DB=str(tmp_path / "catalog.db"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_PROXY="127.0.0.1,localhost")
    env.update(extra)
    return env


def catalog(*args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "catalog", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_ephemeral_flow_run_over_shared_photos(photos, tmp_path, prefect_home):
    env = env_for(tmp_path, prefect_home)
    config = tmp_path / "catalog.toml"
    config.write_text("[writeback]\nafter_analysis = true\n")
    first = catalog("--config", config, "run", "--json", photos, env=env)
    assert first.returncode == 1, first.stderr  # edge/ holds broken files: recorded, exit 1
    assert "Traceback" not in first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "partial"
    assert (summary["files_seen"], summary["new"], summary["errors"]) == (47, 47, 6)
    assert (summary["photos"], summary["duplicate_files"]) == (40, 1)
    assert (summary["analysed"], summary["failed"], summary["analyzer"]) == (40, 0, "offline")
    # Written back after analysis (sidecar mode: the photos themselves are not touched).
    assert summary["written_back"] == 41 and summary["writeback_skipped"] == 0
    assert len(list(photos.rglob("*.xmp"))) == 41

    db = sqlite3.connect(tmp_path / "catalog.db")
    assert db.execute("SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'").fetchone()[0] == 40
    status, counts = db.execute("SELECT status, counts FROM runs WHERE command = 'run'").fetchone()
    assert status == "partial" and json.loads(counts)["analysed"] == 40
    # The summary is a Prefect markdown artifact too (in the ephemeral server's database).
    prefect_db = sqlite3.connect(prefect_home / "prefect.db")
    [artifact] = prefect_db.execute(
        "SELECT data FROM artifact WHERE key = 'catalog-run-summary' ORDER BY created DESC LIMIT 1").fetchall()
    assert f"catalog run {summary['run_id']}" in artifact[0] and "| analysed | 40 |" in artifact[0]

    second = catalog("--config", config, "run", "--json", photos, env=env)
    again = json.loads(second.stdout)
    assert (again["unchanged"], again["new"], again["analysed"], again["written_back"]) == (47, 0, 0, 0)
    assert "search" not in again  # a plain summary, nothing else leaks in
    listed = json.loads(catalog("runs", "--json", env=env).stdout)
    assert [r["command"] for r in listed if r["command"] == "run"] == ["run", "run"]

    # Every root gone (an unmounted share): the flow fails clearly and marks nothing missing.
    photos.rename(tmp_path / "unmounted")
    gone = catalog("run", photos, env=env)
    assert gone.returncode == 1 and "every library root is unavailable" in gone.stderr
    assert db.execute("SELECT COUNT(*) FROM files WHERE status = 'missing'").fetchone()[0] == 0


def test_second_run_refused_while_one_is_active(tmp_path, prefect_home, photos):
    env = env_for(tmp_path, prefect_home)
    with exclusive(tmp_path / "catalog.db", "run"):
        started = time.monotonic()
        refused = catalog("run", photos / "real", env=env)
        assert time.monotonic() - started < 20  # refused before Prefect even starts
        assert refused.returncode == 1
        assert "another run is already working" in refused.stderr and f"pid {os.getpid()}" in refused.stderr
        scan = catalog("scan", photos / "real", env=env)
        assert scan.returncode == 1 and "another run is already working" in scan.stderr


def test_stale_lock_from_a_killed_run_is_taken_over(tmp_path, prefect_home, photos):
    env = env_for(tmp_path, prefect_home)
    # A holder that died without releasing: the lock file names it, nobody holds the flock.
    Path(f"{tmp_path / 'catalog.db'}.lock").write_text(
        json.dumps({"pid": 999999, "host": "nas", "command": "run", "started": "2026-01-01T02:00:00"}))
    result = catalog("scan", photos / "real", env=env)
    assert result.returncode == 0, result.stderr
    assert "taking over the lock" in result.stderr


def upload_digest(path: Path) -> str:
    from catalog.prepare import prepare_upload

    return hashlib.sha256(prepare_upload(path).data).hexdigest()


def test_kill_9_mid_analysis_then_rerun_pays_nothing_twice(photos, tmp_path, prefect_home):
    library = photos / "real"
    with serve_imgtags(key="ImgKey-7f3Qz9", latency=0.4) as server:
        env = env_for(tmp_path, prefect_home, IMGTAGS_API_KEY="ImgKey-7f3Qz9", IMGTAGS_BASE_URL=server.base_url)
        config = tmp_path / "fast.toml"
        config.write_text("[analysis]\nrequests_per_minute = 600\nconcurrency = 2\n[schedule]\nbatch_size = 5\n")
        proc = subprocess.Popen([sys.executable, "-m", "catalog", "--config", config, "run", library],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while sum(1 for r in server.requests if r.status == 200) < 8:
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "no analysis requests arrived"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        db = sqlite3.connect(tmp_path / "catalog.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done_before = {r[0] for r in db.execute("SELECT id FROM photos WHERE analysis_status = 'done'")}
        assert 4 <= len(done_before) < 34  # answers in flight at the kill may be lost
        rerun = catalog("--config", config, "run", "--json", library, env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["analysed"] == 34 - len(done_before)
        sent = {}
        for r in server.requests:
            if r.status == 200:
                sent[r.fields["image"]["sha256"]] = sent.get(r.fields["image"]["sha256"], 0) + 1
    assert db.execute("SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'").fetchone()[0] == 34
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The API key is in no database: ours, nor Prefect's (flow/task parameters, logs, artifacts).
    for path in [*tmp_path.glob("catalog.db*"), *prefect_home.glob("prefect.db*")]:
        assert b"ImgKey-7f3Qz9" not in path.read_bytes(), path
    statuses = [r[0] for r in db.execute("SELECT status FROM runs WHERE command = 'run' ORDER BY id")]
    assert statuses == ["interrupted", "ok"]
    paths = dict(db.execute("SELECT photo_id, MIN(path) FROM files WHERE status = 'ok' GROUP BY photo_id"))
    for photo_id, path in paths.items():
        count = sent.get(upload_digest(Path(path)), 0)
        if photo_id in done_before:
            assert count == 1, f"{path} was paid for twice"
        else:
            assert 1 <= count <= 2, path  # at most once more than the answer lost in the kill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_scheduled_run_fires_on_a_real_prefect_server(photos, tmp_path):
    home = tmp_path / "server-home"
    home.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = env_for(tmp_path, home, PREFECT_API_URL=api)
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env={**env, "PREFECT_API_URL": ""},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    serve = None
    try:
        wait_for_prefect(api, 180, server)
        config = tmp_path / "catalog.toml"
        config.write_text(f'[library]\nroots = ["{photos / "real"}"]\n')
        serve = subprocess.Popen([sys.executable, "-m", "catalog", "--config", config, "schedule", "--interval", "5"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        deadline = time.monotonic() + 240
        completed = []
        while not completed:
            assert serve.poll() is None, serve.stdout.read()
            assert time.monotonic() < deadline, "no scheduled run completed"
            time.sleep(2)
            # (Prefect schedules many future runs ahead: ask for completed ones only.)
            runs = httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
                "limit": 5, "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
            completed = [r for r in runs if r["deployment_id"]]
        db = sqlite3.connect(tmp_path / "catalog.db")
        status, counts = db.execute(
            "SELECT status, counts FROM runs WHERE command = 'run' AND status != 'running' ORDER BY id LIMIT 1").fetchone()
        assert status == "ok" and json.loads(counts)["analysed"] == 34
    finally:
        for proc in (serve, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
