"""Analysis on a real Dask cluster (2 worker processes) against the loopback ImgTags server.

Every photo analysed once, the API's rate held across both workers, the same catalogue as a
run on threads, and a worker killed mid-run costs no photo. Starts Prefect, so `slow`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from imgtags_server import serve_imgtags

pytest.importorskip("prefect_dask")
distributed = pytest.importorskip("distributed")

KEY = "DaskKey-9Xq2Lw"
PER_MINUTE = 300  # fast enough for a test; the shared limit still spaces requests 0.2 s apart
# Columns that say when, or how long, not what: they differ between any two runs.
WHEN = ("first_seen", "analysed_at", "last_attempt_at", "produced_at", "processing_time_ms")


@pytest.fixture
def cluster(tmp_path_factory):
    """Two worker processes, one thread each; their environment holds no API key nor URL. One per
    test: each `catalog run` has its own temporary Prefect server, and a worker's Prefect event
    service stays bound to the first server it talked to."""
    home = tmp_path_factory.mktemp("worker-prefect-home")
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith(("IMGTAGS_", "PREFECT_"))]:
        del os.environ[name]
    os.environ.update(PREFECT_HOME=str(home), NO_PROXY="127.0.0.1,localhost")
    try:
        local = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                         dashboard_address=None, host="127.0.0.1")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with local, distributed.Client(local) as client:
        yield local, client


def catalogue(db_path) -> dict[str, list]:
    """The photos and analyses tables minus times and run ids, sorted."""
    db = sqlite3.connect(db_path)
    tables = {}
    for table in ("photos", "analyses"):
        names = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if r[1] not in WHEN and r[1] != "run_id"]
        tables[table] = sorted(db.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall(), key=repr)
    return tables


def run_catalog(library, tmp_path, server, task_runner, *, env_base, during=None):
    """`catalog run` in its own process with this task runner; `during(proc)` runs meanwhile."""
    config = tmp_path / f"{tmp_path.name}.toml"
    config.write_text(f'[analysis]\nrequests_per_minute = {PER_MINUTE}\nconcurrency = 2\n'
                      f'[schedule]\nbatch_size = 4\ntask_runner = "{task_runner}"\n')
    env = {**env_base, "CATALOG_DB": str(tmp_path / "catalog.db"), "IMGTAGS_API_KEY": KEY,
           "IMGTAGS_BASE_URL": server.base_url}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "catalog", "--config", str(config), "run", "--json", str(library)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=during, args=(proc,), daemon=True) if during else None
    if watcher:
        watcher.start()
    out, err = proc.communicate(timeout=240)
    if watcher:
        watcher.join(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    return json.loads(out), time.monotonic() - started


def most_in_window(times: list[float], seconds: float) -> int:
    times, most, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.fixture
def env_base(tmp_path_factory):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "IMGTAGS_", "CATALOG_"))}
    env.update(PREFECT_HOME=str(tmp_path_factory.mktemp("prefect-home")), CATALOG_ENRICHERS="places",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_PROXY="127.0.0.1,localhost")
    return env


# The smallest distinct pictures of photos/real (the landscape_N files are one picture turned 8
# ways: copies, reused, not bought), so three `catalog run`s stay short on a 2-core CI.
PHOTOS = 12


def copy_of(photos, dest):
    """PHOTOS good photos (edge/ holds broken files: recorded, exit 1), at a path of their own."""
    real = sorted((p for p in (photos / "real").iterdir() if p.is_file() and not p.name.startswith("landscape_")),
                  key=lambda p: (p.stat().st_size, p.name))[:PHOTOS]
    dest.mkdir(parents=True)
    for path in real:
        shutil.copy2(path, dest / path.name)
    return dest


@pytest.mark.slow
def test_dask_workers_analyse_each_photo_once_at_the_shared_rate(photos, tmp_path, cluster, env_base):
    local, client = cluster
    (tmp_path / "threads").mkdir()
    (tmp_path / "dask").mkdir()
    with serve_imgtags(key=KEY, latency=0.05, rate_limit=PER_MINUTE) as on_threads:
        threads, _ = run_catalog(copy_of(photos, tmp_path / "threads" / "lib"), tmp_path / "threads",
                                 on_threads, "threads", env_base=env_base)
    with serve_imgtags(key=KEY, latency=0.05, rate_limit=PER_MINUTE) as server:
        summary, seconds = run_catalog(copy_of(photos, tmp_path / "dask" / "lib"), tmp_path / "dask", server,
                                       local.scheduler_address, env_base=env_base)
    paid = [r for r in server.requests if r.paid]
    bought = Counter(r.fields["image"]["sha256"] for r in paid)
    assert summary["analysed"] == threads["analysed"] == len(paid) == len(bought)  # each photo paid once
    assert summary["analysed"] + summary["reused"] == PHOTOS and summary["failed"] == 0
    assert server.rate_limited == 0
    times = [r.at for r in server.requests]
    assert most_in_window(times, 60) <= PER_MINUTE
    # PHOTOS requests fit in one minute whatever the pace; in 2 s at most a thirtieth of the rate may go.
    assert most_in_window(times, 2) <= PER_MINUTE // 30 + 1, most_in_window(times, 2)
    # Both workers did some of it (the Prefect task runs say which), and the catalogue is the same.
    assert catalogue(tmp_path / "dask" / "catalog.db") == catalogue(tmp_path / "threads" / "catalog.db")
    assert len(catalogue(tmp_path / "dask" / "catalog.db")["analyses"]) > PHOTOS  # answers and places rows
    # The key went to the workers inside the batches, yet Prefect recorded it nowhere.
    prefect_files = list(Path(env_base["PREFECT_HOME"]).rglob("prefect.db*"))
    assert prefect_files
    for path in [*tmp_path.rglob("catalog.db*"), *prefect_files]:
        assert KEY.encode() not in path.read_bytes(), path
    print(f"dask run: {len(server.requests)} requests, most in 2 s {most_in_window(times, 2)}, "
          f"in 60 s {most_in_window(times, 60)}, {seconds:.1f} s")


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_no_photo(photos, tmp_path, cluster, env_base):
    local, client = cluster
    killed = []

    def kill_one_worker(proc):
        deadline = time.monotonic() + 220
        while sum(r.paid for r in server.requests) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        pids = client.run(os.getpid)
        address, pid = sorted(pids.items())[0]
        os.kill(pid, signal.SIGKILL)
        killed.append((address, sum(r.paid for r in server.requests)))

    with serve_imgtags(key=KEY, latency=0.05, rate_limit=PER_MINUTE) as server:
        summary, seconds = run_catalog(copy_of(photos, tmp_path / "lib"), tmp_path, server,
                                       local.scheduler_address, env_base=env_base, during=kill_one_worker)
    assert killed and 3 <= killed[0][1] < PHOTOS, killed  # killed mid-run, photos still waiting
    assert summary["analysed"] + summary["reused"] == PHOTOS and summary["failed"] == 0
    db = sqlite3.connect(tmp_path / "catalog.db")
    assert db.execute("SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'").fetchone()[0] == PHOTOS
    paid = [r for r in server.requests if r.paid]
    twice = sum(n - 1 for n in Counter(r.fields["image"]["sha256"] for r in paid).values())
    print(f"worker killed after {killed[0][1]} answers: {len(paid)} paid, {twice} paid twice "
          f"(answers the dead worker had received), {seconds:.1f} s")
    assert twice <= 4  # at most the dead worker's batch in flight (batch_size 4)


@pytest.mark.slow
def test_a_scheduler_that_is_not_there_is_one_line(photos, tmp_path, env_base):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    config = tmp_path / "c.toml"
    config.write_text(f'[schedule]\ntask_runner = "{nobody}"\n')
    result = subprocess.run([sys.executable, "-m", "catalog", "--config", str(config), "run", str(photos / "real")],
                            env={**env_base, "CATALOG_DB": str(tmp_path / "catalog.db")},
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("catalog: error: cannot reach the Dask scheduler at " + nobody), line
    db = sqlite3.connect(tmp_path / "catalog.db")
    assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0  # said before any work
