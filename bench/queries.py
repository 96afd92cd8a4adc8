#!/usr/bin/env python3
"""Queries at scale (issue 14): `catalog search`, `stats` and `duplicates` at 100k and 1M photos, as whole processes.

For each size it builds a catalogue with bench/catalogue.py (real schema, analysis results,
~5 % duplicate files, missing and moved files, fingerprints, colours, stored near-duplicate
groups and bursts, runs; no image files), or reuses one kept by an earlier run in
--catalogues, then times each command as a subprocess (the real `.venv/bin/catalog`,
CATALOG_DB set, no config file): wall clock from process start to exit, median of N runs
after a warm-up (warm page cache), interleaved with the `sqlite3` command-line tool doing the
same work where there is a peer:

  - search: the same FTS5 MATCH and bm25 weights, path and tags of the best 20 (bench/search.py);
  - stats, stats --json, duplicates: the very statements the command runs, captured in-process
    with sqlite3's trace callback and handed to the sqlite3 CLI;
  - duplicates --near / --bursts compute the groups afresh in Python from every fingerprint:
    their peer reads the stored groups (`photo_groups`, what Datasette shows).

Goal: each command at most 0.5 s at 1M photos. It prints a markdown table and rewrites the
`## At 1M photos` section of docs/benchmarks.md (unless --no-doc).
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from catalogue import build_catalogue, vocabulary  # noqa: E402
from common import (add_common_options, bullets, command_line, exit_status, load_average, machine,  # noqa: E402
                    markdown_table, print_report, write_section)
from search import SQLITE3, run_wall, sqlite_query  # noqa: E402

SECTION = "## At 1M photos"
GOAL_SECONDS = 0.5
CATALOG_BIN = Path(sys.executable).parent / "catalog"
HEAD = ("Command", "photos", "catalog", "sqlite3 peer", "ratio", "goal", "result")


def say(msg: str) -> None:
    print(f"[queries] {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def traced(db_path: Path, work) -> str:
    """The SQL statements `work(db)` runs on the catalogue, with their values, as one sqlite3 script."""
    from catalog.db import open_db

    db = open_db(db_path, create=False)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        result = work(db)
        if hasattr(result, "__next__"):
            list(result)
    finally:
        db.conn.set_trace_callback(None)
        db.close()
    return ";\n".join(s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT",
                                                                                    "ROLLBACK"))) + ";"


def stored_groups_sql(kind: str, limit: int) -> str:
    """What Datasette shows for the stored groups of one kind (its canned query), first `limit` groups."""
    from catalog.browse.metadata import QUERIES

    name = "near_duplicates" if kind == "near" else "bursts"
    return f"{QUERIES[name]['sql']} LIMIT {limit};"


def cases(db_path: Path, rare: str) -> list[tuple[str, list[str], str | None, str]]:
    """(label, catalog arguments, sqlite3 script or None, what the peer does)."""
    from catalog import queries

    def dup_work(db):
        if hasattr(queries, "duplicate_page"):  # after issue 14: the first page and the count
            return queries.duplicate_page(db, 20)
        return queries.duplicate_groups(db)

    stats_sql = traced(db_path, queries.catalogue_stats)
    dup_sql = traced(db_path, dup_work)
    same = "the same statements"
    return [
        ("`catalog search sunset beach`", ["search", "sunset", "beach"], sqlite_query("sunset beach"),
         "same MATCH + bm25"),
        (f"`catalog search {rare}` (rare word)", ["search", rare], sqlite_query(rare), "same MATCH + bm25"),
        ("`catalog search beach --color orange`", ["search", "beach", "--color", "orange"],
         sqlite_query("beach"), "MATCH 'beach' + bm25, no colour test"),
        ("`catalog search --color orange`", ["search", "--color", "orange"], None, ""),
        ("`catalog stats`", ["stats"], stats_sql, same),
        ("`catalog stats --json`", ["stats", "--json"], stats_sql, same),
        ("`catalog duplicates`", ["duplicates"], dup_sql, same),
        ("`catalog duplicates --near`", ["duplicates", "--near"], stored_groups_sql("near", 20),
         "stored groups, Datasette's query"),
        ("`catalog duplicates --bursts`", ["duplicates", "--bursts"], stored_groups_sql("burst", 20),
         "stored groups, Datasette's query"),
    ]


def time_pair(cat_cmd, peer_cmd, env, runs: int, slow: float) -> tuple[list[float], list[float], str]:
    """Interleaved timings after a warm-up; a command slower than `slow` seconds runs once."""
    first, out = run_wall(cat_cmd, env)
    peer_first = run_wall(peer_cmd, env)[0] if peer_cmd else 0.0
    # a command that takes longer than `slow`: its one warm run is the figure
    t_cat, t_peer = [first] if first > slow else [], [peer_first] if peer_first > slow else []
    for i in range(runs):
        order = [("cat", cat_cmd), ("peer", peer_cmd)] if i % 2 == 0 else [("peer", peer_cmd), ("cat", cat_cmd)]
        for who, cmd in order:
            if cmd is None or (who == "cat" and first > slow) or (who == "peer" and peer_first > slow):
                continue
            elapsed, text = run_wall(cmd, env)
            (t_cat if who == "cat" else t_peer).append(elapsed)
            if who == "cat":
                out = text
    return t_cat, t_peer, out


def catalogue(args, photos: int) -> tuple[Path, dict | None, float | None]:
    """The catalogue of this size: kept from an earlier run, or built now (and timed)."""
    path = args.catalogues / f"catalogue-{photos}.db"
    if path.exists() and not args.rebuild:
        say(f"reusing {path} ({path.stat().st_size / 2**20:,.0f} MiB)")
        return path, None, None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    facts = build_catalogue(path, photos, args.vocabulary)
    seconds = time.perf_counter() - started
    say(f"built {photos:,} photos in {seconds:.0f} s: {facts} ({path.stat().st_size / 2**20:,.0f} MiB)")
    return path, facts, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="100000,1000000", help="catalogue sizes, comma-separated (100000,1000000)")
    parser.add_argument("--vocabulary", type=int, default=3000, help="distinct tag words (3,000)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command (7)")
    parser.add_argument("--catalogues", type=Path, default=REPO / "bench" / ".work" / "queries",
                        help="where the catalogues are built and kept for the next run (bench/.work/queries)")
    parser.add_argument("--skip-similar", action="store_true",
                        help="leave out duplicates --near/--bursts (they group every fingerprint afresh: minutes at 1M)")
    parser.add_argument("--rebuild", action="store_true", help="build the catalogues even if kept ones exist")
    add_common_options(parser, "(unused: see --catalogues)", "(catalogues are always kept: delete --catalogues)")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.photos.split(",")]
    args.catalogues.mkdir(parents=True, exist_ok=True)
    command = command_line("queries.py", argv)
    info = machine()
    load_start = load_average()
    env = {k: v for k, v in os.environ.items() if k not in ("CATALOG_CONFIG", "IMGTAGS_API_KEY")}
    (args.catalogues / "xdg").mkdir(exist_ok=True)
    env["XDG_CONFIG_HOME"] = str(args.catalogues / "xdg")  # no user config file
    rare = vocabulary(args.vocabulary, random.Random(2024))[min(args.vocabulary - 1, 2000)]
    rows, details, missed = [], [], []
    for photos in sizes:
        db_path, facts, build_s = catalogue(args, photos)
        if facts:
            details.append(f"{photos:,} photos built in {build_s:,.0f} s ({db_path.stat().st_size / 2**30:.2f} GiB): "
                           f"{facts['files']:,} files ({facts['ok']:,} present, {facts['missing']:,} missing, "
                           f"{facts['moved']:,} moved, {facts['error']:,} unreadable), {facts['analysed']:,} analysed, "
                           f"{facts['near_groups']:,} near groups and {facts['bursts']:,} bursts stored")
        env["CATALOG_DB"] = str(db_path)
        run_wall([str(CATALOG_BIN), "stats"], env)  # migrations a kept catalogue may lack: not timed
        spreads = []
        for label, cli_args, peer_sql, peer_does in cases(db_path, rare):
            if args.skip_similar and ("--near" in cli_args or "--bursts" in cli_args):
                continue
            peer_cmd = [SQLITE3, str(db_path), peer_sql] if peer_sql else None
            t_cat, t_peer, out = time_pair([str(CATALOG_BIN), *cli_args], peer_cmd, env, args.runs, 5.0)
            cat = statistics.median(t_cat)
            peer = statistics.median(t_peer) if t_peer else None
            ok = cat <= GOAL_SECONDS
            lines = len(out.splitlines())
            rows.append((f"{label}, {lines:,} lines", f"{photos:,}", ms(cat),
                         f"{ms(peer)} ({peer_does})" if peer else "n/a", f"{cat / peer:.1f}x" if peer else "",
                         f"<= {GOAL_SECONDS} s", "pass" if ok else "**FAIL**"))
            if not ok and photos >= 1_000_000:
                missed.append(f"{label} at {photos:,}")
            spreads.append(f"{label.split(' (')[0]} {ms(min(t_cat))}-{ms(max(t_cat))} ({len(t_cat)} runs)")
            say(f"{photos:,}: {label}: {ms(cat)}" + (f", sqlite3 {ms(peer)}" if peer else ""))
        details.append(f"spread at {photos:,}: " + "; ".join(spreads))
    t_py = statistics.median([run_wall([sys.executable, "-c", "pass"], env)[0] for _ in range(args.runs)])
    t_help = statistics.median([run_wall([str(CATALOG_BIN), "--help"], env)[0] for _ in range(args.runs)])
    details.append(f"process start for scale (median): `python -c pass` {ms(t_py)}, `catalog --help` {ms(t_help)}")
    load_end = load_average()
    details.append(f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']} (SQLite "
                   f"{sqlite3.sqlite_version}), {info['os']}; 1-minute load average {load_start:.1f} at the start, "
                   f"{load_end:.1f} at the end")
    table = markdown_table(HEAD, rows)
    print_report(table, details)
    if not args.no_doc:
        section = f"""{SECTION}

Measured {datetime.date.today().isoformat()} by `bench/queries.py` (issue 14): each command as a whole process
(`.venv/bin/catalog ...`, `CATALOG_DB` set, no config file), wall clock, median of up to {args.runs} runs after a
warm-up, interleaved with the `sqlite3` command-line tool doing the same work; warm page cache. The
catalogues are built by `bench/catalogue.py` through the real schema (no image files).

{table}

{bullets(details)}
"""
        write_section(args.doc, SECTION, section, command, say)
    return exit_status(missed, args.strict, say)


if __name__ == "__main__":
    sys.exit(main())
