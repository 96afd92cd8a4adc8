"""Benchmark: the fixed cost of `catalog run` and the overhead of one Prefect task run.

Measures, on an already-catalogued demo library (an empty change set):
  1. `catalog run` wall time in Prefect's ephemeral mode (what cron sees), and the
     same against a running `prefect server start` (PREFECT_API_URL set);
  2. the same run's own work (the flow's `seconds`), to show what is Prefect start-up;
  3. per-task overhead: a flow of N no-op tasks vs N plain calls, in one process.
Goals (issue 4): ephemeral <= 8 s fixed, <= 5 ms per task.

    .venv/bin/python bench/flow.py [--runs 3] [--tasks 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_model, load_average, markdown_table

from catalog.ephemeral import wait_for_prefect

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def catalog_run(env: dict) -> tuple[float, float]:
    started = time.perf_counter()
    out = subprocess.run([PY, "-m", "catalog", "run", "--json", env["DEMO"]], env=env, capture_output=True,
                         text=True, timeout=600)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"catalog run failed: {out.stderr[-2000:]}")
    return wall, json.loads(out.stdout)["seconds"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TASK_SCRIPT = r"""
import os, sys, time
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
N = int(sys.argv[1])

@task(cache_policy=NO_CACHE)
def noop(i):
    return i

@flow
def many():
    for i in range(N):
        noop(i)

@flow
def none():
    for i in range(N):
        noop.fn(i)

none()  # warm: server up, flow registered
t = time.perf_counter(); none(); base = time.perf_counter() - t
t = time.perf_counter(); many(); tasks = time.perf_counter() - t
print((tasks - base) / N * 1000)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="catalog-bench-flow-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CATALOG_", "IMGTAGS_"))}
        env.update(PREFECT_HOME=str(work / "prefect"), CATALOG_DB=str(work / "catalog.db"),
                   DEMO=str(work / "demo"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        subprocess.run([PY, "-m", "catalog", "demo", env["DEMO"]], env=env, check=True, capture_output=True)
        catalog_run(env)  # first run: catalogue the demo, create Prefect's database
        eph = [catalog_run(env) for _ in range(args.runs)]

        port = free_port()
        server_env = {**env, "PREFECT_HOME": str(work / "server")}
        server = subprocess.Popen([PY, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                                   str(port)], env=server_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            api = f"http://127.0.0.1:{port}/api"
            try:
                wait_for_prefect(api, 180, server)
            except RuntimeError as exc:
                sys.exit(str(exc))
            served_env = {**server_env, "PREFECT_API_URL": api}
            catalog_run(served_env)
            srv = [catalog_run(served_env) for _ in range(args.runs)]
            per_task = float(subprocess.run([PY, "-c", TASK_SCRIPT, str(args.tasks)], env=served_env,
                                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        per_task_eph = float(subprocess.run([PY, "-c", TASK_SCRIPT, str(args.tasks)], env=env,
                                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    e_wall, e_work = med([w for w, _ in eph]), med([s for _, s in eph])
    s_wall, s_work = med([w for w, _ in srv]), med([s for _, s in srv])
    load = load_average()
    rows = [
        ("`catalog run`, empty change set, ephemeral Prefect", f"{e_wall:.2f} s", f"{e_work:.2f} s", "<= 8 s",
         "pass" if e_wall <= 8 else "FAIL"),
        ("`catalog run`, empty change set, Prefect server", f"{s_wall:.2f} s", f"{s_work:.2f} s", "(reported)", ""),
        (f"task run overhead, ephemeral ({args.tasks} tasks)", f"{per_task_eph:.2f} ms", "", "<= 5 ms",
         "pass" if per_task_eph <= 5 else "FAIL"),
        (f"task run overhead, Prefect server ({args.tasks} tasks)", f"{per_task:.2f} ms", "", "<= 5 ms",
         "pass" if per_task <= 5 else "FAIL"),
    ]
    print(markdown_table(("Measurement", "wall", "of which catalog's work", "goal", "result"), rows, right=(1, 2)))
    print(f"\nmedian of {args.runs} runs; {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
          f"load average {load:.1f}")


if __name__ == "__main__":
    main()
