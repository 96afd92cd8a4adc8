"""The Prefect flow for real: ephemeral runs, a scheduled run on a real server, kill -9, one run at a time.

These start Prefect (seconds each), so there are few of them, each marked `slow`:
CI runs them; `make test PYTEST_ARGS='-m "not slow"'` skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import types
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


@pytest.mark.slow
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
    assert summary["reused"] == 0  # the offline analyzer's answers are never copied (catalog.reuse)
    assert summary["near_groups"] >= 1  # landscape_1..8: one picture turned eight ways (catalog.similar)
    assert (summary["thumbnails"], summary["thumbnails_failed"]) == (40, 0)  # its own stage, no API call
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
    assert "| reused | 0 |" in artifact[0] and "| near groups |" in artifact[0]

    second = catalog("--config", config, "run", "--json", photos, env=env)
    again = json.loads(second.stdout)
    assert (again["unchanged"], again["new"], again["analysed"], again["written_back"]) == (47, 0, 0, 0)
    assert again["thumbnails"] == 0
    assert "search" not in again  # a plain summary, nothing else leaks in
    listed = json.loads(catalog("runs", "--json", env=env).stdout)
    assert [r["command"] for r in listed if r["command"] == "run"] == ["run", "run"]

    # Every root gone (an unmounted share): the flow fails clearly and marks nothing missing.
    photos.rename(tmp_path / "unmounted")
    gone = catalog("run", photos, env=env)
    assert gone.returncode == 1 and "every library root is unavailable" in gone.stderr
    assert db.execute("SELECT COUNT(*) FROM files WHERE status = 'missing'").fetchone()[0] == 0


@pytest.mark.slow
def test_run_falls_back_to_prefects_own_ephemeral_mode(photos, tmp_path):
    """The quick start-up's copied recipe breaks (as a Prefect release renaming it would): the early
    server really fails to start, and the run goes on in Prefect's own ephemeral mode."""
    env = env_for(tmp_path, tmp_path / "prefect-home")
    broken = ("import catalog.ephemeral as e; e.APP = 'prefect.server.api.server:renamed_create_app'; "
              "from catalog.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", broken, "run", "--json", photos / "real"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "quick Prefect start-up failed" in line]
    assert len(notes) == 1 and "Prefect's own ephemeral mode" in notes[0], result.stderr
    assert "renamed_create_app" in notes[0]  # the reason, in the note's one line
    assert "Traceback" not in result.stderr and "ASGI" not in result.stderr.replace(notes[0], "")
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["analysed"], summary["thumbnails"]) == ("ok", 34, 34)
    # Prefect's own server ran the flow: its database holds the run's artifact.
    prefect_db = sqlite3.connect(tmp_path / "prefect-home" / "prefect.db")
    assert prefect_db.execute("SELECT COUNT(*) FROM artifact WHERE key = 'catalog-run-summary'").fetchone()[0] == 1


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


@pytest.mark.slow
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
        counts = json.loads(rerun.stdout)  # copies (landscape_N) take an answer already bought
        assert counts["analysed"] + counts["reused"] == 34 - len(done_before)
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
    copied = {r[0] for r in db.execute("SELECT photo_id FROM analyses WHERE copied_from IS NOT NULL")}
    for photo_id, path in paths.items():
        count = sent.get(upload_digest(Path(path)), 0)
        if photo_id in copied:  # a copy took the answer bought for its original
            assert count == 0, f"{path} was paid for, yet took a copy's answer"
        elif photo_id in done_before:
            assert count == 1, f"{path} was paid for twice"
        else:
            assert 1 <= count <= 2, path  # at most once more than the answer lost in the kill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def unit(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a deploy/ unit, as systemd reads them (comments skipped)."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def unit_env(settings: dict[str, list[str]], files: dict[str, Path], **overrides) -> dict:
    """The environment systemd would give the unit; `files` maps its EnvironmentFile paths to test files."""
    env: dict[str, str] = {}
    for assignment in settings.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    for name in settings.get("EnvironmentFile", []):
        optional, path = name.startswith("-"), name.lstrip("-")
        if path not in files:
            assert optional, f"required {path} has no test file"
            continue
        for line in files[path].read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
    env.update(overrides)
    return env


def unit_command(settings: dict[str, list[str]]) -> list[str]:
    """ExecStart with the installed venv's scripts replaced by this interpreter's modules."""
    [command] = settings["ExecStart"]
    program, *args = command.split()
    assert program.startswith("/opt/catalog/.venv/bin/"), program
    return [sys.executable, "-m", program.rsplit("/", 1)[1], *args]


def test_deploy_units_are_valid_and_use_authentication(tmp_path):
    server, schedule = unit("prefect-server.service"), unit("catalog-schedule.service")
    auth = "/etc/catalog/prefect-auth.env"
    # Both read the root-only password file, and neither starts without it (no leading "-").
    assert auth in server["EnvironmentFile"] and auth in schedule["EnvironmentFile"]
    # The key stays in its own file, which the server never sees.
    assert "-/etc/catalog/secrets.env" in schedule["EnvironmentFile"]
    assert not any("secrets" in f for f in server["EnvironmentFile"])
    assert server["UMask"] == ["0077"] and server["StateDirectoryMode"] == ["0700"]
    assert not any("AUTH_STRING" in e for e in server.get("Environment", []) + schedule.get("Environment", []))
    # The README's recipe writes the names Prefect reads.
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_SERVER_API_AUTH_STRING

    readme = (DEPLOY.parent / "README.md").read_text()
    assert f"{PREFECT_SERVER_API_AUTH_STRING.name}=%s" in readme and f"{PREFECT_API_AUTH_STRING.name}=%s" in readme
    assert auth in readme
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: checked the units by parsing only")
    for name in ("prefect-server.service", "catalog-schedule.service"):
        text = (DEPLOY / name).read_text().replace("/opt/catalog/.venv", str(Path(sys.executable).parent.parent))
        (tmp_path / name).write_text(text)
    verified = subprocess.run(["systemd-analyze", "verify", "prefect-server.service", "catalog-schedule.service"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def stop(proc) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_photos):
    """The deploy units for real: a password-protected Prefect server and `catalog schedule`, one per module."""
    base = tmp_path_factory.mktemp("served")
    library = base / "photos"
    shutil.copytree(shared_photos / "real", library)
    (base / "config.toml").write_text(f'database = "{base / "catalog.db"}"\n[library]\nroots = ["{library}"]\n')
    password = f"catalog:{secrets.token_urlsafe(18)}"
    auth = base / "prefect-auth.env"
    auth.write_text(f"PREFECT_SERVER_API_AUTH_STRING={password}\nPREFECT_API_AUTH_STRING={password}\n")
    files = {"/etc/catalog/prefect-auth.env": auth}
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMGTAGS_", "CATALOG_"))}
    server_unit, schedule_unit = unit("prefect-server.service"), unit("catalog-schedule.service")
    server_env = {**clean, **unit_env(server_unit, files, PREFECT_HOME=str(base / "server-home"))}
    command = [str(port) if arg == "4200" else arg for arg in unit_command(server_unit)]
    server = subprocess.Popen(command, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    schedule_env = {**clean, **unit_env(schedule_unit, files, PREFECT_API_URL=api,
                                         CATALOG_CONFIG=str(base / "config.toml"),
                                         PREFECT_HOME=str(base / "client-home"), NO_PROXY="127.0.0.1,localhost")}
    log = (base / "schedule.log").open("w+")
    schedule = None
    try:
        wait_for_prefect(api, 180, server)
        schedule = subprocess.Popen([*unit_command(schedule_unit), "--interval", "10"], env=schedule_env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        yield types.SimpleNamespace(api=api, auth=httpx.BasicAuth(*password.split(":", 1)), base=base,
                                    library=library, env=schedule_env, schedule=schedule, log=base / "schedule.log")
    finally:
        stop(schedule)
        stop(server)
        log.close()


def api(served, method: str, path: str, **kwargs) -> httpx.Response:
    """A call to the served Prefect API with the password; its SQLite answers 503 now and then when busy."""
    for _ in range(10):
        response = httpx.request(method, f"{served.api}{path}", auth=served.auth, timeout=30, **kwargs)
        if response.status_code != 503:
            return response
        time.sleep(1)
    return response


def deployment_id(served) -> str:
    deadline = time.monotonic() + 240
    while True:
        assert served.schedule.poll() is None, served.log.read_text()
        found = api(served, "POST", "/deployments/filter", json={}).json()
        if found:
            return found[0]["id"]
        assert time.monotonic() < deadline, "the deployment never appeared"
        time.sleep(1)


def final_state(served, run_id: str) -> dict:
    deadline = time.monotonic() + 300
    while True:
        run = api(served, "GET", f"/flow_runs/{run_id}").json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        assert served.schedule.poll() is None, served.log.read_text()
        assert time.monotonic() < deadline, f"flow run {run_id} still {run['state_type']}"
        time.sleep(1)


@pytest.mark.slow
def test_scheduled_run_fires_on_a_password_protected_server(served):
    deployment = deployment_id(served)
    # Without the password the server refuses everything but its health check.
    assert httpx.post(f"{served.api}/flow_runs/filter", timeout=10, json={}).status_code == 401
    assert httpx.post(f"{served.api}/deployments/{deployment}/create_flow_run", timeout=10,
                      json={}).status_code == 401
    refused = catalog("schedule", "--name", "intruder", env={**served.env, "PREFECT_API_AUTH_STRING": ""})
    assert refused.returncode == 2 and "refused us (401)" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr
    # With it, the schedule fired and the run went through.
    deadline = time.monotonic() + 300
    completed = []
    while not completed:
        assert served.schedule.poll() is None, served.log.read_text()
        assert time.monotonic() < deadline, "no scheduled run completed"
        time.sleep(2)
        runs = api(served, "POST", "/flow_runs/filter", json={
            "limit": 5, "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
        completed = [r for r in runs if r["deployment_id"] and not r["parameters"]]
    db = sqlite3.connect(served.base / "catalog.db")
    status, counts = db.execute(
        "SELECT status, counts FROM runs WHERE command = 'run' AND status != 'running' ORDER BY id LIMIT 1").fetchone()
    assert status == "ok" and json.loads(counts)["analysed"] == 34


@pytest.mark.slow
def test_served_deployment_parameters_cannot_choose_settings(served, tmp_path):
    deployment = deployment_id(served)
    # No more scheduled runs: only the attempts below.
    api(served, "POST", f"/deployments/{deployment}/pause_deployment").raise_for_status()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(next(served.library.glob("*.jpg")), outside / "stolen.jpg")
    (served.library / "link-out").symlink_to(outside)
    with serve_imgtags(key="attacker") as attacker:
        evil = tmp_path / "evil.toml"
        evil.write_text(f'database = "{tmp_path / "evil.db"}"\n[analysis]\nanalyzer = "imgtags"\n'
                        f'[imgtags]\nbase_url = "{attacker.base_url}"\n[library]\nroots = ["{outside}"]\n')
        attempts = {
            "config_file": {"config_file": str(evil)},
            "database": {"database": str(tmp_path / "evil.db"), "paths": [str(served.library)]},
            "dotdot": {"paths": [f"{served.library}/../../{tmp_path.name}/elsewhere"]},
            "symlink": {"paths": [str(served.library / "link-out")]},
            "narrowed": {"paths": [str(served.library / "dup")]},
        }
        runs = {}
        for name, parameters in attempts.items():
            created = api(served, "POST", f"/deployments/{deployment}/create_flow_run",
                          json={"parameters": parameters})
            assert created.status_code == 201, created.text
            runs[name] = created.json()["id"]
        states = {name: final_state(served, run_id) for name, run_id in runs.items()}
        assert len(attacker.requests) == 0
    assert not (tmp_path / "evil.db").exists()
    for name in ("config_file", "database"):  # the flow has no such parameter: the run fails before it reads anything
        assert states[name]["state_type"] in ("FAILED", "CRASHED"), states[name]
    for name in ("dotdot", "symlink"):
        assert states[name]["state_type"] == "FAILED", states[name]
        assert "not inside library.roots" in states[name]["state"]["message"]
    assert states["narrowed"]["state_type"] == "COMPLETED", states["narrowed"]
    db = sqlite3.connect(served.base / "catalog.db")
    assert db.execute("SELECT COUNT(*) FROM files WHERE path LIKE ?", [f"{outside}%"]).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM files WHERE name = 'stolen.jpg'").fetchone()[0] == 0
    counts = [json.loads(c) for (c,) in db.execute("SELECT counts FROM runs WHERE command = 'run' AND counts IS NOT NULL")]
    assert any(c["files_seen"] == 1 for c in counts)  # the narrowed run scanned dup/ only
    # The schedule's terminal: one line per refused run, never a traceback or Prefect's own errors.
    output = served.log.read_text()
    assert "Traceback" not in output and "Encountered exception" not in output, output
    assert "has no password" not in output  # (it has one)
    assert output.count("not inside library.roots") == 2, output
