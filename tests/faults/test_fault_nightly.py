"""Fault cases for the nightly job: two runs at once, failed flows, private files, through the real CLI.

The cases that start Prefect share one fresh Prefect home (its first run migrates
Prefect's database, the others reuse it). The served deployment and the Prefect
server's password are tried in tests/test_flow.py (they need a real server).
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit import crashes, key_places, run_cli
from imgtags_server import serve_imgtags

PREFECT_NOISE = re.compile(r"Encountered exception|Traceback|prefect\.|Flow run '|Task run '|\| (ERROR|WARNING)")


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """Not created yet: `catalog run` creates it (and must make it owner-only)."""
    return tmp_path_factory.mktemp("nightly") / "prefect-home"


@pytest.fixture
def env(tmp_path, prefect_home, monkeypatch) -> dict:
    for name in list(os.environ):
        if name.startswith("PREFECT_"):
            monkeypatch.delenv(name)
    return {"PREFECT_HOME": str(prefect_home), "CATALOG_DB": str(tmp_path / "db" / "catalog.db"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def one_line_failure(result) -> bool:
    """Exactly one `catalog: error:` line and nothing from Prefect on either stream."""
    text = result.stdout + result.stderr
    return (result.stderr.count("catalog: error:") == 1 and not PREFECT_NOISE.search(text)
            and all(line.startswith("catalog: ") for line in result.stderr.splitlines()))


def start(args, env) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen([sys.executable, "-m", "catalog", *map(str, args)], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    return proc, time.perf_counter()


def finish(started: list[tuple[subprocess.Popen, float]]) -> list[tuple[subprocess.CompletedProcess, float, float]]:
    """Wait for every process: (result, wall seconds, CPU seconds of its own), CPU from the kernel's rusage."""
    done: dict[int, tuple[int, float, float]] = {}
    while len(done) < len(started):
        for i, (proc, begun) in enumerate(started):
            if i in done:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                done[i] = (os.waitstatus_to_exitcode(status), time.perf_counter() - begun,
                           usage.ru_utime + usage.ru_stime)
        time.sleep(0.005)
    results = []
    for i, (proc, _) in enumerate(started):
        proc.returncode = done[i][0]
        out, err = proc.communicate()
        results.append((subprocess.CompletedProcess(proc.args, done[i][0], out, err), done[i][1], done[i][2]))
    return results


@pytest.mark.slow
def test_fault_two_runs_started_together(photos, env, figures):
    """Two `catalog run` started in the same instant: one runs, the other is refused before Prefect starts."""
    [(bare, _, bare_cpu)] = finish([start(["--version"], env)])  # Python and the CLI, doing nothing
    assert bare.returncode == 0
    outcomes = finish([start(["run", photos / "real"], env), start(["run", photos / "real"], env)])
    figures.crashes = sum(crashes(result) for result, _, _ in outcomes)
    ran = [o for o in outcomes if o[0].returncode == 0]
    refused = [o for o in outcomes if o[0].returncode != 0]
    assert len(ran) == 1 and len(refused) == 1, [o[0].stderr for o in outcomes]
    (winner, winner_wall, _), (loser, loser_wall, loser_cpu) = ran[0], refused[0]
    assert re.match(r"Run \d+ \(ok\)", winner.stdout), winner.stderr
    assert loser.returncode == 1 and loser.stdout == ""
    assert loser.stderr.count("\n") == 1 and "another run" in loser.stderr, loser.stderr
    own_work = loser_cpu - bare_cpu
    assert own_work < 1.0, f"the refused run used {loser_cpu:.2f} s of CPU (a bare start {bare_cpu:.2f} s)"
    assert loser_wall < winner_wall / 2  # refused long before the winner's Prefect had started
    db = sqlite3.connect(env["CATALOG_DB"])
    assert db.execute("SELECT COUNT(*) FROM runs WHERE command = 'run'").fetchone()[0] == 1
    figures.note = (f"refused after {loser_wall:.2f} s wall, {loser_cpu:.2f} s CPU "
                    f"({max(own_work, 0):.2f} s beyond a bare CLI start); the other ran in {winner_wall:.1f} s")


@pytest.mark.slow
def test_fault_catalogue_and_prefect_files_are_private(photos, tmp_path, env, prefect_home, figures):
    """The database, its -wal/-shm, its lock and Prefect's home (database, results) are owner-only."""
    if not prefect_home.exists():  # run alone: let a run create Prefect's home (in order, the first case did)
        (tmp_path / "empty").mkdir()
        assert run_cli("run", tmp_path / "empty", env={**env, "CATALOG_DB": str(tmp_path / "other.db")}).returncode == 0
    database = Path(env["CATALOG_DB"])
    wal_shm = [Path(f"{database}-wal"), Path(f"{database}-shm")]
    proc, _ = start(["scan", photos / "real"], env)
    seen: dict[str, set[int]] = {}
    while proc.poll() is None:  # -wal and -shm exist only while the catalogue is open
        for path in wal_shm:
            try:
                seen.setdefault(path.name, set()).add(mode(path))
            except FileNotFoundError:
                pass
        time.sleep(0.001)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, *proc.communicate())
    assert result.returncode == 0, result.stderr
    figures.crashes = crashes(result)
    assert seen == {"catalog.db-wal": {0o600}, "catalog.db-shm": {0o600}}
    files = [database, Path(f"{database}.lock"), prefect_home / "prefect.db"]
    folders = [database.parent, prefect_home, prefect_home / "storage"]
    loose = {str(p): oct(mode(p)) for p in files if mode(p) != 0o600}
    loose |= {str(p): oct(mode(p)) for p in folders if mode(p) != 0o700}
    assert not loose
    figures.note = f"{len(files) + 2} files 0600 (-wal/-shm seen while open), {len(folders)} folders 0700"


def test_fault_loose_catalogue_is_tightened(photos, env, figures):
    """A catalogue left readable by others (0644, -wal too) is made owner-only with one log line."""
    database = Path(env["CATALOG_DB"])
    assert run_cli("scan", photos / "real", env=env).returncode == 0
    for path in (database, Path(f"{database}.lock")):
        path.chmod(0o644)
    Path(f"{database}-wal").write_bytes(b"")
    Path(f"{database}-wal").chmod(0o666)
    result = run_cli("scan", photos / "real", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("was readable by other users") == 3, result.stderr
    assert {mode(database), mode(f"{database}.lock")} == {0o600}  # (the -wal is gone once the scan closes)
    figures.crashes = crashes(result)
    figures.note = "0644/0666 -> 0600 for the database, its -wal and its lock, one log line each"


def test_fault_corrupt_catalogue_is_one_line(photos, env, figures):
    """A database that is not SQLite: one line, exit 1, before Prefect starts."""
    database = Path(env["CATALOG_DB"])
    database.parent.mkdir(parents=True)
    database.write_bytes(b"this is not a database " * 100)
    started = time.perf_counter()
    result = run_cli("run", photos / "real", env=env)
    took = time.perf_counter() - started
    assert result.returncode == 1 and one_line_failure(result), result.stderr
    assert "not a database" in result.stderr
    figures.crashes = crashes(result)
    figures.note = f"one line in {took:.2f} s"


@pytest.mark.slow
def test_fault_every_root_gone_is_one_error_line(tmp_path, env, figures):
    """Every root unavailable (an unmounted share): one error line, no Prefect logs or tracebacks."""
    result = run_cli("run", tmp_path / "unmounted", env=env)
    assert result.returncode == 1 and one_line_failure(result), result.stderr
    assert "every library root is unavailable" in result.stderr
    figures.crashes = crashes(result)
    figures.note = f"{len(result.stderr.splitlines())} stderr lines (the root's reason, then the error)"


@pytest.mark.slow
def test_fault_refused_key_is_one_line(photos, env, figures):
    """The API refuses the key: exit 2, one line, no Prefect traceback, the key printed nowhere,
    and the photos browsable all the same (thumbnails are made before analysis, at no cost)."""
    with serve_imgtags(key="the-right-key") as server:
        result = run_cli("run", photos / "real", env={**env, "IMGTAGS_API_KEY": "ImgKey-wrong-9Zq",
                                                      "IMGTAGS_BASE_URL": server.base_url})
    assert result.returncode == 2 and one_line_failure(result), result.stderr
    figures.crashes = crashes(result)
    figures.key_found = key_places("ImgKey-wrong-9Zq", texts=[result.stdout, result.stderr])
    assert figures.key_found == 0
    with sqlite3.connect(env["CATALOG_DB"]) as db:
        assert db.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0] == 34
    figures.note = f"exit 2: {result.stderr.strip()[:90]}"
