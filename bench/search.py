#!/usr/bin/env python3
"""Search benchmark: `catalog search` on a 100,000-photo catalogue against the sqlite3 CLI.

Builds a catalogue database directly (no image files): the real schema from
`catalog.db.open_db`, synthetic `photos` and `files` rows with analysis results (tags,
description, objects, scene, mood, palette, and the raw answer JSON as analyze stores it)
drawn Zipf-style from a vocabulary of a few thousand words, folder names like
`2019/Lisbon trip`, ~5% of photos with a second copy, and the search text filled by the
real `catalog.db.refresh_search_text` (whose inserts fire the FTS5 triggers). Then it
times, as subprocesses, wall clock, median of N runs with catalog and peer interleaved:

  - `catalog search sunset beach` (the real CLI, `.venv/bin/catalog`, CATALOG_DB set)
    vs the same FTS5 MATCH with the same bm25 weights, ORDER BY score LIMIT 20, returning
    path and tags, in the `sqlite3` CLI (`sqlite3 DB "SELECT ..."`);
  - a rarer word, same comparison;
  - a word plus a filter, `catalog search beach --color orange`, against sqlite3 running the
    FTS query for the word alone (sqlite3 has no CIEDE2000: the peer does less work);
  - a filter alone, `catalog search --color orange` (catalog figure and goal only).

Goals: catalog at most 0.3 s, and at most 2x sqlite3 where there is a like-for-like peer.
It prints a markdown table and rewrites the `## Search` section of docs/benchmarks.md
(not for --quick runs, nor with --no-doc).
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from catalog.search import SEARCH_WEIGHTS, to_match  # noqa: E402
from catalogue import build_catalogue, vocabulary  # noqa: E402
from common import (MEASURE_HEAD, add_common_options, bullets, command_line, exit_status,  # noqa: E402
                    load_average, machine, markdown_table, print_report, write_section)

SECTION = "## Search"
GOAL_SECONDS = 0.3
GOAL_RATIO = 2.0
SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
CATALOG_BIN = Path(sys.executable).parent / "catalog"


def df(conn, word: str) -> int:
    """Photos whose search text holds the word (after the FTS tokenizer)."""
    return conn.execute("SELECT COUNT(*) FROM photo_text_fts WHERE photo_text_fts MATCH ?",
                        [to_match(word)]).fetchone()[0]


def sqlite_query(words: str) -> str:
    """The peer: the same MATCH expression and bm25 weights, path and tags of the best 20."""
    match = to_match(words).replace("'", "''")
    weights = ", ".join(str(w) for w in SEARCH_WEIGHTS)
    return ("SELECT (SELECT path FROM files f WHERE f.photo_id = p.id AND f.status = 'ok' ORDER BY path LIMIT 1), "
            "p.tags FROM photo_text_fts JOIN photo_text t ON t.id = photo_text_fts.rowid "
            f"JOIN photos p ON p.id = t.photo_id WHERE photo_text_fts MATCH '{match}' "
            f"ORDER BY bm25(photo_text_fts, {weights}) LIMIT 20;")


# What changed in catalog/search.py after the first measurement (kept here so the section says so).
HISTORY = """Changed in `catalog/search.py` after the first run of this benchmark (2026-11-27; results identical,
checked field by field, old code against new, for 12 queries on a 100,000-photo catalogue built by this
script, and `tests/test_search.py` green):
(1) rank first, then compute the wide result columns (copy count, JSON list of paths, shape) for the
`limit` best photos only, instead of for every match before sorting; (2) with words *and* `--color`,
test the colour on the matches in rank order and stop once `limit` pass, instead of testing every
match before ranking; (3) memoise the colour distance per palette entry and per row, with the
target's L\\*a\\*b\\* value computed once per search, not once per photo. Before the change, on this
machine at a similar load, on the catalogue as this script first built it (the same rows without the raw
answer JSON, 163 MiB; median of 5): `catalog search sunset beach` 108 ms, `catalog search beach --color
orange` 738 ms, `catalog search --color orange` 6,652 ms; after it, on that catalogue (median of 11):
115 ms, 195 ms and 4,594 ms."""


def explain(cases, cat_times, peer_times, lib_times, t_py, t_click, t_help, photos) -> str:
    """Why a goal is missed, from the figures just measured."""
    lines = []
    first = cases[0][0]
    if first in peer_times and cat_times[first] > GOAL_RATIO * peer_times[first]:
        budget = GOAL_RATIO * peer_times[first]
        if t_py >= budget:
            floor = (f"cannot be met by any Python program: starting the interpreter alone (`python -c pass`, "
                     f"{ms(t_py)}) takes longer than twice the whole sqlite3 run ({ms(budget)})")
        elif t_click >= budget:
            floor = (f"cannot be met by a Python command line built on click: starting the interpreter and "
                     f"importing click (`python -c 'import click'`, {ms(t_click)}) takes longer than twice the "
                     f"whole sqlite3 run ({ms(budget)})")
        else:
            floor = f"is missed: twice the sqlite3 run is {ms(budget)}"
        lines.append(
            f"Why the 2x-sqlite3 goal is missed: it {floor}. The catalog figure is almost all start-up: "
            f"`catalog search --help` (interpreter, click, catalog's modules, config; no database) takes "
            f"{ms(t_help)}, of which importing click alone is about {ms(t_click - t_py)}; the query itself takes "
            f"{ms(lib_times[first])} in-process (`python -X importtime -m catalog search ...` shows the rest: "
            "click, logging, the command modules, catalog.config, catalog.search).")
    color_only = cases[-1][0]
    if cat_times.get(color_only, 0) > GOAL_SECONDS:
        per = lib_times[color_only] / photos * 1e6
        lines.append(
            f"Why `--color` with no words misses 0.3 s: it ranks every photo by CIEDE2000 distance to the colour, "
            f"computed in Python by a SQLite function over each photo's palette: {per:.0f} us a photo, "
            f"{ms(lib_times[color_only])} for {photos:,} photos in-process (EXPLAIN QUERY PLAN: a full scan of "
            "`photos` plus a sort). No constant-factor change gets that under 0.3 s at this size: that needs "
            "the colours in the database in a searchable form (say each palette colour's L\\*a\\*b\\* in an "
            "indexed table, written at analysis time), a schema change in `catalog/db.py` and "
            "`catalog/analyze.py` that was not made here.")
    words_color = cases[2][0]
    if cat_times.get(words_color, 0) > GOAL_SECONDS:
        lines.append(f"`beach --color orange` misses 0.3 s: {ms(lib_times[words_color])} of it is the query in-process.")
    return "\n\n".join(lines)


def clear_caches() -> None:
    """Empty the functools caches of catalog.search (if it has any)."""
    import catalog.search

    for value in vars(catalog.search).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


def run_wall(argv: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, proc.stdout


def say(msg: str) -> None:
    print(f"[search] {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=None, help="photos in the catalogue (100,000; --quick 20,000)")
    parser.add_argument("--vocabulary", type=int, default=3000, help="distinct tag words (3,000)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs of each command (11; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="short smoke run, docs untouched")
    add_common_options(parser, "where the temporary catalogue goes", "keep the temporary catalogue")
    args = parser.parse_args(argv)
    photos = args.photos or (20_000 if args.quick else 100_000)
    runs = args.runs or (3 if args.quick else 11)
    command = command_line("search.py", argv)
    info = {**machine(), "sqlite_py": sqlite3.sqlite_version}
    load_start = load_average()
    if not CATALOG_BIN.exists():
        raise SystemExit(f"no catalog command at {CATALOG_BIN}: run `make test` or `pip install -e .` in the venv")
    have_sqlite = shutil.which("sqlite3") is not None
    if not have_sqlite:
        say("the sqlite3 command-line tool is missing (apt-get install sqlite3): no peer figures, "
            "only the absolute goal is checked")
    sqlite_version = subprocess.run([SQLITE3, "--version"], capture_output=True, text=True).stdout.split()[:1] \
        if have_sqlite else ["missing"]

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="search-", dir=args.workdir))
    try:
        db_path = work / "catalog.db"
        started = time.perf_counter()
        facts = build_catalogue(db_path, photos, args.vocabulary)
        build_s = time.perf_counter() - started
        say(f"built {facts['photos']:,} photos / {facts['files']:,} files / {facts['folders']:,} folders in "
            f"{build_s:.1f} s ({db_path.stat().st_size / 2**20:.0f} MiB)")
        conn = sqlite3.connect(db_path)
        words = vocabulary(args.vocabulary, random.Random(2024))
        # the rarer word: a made-up tag about 2,000 places down the ranking (a few dozen photos)
        rare = words[min(len(words) - 1, 2000)]
        counts = {w: df(conn, w) for w in ("sunset", "beach", "sunset beach", rare)}
        conn.close()
        say("document counts: " + ", ".join(f"{k!r} {v:,}" for k, v in counts.items()))

        env = {k: v for k, v in os.environ.items() if k not in ("CATALOG_CONFIG", "IMGTAGS_API_KEY")}
        (work / "xdg").mkdir()
        env.update(CATALOG_DB=str(db_path), XDG_CONFIG_HOME=str(work / "xdg"))  # no user config file
        cases = [
            ("`catalog search sunset beach`", ["sunset", "beach"], "sunset beach", ("sunset beach", {})),
            (f"`catalog search {rare}` (rarer word)", [rare], rare, (rare, {})),
            ("`catalog search beach --color orange`", ["beach", "--color", "orange"], "beach", ("beach", {"color": "orange"})),
            ("`catalog search --color orange` (filter only)", ["--color", "orange"], None, ("", {"color": "orange"})),
        ]
        rows, missed, notes, inproc = [], [], [], []
        lib_times, cat_times, peer_times = {}, {}, {}
        from catalog.search import Filters, connect
        from catalog.search import search as library_search

        for label, cli_args, peer_words, (words_in, filters_in) in cases:
            conn = connect(db_path)
            library_search(conn, words_in, Filters(**filters_in))  # warm-up
            t_lib = []
            for _ in range(max(3, runs // 2)):
                clear_caches()  # each CLI run starts with empty memo caches: so does this
                t0 = time.perf_counter()
                library_search(conn, words_in, Filters(**filters_in))
                t_lib.append(time.perf_counter() - t0)
            conn.close()
            inproc.append(f"{label.split(' (')[0]} {ms(statistics.median(t_lib))}")
            lib_times[label] = statistics.median(t_lib)
            cat_cmd = [str(CATALOG_BIN), "search", *cli_args]
            peer_cmd = [SQLITE3, str(db_path), sqlite_query(peer_words)] if (have_sqlite and peer_words) else None
            run_wall(cat_cmd, env)  # warm-up: page cache, .pyc files
            if peer_cmd:
                run_wall(peer_cmd, env)
            t_cat, t_peer, out_cat, out_peer = [], [], "", ""
            for i in range(runs):
                order = [("cat", cat_cmd), ("peer", peer_cmd)] if i % 2 == 0 else [("peer", peer_cmd), ("cat", cat_cmd)]
                for who, cmd in order:
                    if cmd is None:
                        continue
                    elapsed, out = run_wall(cmd, env)
                    if who == "cat":
                        t_cat.append(elapsed)
                        out_cat = out
                    else:
                        t_peer.append(elapsed)
                        out_peer = out
            cat = statistics.median(t_cat)
            cat_times[label] = cat
            if t_peer:
                peer_times[label] = statistics.median(t_peer)
            hits = len([line for line in out_cat.splitlines() if line.strip()])
            ok_abs = cat <= GOAL_SECONDS
            if peer_cmd:
                peer = statistics.median(t_peer)
                ratio = cat / peer
                same = peer_words == " ".join(cli_args)
                ok = ok_abs and (ratio <= GOAL_RATIO or not same)
                goal = f"<= {GOAL_SECONDS} s and <= {GOAL_RATIO:g}x" if same else f"<= {GOAL_SECONDS} s"
                peer_label = f"{ms(peer)} (sqlite3, same MATCH + bm25)" if same else \
                    f"{ms(peer)} (sqlite3, MATCH {peer_words!r} + bm25, no colour test)"
                if same:
                    peer_paths = [line.split("|", 1)[0] for line in out_peer.splitlines()]
                    cat_paths = [line.split("  [", 1)[0].split(" (+", 1)[0] for line in out_cat.splitlines()]
                    if peer_paths != cat_paths:
                        notes.append(f"{label}: catalog and sqlite3 returned different top-20 lists")
                rows.append((f"{label}, {hits} results", ms(cat), peer_label, f"{ratio:.2f}x", goal,
                             "pass" if ok else "**FAIL**"))
            else:
                rows.append((f"{label}, {hits} results", ms(cat),
                             "n/a (sqlite3 missing)" if not have_sqlite else "n/a (no SQL peer for CIEDE2000)",
                             "", f"<= {GOAL_SECONDS} s", "pass" if ok_abs else "**FAIL**"))
            if rows[-1][-1] == "**FAIL**":
                missed.append(label)
            notes.append(f"{label}: catalog {ms(min(t_cat))}-{ms(max(t_cat))}"
                         + (f", sqlite3 {ms(min(t_peer))}-{ms(max(t_peer))}" if t_peer else ""))
            say(f"{label}: catalog {ms(cat)}" + (f", sqlite3 {ms(statistics.median(t_peer))}" if t_peer else ""))
        # Process start alone, for scale: the interpreter, and the CLI doing nothing.
        t_py = statistics.median([run_wall([sys.executable, "-c", "pass"], env)[0] for _ in range(runs)])
        t_help = statistics.median([run_wall([str(CATALOG_BIN), "search", "--help"], env)[0] for _ in range(runs)])
        t_click = statistics.median([run_wall([sys.executable, "-c", "import click"], env)[0] for _ in range(runs)])
        t_sqlite_empty = statistics.median([run_wall([SQLITE3, ":memory:", "SELECT 1;"], env)[0]
                                            for _ in range(runs)]) if have_sqlite else None
        db_mib = db_path.stat().st_size / 2**20
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    table = markdown_table(MEASURE_HEAD, rows)
    details = [
        f"catalogue: {facts['photos']:,} analysed photos, {facts['files']:,} files in {facts['folders']:,} folders, "
        f"{facts['vocabulary']:,}-word tag vocabulary (Zipf, exponent 1), {db_mib:.0f} MiB; built in {build_s:.0f} s",
        "photos matching: " + ", ".join(f"`{k}` {v:,}" for k, v in counts.items()),
        f"process start for scale (median): `python -c pass` {ms(t_py)}, `python -c 'import click'` {ms(t_click)}, "
        f"`catalog search --help` {ms(t_help)}"
        + (f", `sqlite3 :memory: 'SELECT 1;'` {ms(t_sqlite_empty)}" if t_sqlite_empty is not None else ""),
        "the query alone, in-process (`catalog.search.search()` on an open connection, median): " + "; ".join(inproc),
        f"spread (min-max over {runs} runs): " + "; ".join(notes),
    ]
    print_report(table, details)
    why = explain(cases, cat_times, peer_times, lib_times, t_py, t_click, t_help, photos)
    if why:
        print()
        print(why)
    if not args.quick and not args.no_doc:
        today = datetime.date.today().isoformat()
        load = load_average()
        section = f"""{SECTION}

Measured {today} by `bench/search.py`: the real CLI (`.venv/bin/catalog search ...`, `CATALOG_DB` set, no
config file) as a subprocess, wall clock, median of {runs} runs after a warm-up, interleaved with the
`sqlite3` command-line tool ({sqlite_version[0]}) running the same FTS5 `MATCH` with the same bm25
weights, `ORDER BY` score `LIMIT 20`, returning path and tags. Both read a warm page cache.

{table}

{bullets(details)}
- The catalogue is built directly in the real schema (`catalog.db.open_db`): synthetic `photos`/`files`
  rows (with the ~0.7 KB raw answer JSON analyze keeps per photo), search text through `catalog.db.refresh_search_text`, so the FTS5 triggers fill the index.
- Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']} (SQLite {info['sqlite_py']}),
  {info['os']}; 1-minute load average {load_start:.1f} at the start, {load:.1f} at the end
  (other work on the machine; the spread above shows how much it moved the figures).

{why}

{HISTORY}
"""
        write_section(args.doc, SECTION, section, command, say)
    return exit_status(missed, args.strict, say)


if __name__ == "__main__":
    sys.exit(main())
