"""Fault cases for write-back: kills at any moment, full disks, other writers, hostile XMP and links."""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit import crashes, run_cli
from catalog.analysis_db import store_analysis
from catalog.analyzers import Analysis
from catalog.config import Config, WritebackSettings
from catalog.db import close_interrupted_runs, open_db
from catalog.scan import scan
from catalog.writeback import xmp
from catalog.writeback.stage import writeback
from catalog.writeback.undo import undo

# One of each container, three of them with their owner's keywords already in.
NAMES = ("BlueSquare.jpg", "prairie_falcon.jpg", "tifftag-photoshop.tiff", "denali.webp",
         "Issue_280_dotnet.png", "jolla.jpg")
BOTH = Config(writeback=WritebackSettings(mode="both"))


def user_keywords(data: bytes) -> set[str]:
    packet = xmp.find_xmp_packet(data)
    return set(xmp.read_xmp(packet).subject) if packet else set()


@pytest.fixture
def library(shared_photos, tmp_path):
    """A small analysed library (one file per container) and its database path."""
    root = tmp_path / "lib"
    root.mkdir()
    for name in NAMES:
        shutil.copy(shared_photos / "real" / name, root / name)
        (root / name).chmod(0o644)
    db_path = tmp_path / "catalog.db"
    db = open_db(db_path)
    scan(db, Config(), [root], progress=False)
    for (photo_id,) in db.execute("SELECT id FROM photos").fetchall():
        store_analysis(db, photo_id, Analysis(tags=("sunset", "beach"), description="ours", provider="test"))
    yield db, db_path, root
    db.close()


def files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".catalog-")}


CHILD = """
import os, signal, sys
from catalog.config import Config, WritebackSettings
from catalog.db import open_db
from catalog.writeback.stage import writeback
db = open_db(sys.argv[1])
if len(sys.argv) > 2:  # SIGKILL ourselves inside the k-th statement of a kind on the journal
    calls = []
    def die():
        calls.append(1)
        if len(calls) == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    db.conn.create_function("die", 0, die)
    db.execute(f"CREATE TEMP TRIGGER die AFTER {sys.argv[2]} ON writeback_journal BEGIN SELECT die(); END")
print("ready", flush=True)
sys.stdin.readline()
writeback(db, Config(writeback=WritebackSettings(mode="both")), progress=False)
"""


def writer(db_path: Path, *die_on) -> subprocess.Popen:
    """A real write-back process, started and waiting for `go` (so its start-up is not timed)."""
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db_path), *map(str, die_on)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def go(proc: subprocess.Popen) -> float:
    assert proc.stdout.readline() == b"ready\n"
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    return time.perf_counter()


def compare(before: dict[Path, bytes], root: Path) -> tuple[int, int, int]:
    """(files not back to their bytes, photos among them, user keywords missing) after an undo."""
    after = files(root)
    differ = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
    photos = [p for p in differ if p in before and not p.name.endswith(".xmp")]
    lost = sum(len(user_keywords(before[p]) - user_keywords(after.get(p, b""))) for p in photos)
    return len(differ), len(photos), lost


def test_kill_loop_then_undo_restores_every_file(library, figures):
    """40 write-back processes SIGKILLed (right after each rename, inside each journal insert, and at
    random moments), each run then undone: every file back byte for byte."""
    db, db_path, root = library
    originals = files(root)
    proc = writer(db_path)
    started = go(proc)
    proc.wait(timeout=60)
    full = time.perf_counter() - started
    close_interrupted_runs(db)
    run_id = db.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    writes = db.execute("SELECT COUNT(*) FROM writeback_journal WHERE run_id = ?", [run_id]).fetchone()[0]
    assert undo(db, run_id).skipped == 0 and files(root) == originals
    moments = [("UPDATE", k) for k in range(1, writes + 1)] + [("INSERT", k) for k in range(1, writes + 1)]
    rng = random.Random(10)
    moments += [(None, full * rng.random()) for _ in range(40 - len(moments))]
    mid_write, restored, not_restorable, damaged, lost, exact = 0, 0, 0, 0, 0, 0
    waiting = collections.deque(writer(db_path, *m) if m[0] else writer(db_path) for m in moments[:3])
    for n, (statement, when) in enumerate(moments):
        proc = waiting.popleft()
        if n + 3 < len(moments):  # start-ups overlap the runs
            following = moments[n + 3]
            waiting.append(writer(db_path, *following) if following[0] else writer(db_path))
        go(proc)
        if statement is None:
            time.sleep(when)
            proc.kill()
        proc.wait(timeout=60)
        close_interrupted_runs(db)
        run_id = db.execute("SELECT MAX(id) FROM runs").fetchone()[0]
        mid_write += db.execute("SELECT COUNT(*) FROM writeback_journal WHERE run_id = ? AND status = 'pending'",
                                [run_id]).fetchone()[0]
        if db.execute("SELECT 1 FROM writeback_journal WHERE run_id = ?", [run_id]).fetchone():
            result = undo(db, run_id)
            restored += result.restored
            not_restorable += result.skipped
        differ, photos, missing = compare(originals, root)
        not_restorable, damaged, lost = not_restorable + differ, damaged + photos, lost + missing
        exact += not differ
    temps = len(list(root.glob(".catalog-*.tmp")))
    figures.originals_damaged, figures.keywords_lost, figures.not_restorable = damaged, lost, not_restorable
    figures.note = (f"{len(moments)} kills ({writes} after a rename, {writes} inside a journal insert, "
                    f"{len(moments) - 2 * writes} at random in a {full:.2f} s run; {mid_write} caught mid-write): "
                    f"{restored} writes restored, {exact} of {len(moments)} libraries byte-exact, "
                    f"{temps} temp files left")
    assert (damaged, lost, not_restorable) == (0, 0, 0)


def test_kill_between_rename_and_journal_update_is_undone(library, figures):
    """SIGKILL after the photo is replaced, before the journal says so: `--undo` restores it."""
    db, db_path, root = library
    originals = files(root)
    proc = writer(db_path, "UPDATE", "1")  # killed at the first journal update after a rename
    go(proc)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    changed = sum(1 for p, data in files(root).items() if originals.get(p) != data)
    run_id = db.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    result = run_cli("writeback", "--undo", run_id, env={"CATALOG_DB": str(db_path)})
    differ, photos, lost = compare(originals, root)
    figures.crashes = crashes(result)
    figures.originals_damaged, figures.keywords_lost, figures.not_restorable = photos, lost, differ
    figures.note = f"killed with {changed} file replaced and unjournalled; {changed - differ} of {changed} restored"
    assert result.returncode == 0, result.stdout + result.stderr
    assert changed == 1 and differ == 0


def test_full_disk_then_a_later_run_keeps_the_users_keywords(shared_photos, tmp_path, figures):
    """Write-back on a full disk claims nothing; the user then tags in their own tool, the analysis
    drops those tags, and the next run removes none of the user's keywords."""
    from fsfaults import fill, tmpfs

    with tmpfs(tmp_path / "disk", size="2m") as root:
        for name in NAMES[:3]:
            shutil.copy(shared_photos / "real" / name, root / name)
        db = open_db(tmp_path / "catalog.db")
        scan(db, Config(), [root], progress=False)
        for (photo_id,) in db.execute("SELECT id FROM photos").fetchall():
            store_analysis(db, photo_id, Analysis(tags=("sunset", "hawk"), provider="test"))
        filler = fill(root)
        failed = writeback(db, BOTH, progress=False)
        claimed = db.execute("SELECT COUNT(*) FROM writeback_state").fetchone()[0]
        filler.unlink()
        for name in NAMES[:3]:  # the photographer's own "sunset", as Lightroom would add it
            photo = root / name
            packet = xmp.merge_xmp(xmp.find_xmp_packet(photo.read_bytes()), add=["sunset"], remove=[],
                                   description=None, replace_description=False)
            (root / f"{name}.xmp").write_bytes(packet)
        expected = {p: user_keywords(p.read_bytes()) for p in root.glob("*.xmp")}
        scan(db, Config(), [root], progress=False)
        for (photo_id,) in db.execute("SELECT id FROM photos").fetchall():
            store_analysis(db, photo_id, Analysis(tags=("hawk",), provider="test"))
        later = writeback(db, Config(), progress=False)
        lost = sum(len(words - user_keywords(p.read_bytes())) for p, words in expected.items())
        db.close()
    figures.keywords_lost = lost + claimed
    figures.note = (f"{failed.skipped} of {failed.written + failed.skipped} writes refused (ENOSPC), "
                    f"{claimed} claimed; later run wrote {later.written}, {lost} user keywords lost")
    assert failed.skipped == 6 and failed.written == 0 and claimed == 0 and lost == 0 and later.written == 3


def test_another_program_writes_between_read_and_rename(library, figures):
    """Each photo is rewritten by another program while we write it: every one of their writes survives."""
    db, _, root = library
    theirs: dict[str, bytes] = {}

    def other_program(target):
        path = Path(target)
        data = path.read_bytes() + b"\0"  # trailing bytes: still the same picture to every reader
        path.write_bytes(data)
        theirs[target] = data
        return 0

    db.conn.create_function("other_program", 1, other_program)
    db.execute("CREATE TEMP TRIGGER other AFTER INSERT ON writeback_journal "
               "BEGIN SELECT other_program(NEW.target); END")
    summary = writeback(db, Config(writeback=WritebackSettings(mode="embed")), progress=False)
    overwritten = sum(1 for target, data in theirs.items() if Path(target).read_bytes() != data)
    claimed = db.execute("SELECT COUNT(*) FROM writeback_state").fetchone()[0]
    figures.originals_damaged = overwritten
    figures.note = f"{len(theirs)} concurrent writes, {overwritten} overwritten, {summary.skipped} skipped to retry"
    assert len(theirs) == len(NAMES) and overwritten == 0 and summary.skipped == len(NAMES) and claimed == 0


def test_hostile_sidecars_are_skipped_and_the_run_finishes(library, tmp_path, figures):
    """A 1,000-level XMP, a 300 MB XMP and a sidecar linked to another user's file, via the real CLI."""
    _, db_path, root = library
    (root / "jolla.jpg.xmp").write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b"<a>" * 1000 + b"</a>" * 1000
                                         + b"</x:xmpmeta>")
    with open(root / "denali.webp.xmp", "wb") as f:
        f.truncate(300 << 20)
    private = tmp_path / "private.xmp"
    private.write_bytes(xmp.merge_xmp(None, add=["private-keyword"], remove=[], description=None,
                                      replace_description=False))
    (root / "BlueSquare.jpg.xmp").symlink_to(private)
    theirs = private.read_bytes()
    result = run_cli("writeback", "--json", env={"CATALOG_DB": str(db_path)})
    leaked = sum(open(p, "rb").read().count(b"private-keyword") for p in (db_path, Path(f"{db_path}-wal"))
                 if p.exists())
    figures.crashes = crashes(result)
    summary = json.loads(result.stdout)
    figures.note = (f"{summary['skipped']} hostile sidecars skipped, {summary['written']} written, "
                    f"run finished; linked file leaked {leaked} times")
    assert result.returncode == 1 and summary["skipped"] == 3 and summary["written"] == len(NAMES) - 3
    assert leaked == 0 and private.read_bytes() == theirs and (root / "BlueSquare.jpg.xmp").is_symlink()
