"""`bench/scan.py --sizes 10k,100k,1m`: how a first scan, a rescan and the database grow with the library.

One tree is grown (bench/growth_tree.py): each size is a subset of the next, so the
files are written once. For each size, on a fresh database: a first `catalog scan
--json` beside b3sum, a no-change rescan beside find -printf, the peak RSS of both,
the database bytes per file (after a checkpoint; split by table with `dbstat`) and
the time the scan process spends outside scan() (start-up plus the similar-photo
grouping, refresh_groups). Time per file at each size is checked against the
smallest size (goal: within ±20 %). Thumbnail bytes per photo are measured on the
smallest size's bench JPEGs and on copies of real camera photos.
"""

from __future__ import annotations

import datetime
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import growth_tree
from common import catalog_command, markdown_table, quoted, write_section

SECTION = "## Growth"
GOAL_LINEAR = 0.20      # per-file time within ±20 % of the smallest size's
GOAL_RSS_MB = 200.0
GOAL_DB_BYTES = 1536    # database bytes per file before analysis
GOAL_THUMB_BYTES = 15 * 1024


def parse_sizes(text: str) -> list[int]:
    """"10k,100k,1m" -> [10000, 100000, 1000000] (ascending, distinct); ValueError if malformed."""
    sizes = []
    for word in text.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", word)
        if not m:
            raise ValueError(f"{word.strip()!r} is not a size (e.g. 10k, 100k, 1m, 2500)")
        n = float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
        if n < 1 or n != int(n):
            raise ValueError(f"{word.strip()!r} is not a whole number of files")
        sizes.append(int(n))
    return sorted(set(sizes))


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


# -- the database ----------------------------------------------------------------------------

CATEGORIES = (("files", ("files",)), ("photos", ("photos",)), ("search text + FTS", ("photo_text",)),
              ("groups", ("photo_groups",)), ("runs", ("runs",)))


def db_bytes(path: Path) -> tuple[int, dict[str, int]]:
    """Bytes of the database file after a checkpoint, and the bytes of each table + its indexes."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total = con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]
        owner = {name: table for name, table in con.execute("SELECT name, tbl_name FROM sqlite_master")}
        split: dict[str, int] = {}
        try:
            rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            return total, {}
        for name, size in rows:
            table = owner.get(name, name)
            key = next((k for k, prefixes in CATEGORIES if any(table.startswith(p) for p in prefixes)),
                       "other")
            split[key] = split.get(key, 0) + size
        return total, split
    finally:
        con.close()


def thumbnail_bytes(bench, db: Path) -> tuple[int, float]:
    """Run `catalog thumbnails` on a scanned database: (thumbnails made, mean bytes of one)."""
    env = dict(bench.env, CATALOG_DB=str(db))
    done = subprocess.run(catalog_command() + ["thumbnails", "--json"], env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"catalog thumbnails failed ({done.returncode}): {done.stderr[-2000:]}")
    con = sqlite3.connect(db)
    try:
        n, mean = con.execute("SELECT COUNT(*), AVG(LENGTH(jpeg)) FROM thumbnails").fetchone()
    finally:
        con.close()
    return n, mean or 0.0


def real_thumbnails(bench, work: Path, photos: Path) -> tuple[int, float]:
    """Thumbnails of copies of real camera photos (the test photos: never written to)."""
    tree = work / "real-photos"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(photos, tree, ignore=shutil.ignore_patterns("*.md"))
    db = work / "real.db"
    env = dict(bench.env, CATALOG_DB=str(db))
    subprocess.run(catalog_command() + ["scan", "--json", str(tree)], env=env, capture_output=True, text=True)
    try:
        return thumbnail_bytes(bench, db)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


# -- the run ---------------------------------------------------------------------------------

def run(args, bench, tools, info, work: Path, say) -> list[str]:
    """Grow the tree, measure every size, print (and write) the report; returns the goals missed."""
    sizes = args.sizes
    tree = work / "tree"
    workers = growth_tree.default_workers()
    made = growth_tree.grow(tree, sizes, workers, say)
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    say("fixed cost: a first scan of an empty folder")
    fixed = bench.catalog(empty, work / "empty.db", fresh=True).seconds
    results = []
    for n in sizes:
        roots = growth_tree.roots(tree, sizes, n)
        db = work / f"growth-{label(n)}.db"
        say(f"size {label(n)}: first scan")
        b3sum = f"find {quoted(roots)} -type f -print0 | xargs -0 b3sum > /dev/null"
        b3, first = bench.alternate(b3sum, roots, db, 1, fresh=True, files=n, new=n, unchanged=0)
        total, split = db_bytes(db)
        say(f"size {label(n)}: no-change rescan")
        find = f"find {quoted(roots)} -type f -printf '%s %T@\\n' > /dev/null"
        found, again = bench.alternate(find, roots, db, 1, fresh=False, files=n, new=0, unchanged=n)
        r = {"n": n, "first": first, "b3sum": b3, "rescan": again, "find": found, "db": total, "split": split,
             "photos": first.summary.get("photos"), "fixed": fixed, "outside": first.seconds - first.summary.get("seconds", 0.0),
             "outside_rescan": again.seconds - again.summary.get("seconds", 0.0)}
        if n == sizes[0]:
            r["thumbs"] = thumbnail_bytes(bench, db)
        results.append(r)
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        say(f"size {label(n)}: first {first.seconds:.1f} s, rescan {again.seconds:.1f} s, "
            f"{total / n:.0f} DB bytes/file")
    real = real_thumbnails(bench, work, args.photos) if args.photos.is_dir() else (0, 0.0)
    text, missed = report(results, made, real, workers, bench, info, tools)
    print()
    print(text)
    if not (args.quick or args.no_doc):
        today = datetime.date.today().isoformat()
        write_section(args.doc, SECTION, f"{SECTION}\n\nMeasured {today} by `bench/scan.py --sizes`.\n\n{text}",
                      args.command, say, new_file=args.new_doc)
    return missed


def _per_file_ms(r: dict, which: str) -> float:
    """Milliseconds a file, after the fixed cost of a process (start-up, opening the catalogue)."""
    return (r[which].seconds - r["fixed"]) / r["n"] * 1000


def report(results, made, real, workers, bench, info, tools) -> tuple[str, list[str]]:
    """The markdown report and the goals missed."""
    base = results[0]
    missed = []
    rows = []
    for r in results:
        n = r["n"]
        ms, ms_again = _per_file_ms(r, "first"), _per_file_ms(r, "rescan")
        drift = ms / _per_file_ms(base, "first") - 1
        drift_again = ms_again / _per_file_ms(base, "rescan") - 1
        linear = abs(drift) <= GOAL_LINEAR and abs(drift_again) <= GOAL_LINEAR
        rss = max(x for x in (r["first"].rss_mb, r["rescan"].rss_mb, 0.0) if x is not None)
        per_file = r["db"] / n
        if not linear:
            missed.append(f"growth {label(n)}: per-file time {drift:+.0%} / rescan {drift_again:+.0%}")
        if rss > GOAL_RSS_MB:
            missed.append(f"growth {label(n)}: peak RSS {rss:.0f} MB")
        if per_file > GOAL_DB_BYTES:
            missed.append(f"growth {label(n)}: {per_file:.0f} database bytes per file")
        rows.append((
            f"{n:,}", f"{r['first'].seconds:.1f}", f"{ms:.2f} ({drift:+.0%})",
            f"{r['b3sum'].seconds:.1f} ({r['first'].seconds / r['b3sum'].seconds:.1f}×)",
            f"{r['first'].rss_mb:.0f}" if r["first"].rss_mb else "n/a", f"{r['outside']:.1f}",
            f"{r['rescan'].seconds:.2f}", f"{ms_again:.3f} ({drift_again:+.0%})",
            f"{r['find'].seconds:.2f} ({r['rescan'].seconds / r['find'].seconds:.1f}×)",
            f"{r['rescan'].rss_mb:.0f}" if r["rescan"].rss_mb else "n/a",
            f"{per_file:,.0f}", "pass" if linear and rss <= GOAL_RSS_MB and per_file <= GOAL_DB_BYTES else "FAIL"))
    head = ("Files", "First scan (s)", "ms/file (vs first size)", "b3sum (s) (catalog ×)", "RSS (MB)",
            "outside scan() (s)", "Rescan (s)", "ms/file (vs first size)", "find -printf (s) (catalog ×)", "RSS (MB)",
            "DB bytes/file", "Result")
    main = markdown_table(head, rows, right=tuple(range(11)))
    cats = [k for k, _ in CATEGORIES] + ["other"]
    split = markdown_table(("Files", "Total", *cats), [
        (f"{r['n']:,}", f"{r['db'] / r['n']:,.0f}", *(f"{r['split'].get(k, 0) / r['n']:,.0f}" for k in cats))
        for r in results], right=tuple(range(len(cats) + 2)))
    thumbs_n, thumbs_mean = base["thumbs"]
    real_n, real_mean = real
    for name, mean in (("bench JPEGs", thumbs_mean), ("real photos", real_mean)):
        if mean > GOAL_THUMB_BYTES:
            missed.append(f"thumbnails of {name}: {mean / 1024:.1f} KiB per photo")
    generated = [m for m in made if m["files"]]
    gen_files = sum(m["files"] for m in generated)
    gen_seconds = sum(m["seconds"] for m in generated)
    gen = (f"Generated {gen_files:,} files ({sum(m['bytes'] for m in generated) / 2**20:,.0f} MiB) in "
           f"{gen_seconds:.0f} s, {gen_files / gen_seconds:,.0f} files/s with {workers} processes" if generated and gen_seconds
           else "The tree was already there (grown by an earlier --keep run)")
    load = max(bench.max_load, 0.0)
    text = f"""Goals (issue 14): time per file within ±{GOAL_LINEAR:.0%} of the smallest size's, peak RSS ≤ {GOAL_RSS_MB:.0f} MB, database ≤ {GOAL_DB_BYTES:,} bytes per file before analysis, thumbnails ≤ {GOAL_THUMB_BYTES // 1024} KiB per photo.

{main}

Database bytes per file, by table with its indexes (`dbstat`, after a checkpoint):

{split}

- Thumbnails (`catalog thumbnails`): {thumbs_mean:,.0f} bytes per photo over {thumbs_n:,} bench JPEGs; {real_mean:,.0f} bytes per photo over {real_n} real camera photos (copies of the test photos: phones, compacts, DSLRs, PNG/HEIC/WebP).
- The tree: tiny distinct pictures (random colour blocks, 48-96 px) with EXIF on two thirds (a third of those with GPS), ~2 % byte-identical copies, ~2 % re-encoded near copies, ~2 % burst frames; 1,000 per folder. One tree grows: each size is the smaller one plus a new part, scanned as several roots. {gen}.
- ms/file leaves out the fixed cost of a process, {base['fixed']:.2f} s (a first scan of an empty folder: start-up, creating the catalogue).
- RSS includes SQLite's page cache (up to 64 MiB, `cache_size`), which fills as the database grows and then stays.
- "outside scan()" is the process's wall time minus the scan's own `seconds`: Python start-up and the similar-photo grouping (refresh_groups) that `catalog scan` runs afterwards.
- {bench.cache_note}; 1-minute load average before timed commands at most {load:.1f} on {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {tools['b3sum_version']}.
"""
    return text, missed
