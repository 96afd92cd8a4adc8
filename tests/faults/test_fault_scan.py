"""Scan and upload preparation: FIFOs, files cut under the reader, paths too long, huge decodes.

Each case runs in a child process, so a hang, a death by signal or a blown memory budget is
seen as what it is.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

from audit import crashes, run_cli
from scanproc import alive, descendants, scan_env, start_scan, tiny_jpegs, wait_for_rows

SWAP_TO_FIFO = textwrap.dedent("""
    import os, sys, time
    import catalog.scan as scan_module
    from catalog.settings import Config
    from catalog.db import open_db

    root, db_path = sys.argv[1], sys.argv[2]
    real_walk = scan_module.walk

    def swapping_walk(*args, **kwargs):
        for folder in real_walk(*args, **kwargs):
            for name, _ in folder.files[::2]:  # listed as photos, FIFOs by the time they are read
                os.unlink(os.path.join(folder.path, name))
                os.mkfifo(os.path.join(folder.path, name))
            yield folder

    scan_module.walk = swapping_walk
    started = time.perf_counter()
    summary = scan_module.scan(open_db(db_path), Config(), [root], progress=False)
    print(summary.errors, summary.files_seen, round(time.perf_counter() - started, 3))
""")


def test_fifo_swapped_in_after_listing(tmp_path, shared_photos, figures):
    """Half the listed photos become FIFOs before they are opened: skipped at once, no hang."""
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(8):
        shutil.copy(shared_photos / "real/hopper.gif", root / f"{i}.gif")
    try:
        result = subprocess.run([sys.executable, "-c", SWAP_TO_FIFO, str(root), str(tmp_path / "c.db")],
                                capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        figures.crashes, figures.note = 1, "the scan hung in fifo_open (killed after 60 s)"
        raise
    figures.crashes = crashes(result)
    errors, seen, seconds = result.stdout.split()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        kinds = dict(conn.execute("SELECT error_kind, COUNT(*) FROM files GROUP BY error_kind").fetchall())
    figures.note = f"{errors} FIFOs of {seen} files skipped, scan done in {seconds} s"
    assert result.returncode == 0 and (errors, seen) == ("4", "8")
    assert kinds == {"not_a_file": 4, None: 4}


def _pids_files(pid: int) -> set[str]:
    """Files open in process `pid` or any process under it (the scan's worker processes)."""
    found = set()
    for each in (pid, *descendants(pid)):
        try:
            for fd in os.listdir(f"/proc/{each}/fd"):
                try:
                    found.add(os.readlink(f"/proc/{each}/fd/{fd}"))
                except OSError:
                    pass
        except OSError:
            pass
    return found


def test_file_truncated_while_it_is_hashed(tmp_path, shared_photos, figures):
    """Another process cuts two 128 MiB photos to 1 MiB while the scan reads them: no SIGBUS."""
    root = tmp_path / "lib"
    root.mkdir()
    targets = [root / "a.gif", root / "b.gif"]
    block = random.Random(7).randbytes(1 << 20)
    for target in targets:  # a real GIF, then 128 MiB of trailing data (whole-file identity)
        with open(target, "wb") as f:
            f.write((shared_photos / "real/hopper.gif").read_bytes())
            for _ in range(128):
                f.write(block)
    env = {"CATALOG_DB": str(tmp_path / "c.db")}
    child = subprocess.Popen([sys.executable, "-m", "catalog", "scan", "--json", str(root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    pending, cut = {str(t) for t in targets}, 0
    deadline = time.monotonic() + 60
    while pending and child.poll() is None and time.monotonic() < deadline:
        for path in pending & _pids_files(child.pid):
            os.truncate(path, 1 << 20)
            pending.discard(path)
            cut += 1
    out, err = child.communicate(timeout=60)
    figures.crashes = int(child.returncode < 0 or "Traceback" in err)
    with sqlite3.connect(tmp_path / "c.db") as conn:
        rows = conn.execute("SELECT name, status, error_kind, mtime_ns FROM files ORDER BY name").fetchall()
    again = run_cli("scan", "--json", root, env=env, timeout=60)
    summary = json.loads(again.stdout)
    figures.note = (f"{cut} of 2 files cut mid-read: exit {child.returncode}, "
                    f"{sum(r[2] == 'changed_while_reading' for r in rows)} recorded as changed, "
                    f"{summary['changed']} read again by the next scan")
    assert child.returncode in (0, 1), err[-2000:]  # -7 was SIGBUS through mmap
    assert cut == 2 and len(rows) == 2
    assert all(r[2] == "changed_while_reading" and r[3] == -1 for r in rows), rows
    assert summary["changed"] == 2 and summary["errors"] == 0


def test_paths_too_long_for_the_system(tmp_path, shared_photos, figures):
    """A photo and a folder past PATH_MAX: reported as errors by `catalog scan`, not dropped."""
    root = tmp_path / "lib"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    length = len(os.fsencode(root))
    while length < 3895:  # folders nested by descriptor, as a copy tool would make them: 3,895 bytes
        name = b"d" * min(200, 3895 - length - 1)
        os.mkdir(name, dir_fd=fd)
        fd, old = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(old)
        length += 1 + len(name)
    out = os.open(b"p" * 240 + b".gif", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, (shared_photos / "real/hopper.gif").read_bytes())
    os.close(out)
    os.mkdir(b"q" * 250, dir_fd=fd)
    os.close(fd)
    result = run_cli("scan", "--json", root, env={"CATALOG_DB": str(tmp_path / "c.db")}, timeout=60)
    figures.crashes = crashes(result)
    summary = json.loads(result.stdout)
    figures.note = (f"{summary['paths_too_long']} paths too long reported "
                    f"({summary['errors']} errors, exit {result.returncode}), 0 dropped silently")
    assert result.returncode == 1 and summary["paths_too_long"] == 2 and summary["errors"] == 2
    assert "path too long for the system" in result.stderr


def _big_png(path: Path, side: int) -> None:
    """An RGB PNG of side x side pixels, streamed row by row (the test never holds it decoded)."""
    pattern = random.Random(1).randbytes(3000)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        row_len, pieces = side * 3, []
        long_row = pattern * (row_len // 3000 + 2)
        for y in range(side):
            off = (y * 7) % 3000
            pieces.append(z.compress(b"\x00" + long_row[off : off + row_len]))
            if sum(map(len, pieces)) > 1 << 20:
                f.write(chunk(b"IDAT", b"".join(pieces)))
                pieces = []
        pieces.append(z.flush())
        f.write(chunk(b"IDAT", b"".join(pieces)) + chunk(b"IEND", b""))


PREPARE_FOUR = textwrap.dedent("""
    import resource, sys, time
    from concurrent.futures import ThreadPoolExecutor
    from catalog.settings import Config
    from catalog.prepare import prepare_upload

    a = Config().analysis
    started = time.perf_counter()
    with ThreadPoolExecutor(a.concurrency) as pool:  # as the analysis stage runs them
        uploads = list(pool.map(lambda p: prepare_upload(p, max_upload_bytes=a.max_upload_bytes), sys.argv[1:]))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, round(time.perf_counter() - started, 1),
          max(len(u.data) for u in uploads), a.concurrency)
""")


def test_four_169_megapixel_pngs_prepared_at_once(tmp_path, figures):
    """Four 13,000 x 13,000 PNGs (under the pixel limit) prepared by the default 4 workers: peak < 1 GB."""
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    _big_png(paths[0], 13_000)
    for path in paths[1:]:
        shutil.copy(paths[0], path)
    result = subprocess.run([sys.executable, "-c", PREPARE_FOUR, *map(str, paths)],
                            capture_output=True, text=True, timeout=300)
    figures.crashes = crashes(result)
    peak_mb, seconds, biggest, workers = result.stdout.split()
    figures.note = f"peak {peak_mb} MB for 4 x 169 MP with {workers} workers, {seconds} s (2.6-3.2 GB before this fix)"
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(peak_mb) < 1024 and int(biggest) <= 10_000_000


# Enough files that the signal lands while the scan still reads (an idle 2-core box reads
# 3,000 tiny JPEGs in about a second after the first batch is written).
FIRST_SCAN_FILES = 12_000


def test_ctrl_c_during_a_first_scan_with_worker_processes(tmp_path, figures):
    """Ctrl-C (SIGINT to the process group) mid-scan: exit 130 in seconds, no worker left, rerun finishes."""
    root, db = tmp_path / "lib", tmp_path / "c.db"
    tiny_jpegs(root, FIRST_SCAN_FILES)
    child = start_scan(root, db)
    written, workers = wait_for_rows(db, child)
    stopped = time.monotonic()
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=60)
    seconds = time.monotonic() - stopped
    time.sleep(0.5)
    left = alive(workers)
    figures.crashes = int(child.returncode < 0 or "Traceback" in err)
    again = subprocess.run([sys.executable, "-m", "catalog", "scan", "--json", str(root)], capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL, env=scan_env(db))
    summary = json.loads(again.stdout)
    figures.note = (f"stopped {seconds:.1f} s after Ctrl-C (exit {child.returncode}), {len(left)} of {len(workers)} "
                    f"processes under it left; {written} files kept, the rerun read the other {summary['new']}")
    assert child.returncode == 130, err[-2000:]
    assert err.strip() == "catalog: interrupted; a rerun continues where this one stopped"
    assert seconds < 10 and len(workers) >= 3 and not left  # the fork server and two workers at least
    assert again.returncode == 0 and summary["files_seen"] == FIRST_SCAN_FILES and summary["errors"] == 0
    assert summary["unchanged"] >= written and summary["new"] == FIRST_SCAN_FILES - summary["unchanged"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM photos WHERE phash IS NOT NULL").fetchone()[0] == FIRST_SCAN_FILES


def test_scan_killed_with_worker_processes(tmp_path, figures):
    """SIGKILL to the scanning process alone: its fork server and worker processes end with it."""
    root, db = tmp_path / "lib", tmp_path / "c.db"
    tiny_jpegs(root, FIRST_SCAN_FILES)
    child = start_scan(root, db)
    _, workers = wait_for_rows(db, child)
    child.kill()
    child.communicate(timeout=60)
    killed = time.monotonic()
    while alive(workers) and time.monotonic() < killed + 10:
        time.sleep(0.1)
    figures.note = f"{len(alive(workers))} of {len(workers)} processes under the scan left {time.monotonic() - killed:.1f} s after it died"
    assert workers and not alive(workers)
