"""Inspectors (threads and worker processes) and the one read per file: the same catalogue, nothing lost.

The stop and kill cases of a scan with worker processes are in tests/faults/test_fault_scan.py.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest

from catalog.db import open_db
from catalog.imagefacts import read_facts
from catalog.inspection import inspect_file
from catalog.inspectors import ProcessInspector, ThreadInspector
from catalog.libfile import open_library_file
from catalog.scan import scan
from catalog.settings import Config, ScanSettings
from catalog.similar.fingerprint import fingerprint_file
from catalog.similar.store import columns
from scanproc import alive, descendants, tiny_jpegs

MAX_PX = ScanSettings().max_image_pixels
SCANNED = ("SELECT f.path, f.status, f.error_kind, f.error, p.id, p.format, p.width, p.height, p.orientation, "
           "p.taken_at, p.camera_make, p.gps_lat, p.exif_error, p.phash, p.tone, p.detail, p.fingerprint_error "
           "FROM files f LEFT JOIN photos p ON p.id = f.photo_id ORDER BY f.path")


def with_inspector(kind: str, workers: int = 2) -> Config:
    return replace(Config(), scan=replace(Config().scan, inspector=kind, hash_workers=workers))


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
        worker = next(iter(alive(descendants(os.getpid())) & set(inspector._pool._processes)))
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
