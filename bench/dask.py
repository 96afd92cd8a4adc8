#!/usr/bin/env python3
"""Dask benchmark: the offline enrichers over 1,000 photos on 1 and then 2 Dask worker processes.

The photos are variants of the real test photos (/work/shared/photos/real, or --source):
each a little smaller and at another JPEG quality every turn (so no two files are the
same), made once under --workdir. They are scanned into a fresh catalogue, and the pending
rows go to a `distributed.LocalCluster` (processes, one thread each) in batches of 5 through
the very worker function the flow uses (catalog.spread.analyse_rows: the offline analyzer,
then places, text, safety and faces). Models are loaded on every worker before the clock
starts. Speed-up = time on 1 worker / time on 2 (goal >= 1.7x on 2 cores). Prints a markdown
section for docs/benchmarks.md (`## Dask`); it never writes the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This file's own folder first on the path would make `import dask` find this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

from bench.common import command_line, load_average, machine, markdown_table  # noqa: E402

ENRICHERS = ("places", "text", "safety", "faces")
BATCH = 5  # small enough that 2 workers share the batches evenly at 100 photos


def make_photos(source: Path, dest: Path, count: int) -> list[Path]:
    """`count` distinct JPEGs: the source photos at long edges from 1600 px down, in turn."""
    from PIL import Image, ImageOps

    dest.mkdir(parents=True, exist_ok=True)
    made = sorted(dest.glob("*.jpg"))
    if len(made) >= count:
        return made[:count]
    sources = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    pictures = []
    for path in sources:
        try:
            with Image.open(path) as im:
                pictures.append((path.stem, ImageOps.exif_transpose(im).convert("RGB"), im.info.get("exif")))
        except OSError:
            continue
    for i in range(count):
        stem, picture, exif = pictures[i % len(pictures)]
        turn = i // len(pictures)  # each turn a little smaller and at another quality: no two files alike
        edge = max(16, min(1600, max(picture.size)) - 7 * turn)
        copy = picture.copy()
        copy.thumbnail((edge, edge))
        copy.save(dest / f"{i:04d}_{stem}.jpg", quality=60 + turn % 36, **({"exif": exif} if exif else {}))
    return sorted(dest.glob("*.jpg"))[:count]


def pending_rows(library: Path, workdir: Path):
    from catalog.analysis_db import pending_photos
    from catalog.db import open_db
    from catalog.scan import scan
    from catalog.settings import AnalysisSettings, Config, LibrarySettings

    db_path = workdir / "catalog.db"
    for old in workdir.glob("catalog.db*"):
        old.unlink()
    config = Config(database=db_path, library=LibrarySettings(roots=(str(library),)),
                    analysis=AnalysisSettings(analyzer="offline", enrichers=ENRICHERS, concurrency=1))
    db = open_db(db_path)
    scan(db, config, None, progress=False)
    rows = [{**dict(r), "enrich": list(ENRICHERS)} for r in pending_photos(db, config)]
    db.close()
    return config, rows


def timed_on(workers: int, config, rows) -> float:
    import distributed

    from catalog.enrichers.run import warm
    from catalog.spread import analyse_rows

    batches = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        client.run(warm, ENRICHERS)
        client.gather(client.map(analyse_rows, batches[:1], config=config, pure=False))  # first imports
        started = time.perf_counter()
        results = client.gather(client.map(analyse_rows, batches, config=config, pure=False))
        seconds = time.perf_counter() - started
    answered = sum(a.analysis is not None for batch in results for a in batch.answers)
    assert answered == len(rows), f"{answered} of {len(rows)} photos answered"
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--source", type=Path, default=Path("/work/shared/photos/real"))
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench-trees/dask"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker process, as `warm` sets
    made = make_photos(args.source, args.workdir / "photos", args.photos)
    config, rows = pending_rows(args.workdir / "photos", args.workdir)
    config = dataclasses.replace(config, library=dataclasses.replace(config.library, roots=(str(made[0].parent),)))
    load_before = load_average()
    one = timed_on(1, config, rows)
    two = timed_on(2, config, rows)
    speedup = one / two
    m = machine()
    table = markdown_table(("Workers", "photos", "seconds", "photos/s"),
                           [("1", f"{len(rows):,}", f"{one:.1f}", f"{len(rows) / one:.1f}"),
                            ("2", f"{len(rows):,}", f"{two:.1f}", f"{len(rows) / two:.1f}")], right=(1, 2, 3))
    print("## Dask\n")
    print(f"Offline analyzer + places, text, safety, faces over {len(rows):,} photos (variants of the real test "
          f"photos, long edge 1600 px and less) through catalog.spread.analyse_rows on a LocalCluster, "
          f"batches of {BATCH}, models loaded before timing.\n")
    print(table)
    print(f"\n- speed-up 2 workers / 1: **{speedup:.2f}x** (goal >= 1.7x): "
          f"{'met' if speedup >= 1.7 else 'missed'}")
    print(f"- machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}; load average "
          f"{load_before:.1f} before, {load_average():.1f} after")
    print(f"- command: `{command_line('dask.py', argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
