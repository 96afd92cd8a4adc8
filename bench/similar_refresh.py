#!/usr/bin/env python3
"""Keeping the stored groups up to date (issue 14): refresh_groups on a synthetic catalogue of 100k or 1M photos.

For each size a catalogue is built once (bench/similar_grouping.py's planted copies, edits and
bursts among random photos, one file each, inserted straight into the real schema), then, each
in a fresh process for its own peak RSS:
  full     the whole library regrouped (a first scan, or many changes);
  changes  10 changes (4 new copies or frames of existing photos, 3 new photos, 2 files gone,
           1 fingerprint changed), then the nightly refresh_groups: only what they touch.
With --peer DIR (a checkout of another revision, e.g. `git archive main | tar -x -C DIR`), its
refresh_groups runs on the same catalogue in the same run, for a before/after on one machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from similar_grouping import CAMERAS, DETAIL_NOISE, EPOCH, PLANTED, SHAPES, _flip, memory_mib  # noqa: E402

PAGE = 20_000


def _signed(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def rows(n: int, seed: int = 13):
    """`n` synthetic photos as (photos row, files row), planted groups first, streamed."""
    rng = random.Random(seed)
    made = 0

    def photo(phash, w, h, tone, cells, camera, when, scale=1.0):
        nonlocal made
        made += 1
        pid = f"{rng.getrandbits(256):064x}"
        return ((pid, "JPEG", round(w * scale), round(h * scale), when.isoformat(), camera, "2024-01-01",
                 _signed(phash), w / h, tone, cells),
                (f"/lib/{made % 5000:04d}/{pid[:16]}.jpg", "/lib", f"/lib/{made % 5000:04d}", f"{pid[:16]}.jpg",
                 pid, rng.randrange(100_000, 8_000_000), 1, "ok", "2024-01-01", "2024-01-01"))

    for kind, (per_100k, size, flips) in PLANTED.items():
        for _ in range(max(1, per_100k * n // 100_000)):
            centre, (w, h) = rng.getrandbits(64), rng.choice(SHAPES)
            tone, camera, cells = rng.getrandbits(24), rng.choice(CAMERAS[:-1]), rng.randbytes(256)
            when = EPOCH + datetime.timedelta(seconds=rng.randrange(10 * 365 * 86400))
            for m in range(rng.randint(*size)):
                if made >= n:
                    return
                noise = DETAIL_NOISE[kind] if m else 0
                mine = bytes(min(255, max(0, c + rng.randint(-noise, noise))) for c in cells) if noise else cells
                yield photo(_flip(centre, rng.randint(*flips), rng), w, h,
                            (tone + (0x0a0a0a if kind == "edit" and m else 0)) & 0xFFFFFF, mine, camera,
                            when + datetime.timedelta(seconds=m if kind == "burst" else 0),
                            1 if kind != "copy" or m == 0 else rng.choice((0.5, 0.25)))
    while made < n:
        w, h = rng.choice(SHAPES)
        yield photo(rng.getrandbits(64), w, h, rng.getrandbits(24), rng.randbytes(256), rng.choice(CAMERAS),
                    EPOCH + datetime.timedelta(seconds=rng.randrange(10 * 365 * 86400)))


def build(path: Path, n: int) -> float:
    """A catalogue of `n` photos at `path` (kept when it exists); seconds it took."""
    from catalog.db import open_db

    if path.exists():
        return 0.0
    t0 = time.perf_counter()
    db = open_db(path)
    batch = []
    for pair in rows(n):
        batch.append(pair)
        if len(batch) >= PAGE:
            _insert(db, batch)
            batch = []
    _insert(db, batch)
    db.execute("DELETE FROM group_changes")  # a catalogue whose groups are then made afresh
    db.conn.commit()
    db.conn.close()
    return time.perf_counter() - t0


def _insert(db, batch) -> None:
    with db.atomic():
        db.conn.executemany("INSERT INTO photos (id, format, width, height, taken_at, camera_make, first_seen, "
                            "phash, aspect, tone, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [p for p, _ in batch])
        db.conn.executemany("INSERT INTO files (path, root, folder, name, photo_id, size, mtime_ns, status, "
                            "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [f for _, f in batch])


def change(db, seed: int = 5) -> int:
    """10 changes a night might bring; returns how many photos they note."""
    rng = random.Random(seed)
    (n,) = db.execute("SELECT MAX(rowid) FROM photos").fetchone()
    picks = [db.execute("SELECT id, phash, width, height, tone, detail, camera_make, taken_at FROM photos "
                        "WHERE rowid = ?", [rng.randint(1, n)]).fetchone() for _ in range(10)]
    new = []
    for i, (pid, phash, w, h, tone, detail, camera, taken) in enumerate(picks[:4]):  # copies, frames
        when = datetime.datetime.fromisoformat(taken) + datetime.timedelta(seconds=i % 2)
        new.append(((f"{rng.getrandbits(256):064x}", "JPEG", w, h, when.isoformat(), camera, "2024-02-01",
                     _signed(_flip(phash % 2**64, 2, rng)), w / h, tone, detail)))
    for _ in range(3):
        new.append((f"{rng.getrandbits(256):064x}", "JPEG", 4000, 3000, "2023-05-05T10:00:00", "Canon EOS R6",
                    "2024-02-01", _signed(rng.getrandbits(64)), 4 / 3, rng.getrandbits(24), rng.randbytes(256)))
    batch = [(p, (f"/lib/new/{p[0][:16]}.jpg", "/lib", "/lib/new", f"{p[0][:16]}.jpg", p[0], 1000, 1, "ok",
                  "2024-02-01", "2024-02-01")) for p in new]
    _insert(db, batch)
    with db.atomic():
        for pid, *_ in picks[4:6]:
            db.execute("UPDATE files SET status = 'missing', missing_since = '2024-02-01' WHERE photo_id = ?", [pid])
        db.execute("UPDATE photos SET phash = (phash | 7) - (phash & 7) WHERE id = ?", [picks[6][0]])
    (noted,) = db.execute("SELECT COUNT(DISTINCT photo_id) FROM group_changes").fetchone()
    return noted


def child(path: str, mode: str) -> dict:
    """In a fresh process: one refresh of the catalogue at `path`, timed, with its peak RSS."""
    from catalog.db import open_db
    from catalog.similar import browsing

    db = open_db(path)
    noted = change(db) if mode == "changes" else None
    rss_before = memory_mib("VmRSS")
    t0 = time.perf_counter()
    if mode == "full" and hasattr(browsing, "regroup_all"):
        browsing.regroup_all(db)
    elif hasattr(browsing, "regroup_all"):
        browsing.refresh_groups(db)
    else:  # the peer before issue 14: every refresh regroups the whole library
        browsing.refresh_groups(db, changed=True)
    seconds = time.perf_counter() - t0
    counts = browsing.stored_counts(db)
    return {"mode": mode, "seconds": seconds, "peak_rss_mib": memory_mib("VmHWM"), "rss_before_mib": rss_before,
            "noted": noted, **counts}


def run(tree: Path, path: Path, mode: str) -> dict:
    code = ("import json, sys; sys.path[:0] = [sys.argv[3], sys.argv[4]]; import similar_refresh as b; "
            "print(json.dumps(b.child(sys.argv[1], sys.argv[2])))")
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", code, str(path), mode, str(HERE), str(tree)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"the refresh child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k", help="comma-separated catalogue sizes (100k,1m)")
    parser.add_argument("--workdir", type=Path, required=True, help="where the catalogues are built and kept")
    parser.add_argument("--peer", type=Path, help="a checkout of another revision to run on the same catalogue")
    parser.add_argument("--modes", default="full,changes")
    parser.add_argument("--peer-changes", action="store_true", help="run the peer's `changes` too")
    parser.add_argument("--trees", default="this,peer", help="which of this tree and the peer to run")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        n = int(float(size.lower().replace("k", "e3").replace("m", "e6")))
        base = args.workdir / f"catalog-{size}.db"
        built = build(base, n)
        print(json.dumps({"size": n, "built_seconds": round(built, 1), "load": os.getloadavg()[0]}), flush=True)
        for mode in args.modes.split(","):
            for name, tree in (("this", HERE.parent), ("peer", args.peer)):
                if name not in args.trees.split(",") or tree is None or (name == "peer" and mode == "changes" and not args.peer_changes):
                    continue  # a peer that regroups everything each night: its `full` is its nightly cost
                work = args.workdir / f"work-{size}.db"
                shutil.copyfile(base, work)  # written through the page cache: every run reads it warm
                if mode == "changes":  # the groups as the last night left them (a full regroup: reported)
                    print(json.dumps({"size": n, "tree": name, **run(tree, work, "full"),
                                      "load": os.getloadavg()[0]}), flush=True)
                result = run(tree, work, mode)
                print(json.dumps({"size": n, "tree": name, **result, "load": os.getloadavg()[0]}), flush=True)
                work.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
