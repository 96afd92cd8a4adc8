"""Inspectors (threads and worker processes) and the one read per file: same catalogue, clean stops."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from catalog.db import open_db
from catalog.imagefacts import read_facts
from catalog.inspection import inspect_file
from catalog.inspectors import ProcessInspector, ThreadInspector
from catalog.libfile import open_library_file
from catalog.scan import scan
from catalog.settings import Config, ScanSettings
from catalog.similar.fingerprint import fingerprint_file
from catalog.similar.store import columns

MAX_PX = ScanSettings().max_image_pixels
SCANNED = ("SELECT f.path, f.status, f.error_kind, f.error, p.id, p.format, p.width, p.height, p.orientation, "
           "p.taken_at, p.camera_make, p.gps_lat, p.exif_error, p.phash, p.tone, p.detail, p.fingerprint_error "
           "FROM files f LEFT JOIN photos p ON p.id = f.photo_id ORDER BY f.path")


def with_inspector(kind: str, workers: int = 2) -> Config:
    return replace(Config(), scan=replace(Config().scan, inspector=kind, hash_workers=workers))


def tiny_jpegs(folder: Path, count: int) -> None:
    """`count` distinct small JPEGs with a camera in their EXIF, 200 a folder."""
    rng = random.Random(count)
    for i in range(count):
        sub = folder / f"f{i // 200:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        exif[0x010F], exif[0x0112] = "Canon", 1 + i % 8
        Image.frombytes("RGB", (24, 16), rng.randbytes(24 * 16 * 3)).save(sub / f"{i:05d}.jpg", quality=80, exif=exif)


def test_the_one_read_gives_what_separate_reads_give(shared_photos):
    """inspect_file reads each file once and opens it once: facts and fingerprint equal those of
    read_facts and fingerprint_file, each reading the file on its own, for every test photo."""
    checked = 0
    for path in sorted(p for p in (shared_photos / "real").rglob("*") if p.is_file()):
        found = inspect_file(str(path), MAX_PX)
        if found.error is not None:
            continue
        with open_library_file(path) as f:
            assert found.facts == read_facts(f, max_image_pixels=MAX_PX), path
        try:
            expected = columns(fingerprint_file(path, max_image_pixels=MAX_PX))
        except Exception as exc:  # BrokenImage: the reason is recorded the same way
            expected = columns(None, str(exc)[:300])
        assert found.fingerprint == expected, path
        checked += 1
    assert checked >= 20


def test_processes_and_threads_catalogue_the_same(photos, tmp_path):
    """Real and edge photos (broken, empty, not images, odd names) scanned by worker processes and
    by threads: the same rows, the same errors, the same summary."""
    seen = {}
    for kind in ("processes", "threads"):
        db = open_db(tmp_path / f"{kind}.db")
        summary = scan(db, with_inspector(kind), [photos], progress=False)
        seen[kind] = (db.execute(SCANNED).fetchall(),
                      {k: v for k, v in summary.as_dict().items() if k not in ("seconds", "run_id")})
        db.close()
    assert seen["processes"] == seen["threads"]
    rows, summary = seen["processes"]
    assert summary["errors"] > 0 and summary["files_seen"] == len(rows) > 30


@pytest.mark.parametrize("make", [ThreadInspector, ProcessInspector])
def test_an_inspector_answers_a_batch_in_order_and_closes(make, shared_photos, tmp_path):
    """submit(batch) -> future of one Inspection per item, in order; a missing file is an answer too."""
    paths = [str(shared_photos / "real/hopper.gif"), str(tmp_path / "gone.jpg"),
             *map(str, sorted((shared_photos / "real").glob("*.jp*g"))[:3])]
    inspector = make(2)
    try:
        got = inspector.submit([(p, MAX_PX, False) for p in paths]).result(timeout=60)
    finally:
        inspector.close()
    assert [g.error_kind for g in got] == [None, "unreadable", None, None, None]
    assert [g.facts.format for g in got if g.facts] == ["GIF", *(inspect_file(p, MAX_PX).facts.format for p in paths[2:])]


def test_a_worker_dying_mid_batch_loses_nothing(tmp_path):
    """A worker process killed while it reads a batch: the batch is read again, file by file, in a
    fresh pool; every file gets its real answer and none is blamed for the death."""
    root = tmp_path / "lib"
    tiny_jpegs(root, 1500)
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    inspector = ProcessInspector(1)
    try:
        inspector.submit([(paths[0], MAX_PX, False)]).result(timeout=120)  # the pool is up
        worker = next(iter(_alive(_children(os.getpid()) - {os.getpid()}) & set(inspector._pool._processes)))
        answer = inspector.submit([(p, MAX_PX, False) for p in paths])
        time.sleep(0.3)
        assert not answer.done()
        os.kill(worker, signal.SIGKILL)
        got = answer.result(timeout=300)
    finally:
        inspector.close()
    assert inspector.restarts >= 1
    assert len(got) == 1500 and all(g.error is None and g.fingerprint["phash"] is not None for g in got)
    assert [g.identity.digest for g in got[:5]] == [inspect_file(p, MAX_PX).identity.digest for p in paths[:5]]


def _children(pid: int) -> set[int]:
    """Every descendant of `pid` still alive (from /proc)."""
    found, frontier = set(), {pid}
    while frontier:
        parent = frontier.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    frontier.add(kid)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _start_scan(root: Path, db: Path) -> subprocess.Popen:
    """`catalog scan` with worker processes, in its own process group as a terminal would run it."""
    env = {**os.environ, "CATALOG_DB": str(db), "XDG_CONFIG_HOME": str(db.parent / "xdg")}
    return subprocess.Popen([sys.executable, "-m", "catalog", "scan", "--json", str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for_rows(db: Path, child: subprocess.Popen, seconds: float = 120) -> tuple[int, set[int]]:
    """Wait until the scan has written its first batch; its rows and its worker processes then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                rows = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        except sqlite3.Error:
            rows = 0
        if rows:
            return rows, _children(child.pid)
        time.sleep(0.05)
    pytest.fail(f"the scan wrote nothing in {seconds} s (exit {child.poll()})")


def test_ctrl_c_stops_a_process_pool_scan_promptly_and_a_rerun_finishes(tmp_path):
    """Ctrl-C (SIGINT to the whole process group) mid-scan: exit 130 within seconds, one line, no
    worker left behind, every written batch kept; the next scan reads only the rest."""
    root, db = tmp_path / "lib", tmp_path / "c.db"
    tiny_jpegs(root, 3000)
    child = _start_scan(root, db)
    written, workers = _wait_for_rows(db, child)
    stopped = time.monotonic()
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=60)
    seconds = time.monotonic() - stopped
    assert child.returncode == 130, err[-2000:]
    assert err.strip() == "catalog: interrupted; a rerun continues where this one stopped"
    assert seconds < 10
    assert len(workers) >= 3  # the fork server and its two workers at least
    time.sleep(0.5)
    assert not _alive(workers)
    again = subprocess.run([sys.executable, "-m", "catalog", "scan", "--json", str(root)], capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL,
                           env={**os.environ, "CATALOG_DB": str(db), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    summary = json.loads(again.stdout)
    assert again.returncode == 0, again.stderr[-2000:]
    assert summary["files_seen"] == 3000 and summary["errors"] == 0
    assert summary["unchanged"] >= written and summary["new"] == 3000 - summary["unchanged"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM photos WHERE phash IS NOT NULL").fetchone()[0] == 3000


def test_a_killed_scan_leaves_no_worker_behind(tmp_path):
    """SIGKILL to the scanning process alone: its fork server and workers end with it."""
    root, db = tmp_path / "lib", tmp_path / "c.db"
    tiny_jpegs(root, 3000)
    child = _start_scan(root, db)
    _, workers = _wait_for_rows(db, child)
    child.kill()
    child.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not _alive(workers)
