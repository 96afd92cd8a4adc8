#!/usr/bin/env python3
"""Analysis quota benchmark: how much of an ImgTags rate limit the real analysis stage uses.

A loopback ImgTags server (tests/imgtags_server.py, in-process) answers every request after
`--latency` seconds (default 1.2) and enforces `--limit` requests per sliding `--window`
seconds (default 60 per 60 s) exactly as the contract describes: a 61st request inside any
60-second window gets a 429. A temporary catalogue of small generated JPEGs (all distinct
photos) is scanned with `catalog.scan.scan`, then `catalog.analyze.analyze` runs with the
real ImgTags analyzer at its default settings (requests_per_minute = 60, concurrency = 4)
for `--duration` seconds (default 180; `--quick` 65). There are always more photos than the
run can send, so it is the throttle, not the work, that sets the pace. When the time is up
the analyzer starts no new upload (the photos left fail at once, without a request), the
requests already on the wire finish and are stored, and the run ends.

Reported, from the server's own arrival times:

  - completed requests per minute, (n - 1) / (t_last - t_first) * 60 over the 200 answers,
    against the limit (goal: at least 97% of it);
  - the same rate after the first window (the first 60 s may use a whole fresh window);
  - 429 answers sent by the server (goal: 0);
  - the most requests that arrived inside any 60-second window (must not exceed the limit).

It prints a markdown table and rewrites the `## Analysis quota` section of
docs/benchmarks.md (not for --quick runs, nor with --no-doc).
"""

from __future__ import annotations

import argparse
import datetime
import io
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the loopback server lives with the tests
sys.path.insert(0, str(REPO))

from imgtags_server import serve_imgtags  # noqa: E402
from PIL import Image  # noqa: E402

from catalog import db as catalog_db  # noqa: E402
from catalog.analyze import analyze  # noqa: E402
from catalog.analyzers.imgtags import ImgTagsAnalyzer  # noqa: E402
from catalog.settings import AnalysisSettings, Config  # noqa: E402
from catalog.errors import AnalysisFailed  # noqa: E402
from catalog.scan import scan  # noqa: E402
from common import (MEASURE_HEAD, add_common_options, bullets, command_line, exit_status,  # noqa: E402
                    load_average, machine, markdown_table, print_report, write_section)

SECTION = "## Analysis quota"
GOAL_SHARE = 0.97  # of the limit, in the steady state
KEY = "bench-key"


TIME_UP = "benchmark time is up: not sent"


class TimedImgTags(ImgTagsAnalyzer):
    """The real ImgTags analyzer (same client, throttle and retries) that starts no upload
    after `deadline` (time.monotonic()). Photos reached after it fail at once without a
    request, so the run drains quickly and, as always, every answer already paid for is stored."""

    def __init__(self, *args, deadline: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.refused = 0

    def analyze(self, image):
        if time.monotonic() >= self.deadline:
            self.refused += 1
            raise AnalysisFailed(TIME_UP, permanent=False)
        return super().analyze(image)


def make_library(root: Path, count: int, seed: int = 7) -> int:
    """`count` small JPEGs, each a distinct photo (different pixels), 20 per folder."""
    rng = random.Random(seed)
    total = 0
    for i in range(count):
        folder = root / f"{2000 + i // 20}"
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.new("RGB", (160, 120), tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(12):  # a few random blocks, so every image differs
            x, y = rng.randrange(150), rng.randrange(110)
            im.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + rng.randrange(4, 40), y + rng.randrange(4, 40)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        (folder / f"IMG_{i:05d}.jpg").write_bytes(buf.getvalue())
        total += buf.tell()
    return total


def max_in_window(times: list[float], window: float) -> int:
    """The most arrivals inside any half-open window (t - window, t], as the server counts."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def rate_per_minute(times: list[float]) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0]) * 60


def say(msg: str) -> None:
    print(f"[quota] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds of analysis to measure (180; --quick 65)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (65 s), docs untouched")
    parser.add_argument("--latency", type=float, default=1.2, help="server seconds per answer (1.2)")
    parser.add_argument("--limit", type=int, default=60, help="server limit: requests per window (60)")
    parser.add_argument("--window", type=float, default=60.0, help="server window in seconds (60)")
    add_common_options(parser, "where the temporary catalogue goes", "keep the temporary catalogue")
    args = parser.parse_args(argv)
    # the photos refused at the deadline would each log a warning: they are not news here
    logging.getLogger("catalog.analyze").addFilter(lambda record: TIME_UP not in record.getMessage())
    duration = args.duration or (65.0 if args.quick else 180.0)
    command = command_line("quota.py", argv)
    info = machine()

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quota-", dir=args.workdir))
    try:
        # The client cannot send more than one request per window/limit seconds, so this many
        # photos outlast the run whatever happens.
        count = int(duration * args.limit / args.window * 1.2) + 40
        lib = work / "photos"
        size = make_library(lib, count)
        db = catalog_db.open_db(work / "catalog.db")
        config = Config(database=work / "catalog.db", analysis=AnalysisSettings())  # the defaults
        scanned = scan(db, config, [str(lib)], progress=False)
        say(f"{count} photos ({size / count / 1024:.1f} KiB each) scanned in {scanned.seconds:.1f} s; "
            f"analysing for {duration:g} s against {args.limit}/{args.window:g} s, {args.latency:g} s latency")
        with serve_imgtags(key=KEY, latency=args.latency, rate_limit=args.limit, rate_window=args.window) as server:
            started = time.monotonic()
            analyzer = TimedImgTags(api_key=KEY, base_url=server.base_url, deadline=started + duration)
            stop_ticker = threading.Event()

            def ticker():
                while not stop_ticker.wait(15):
                    reqs = server.requests.snapshot()
                    say(f"{time.monotonic() - started:5.0f} s: {len(reqs)} requests, "
                        f"{server.rate_limited} rate-limited")

            threading.Thread(target=ticker, daemon=True).start()
            try:
                summary = analyze(db, config, analyzer=analyzer, progress=False)
            finally:
                stop_ticker.set()
                analyzer.close()
            stopped_by = "time up" if analyzer.refused else "photos ran out"
            elapsed = time.monotonic() - started
            recorded = server.requests.snapshot()
            rate_limited = server.rate_limited
        http = analyzer.stats.snapshot()
        done = db.execute("SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'").fetchone()[0]
        failed = db.execute("SELECT COUNT(*) FROM photos WHERE analysis_status = 'failed' "
                            "AND analysis_error != ?", [TIME_UP]).fetchone()[0]
        db.close()
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    arrivals = sorted(r.at for r in recorded)
    ok = sorted(r.at for r in recorded if r.status == 200)
    rate = rate_per_minute(ok)
    after_first = [t for t in ok if t >= ok[0] + args.window] if ok else []
    steady = rate_per_minute(after_first)
    peak = max_in_window(arrivals, args.window)
    tightest = min((arrivals[i + args.limit] - arrivals[i] for i in range(len(arrivals) - args.limit)), default=None)
    span = (ok[-1] - ok[0]) if len(ok) > 1 else 0.0
    enough = span >= 2 * args.window

    def verdict(good: bool) -> str:
        return "pass" if good else "**FAIL**"

    limit_rate = args.limit / args.window * 60
    rows = [
        ("completed requests / min, first to last", f"{rate:.2f}", f"limit {limit_rate:g}", f"{rate / limit_rate:.1%}",
         f">= {GOAL_SHARE:.0%}", verdict(rate >= GOAL_SHARE * limit_rate)),
        ("completed requests / min after the first window", f"{steady:.2f}", f"limit {limit_rate:g}",
         f"{steady / limit_rate:.1%}" if after_first else "n/a", "(reported)", ""),
        ("429 answers from the server", f"{rate_limited}", "0", "", "0", verdict(rate_limited == 0)),
        (f"most requests in any {args.window:g}-s window (server arrivals)", f"{peak}", f"limit {args.limit}",
         f"{peak / args.limit:.1%}", f"<= {args.limit}", verdict(peak <= args.limit)),
    ]
    missed = [r[0] for r in rows if r[-1] == "**FAIL**"]
    table = markdown_table(MEASURE_HEAD, rows)
    details = [
        f"run: {elapsed:.1f} s ({stopped_by}), {len(recorded)} requests reached the server, {len(ok)} answered 200; "
        f"photos stored as analysed {done}, failed {failed} (and {analyzer.refused} left unsent at the deadline); "
        f"analyze() summary: {summary.analysed} analysed, {summary.requests} requests; client counted {int(http['requests'])} sends, "
        f"{int(http['rate_limited'])} 429s, {int(http['retries'])} retries",
        f"first to last 200 answer: {span:.1f} s ({len(ok) - 1} intervals)"
        + ("" if enough else f" -- shorter than two windows ({2 * args.window:g} s): too short to say much about the steady state"),
        "tightest span of " + (f"{args.limit + 1} consecutive arrivals: {tightest:.2f} s (the server refuses below {args.window:g} s)"
                               if tightest is not None else f"{args.limit + 1} consecutive arrivals: fewer arrivals than that"),
    ]
    print_report(table, details)
    if not args.quick and not args.no_doc:
        today = datetime.date.today().isoformat()
        load = load_average()
        section = f"""{SECTION}

Measured {today} by `bench/quota.py`: the real analysis stage (`catalog.analyze.analyze` with the
ImgTags analyzer at its default settings, `requests_per_minute = 60`, `concurrency = 4`) against the
loopback ImgTags server of `tests/imgtags_server.py`, in-process, answering after {args.latency:g} s and
enforcing {args.limit} requests per sliding {args.window:g}-s window (a 429 with the contract's `reset`
beyond that). {count} distinct generated JPEGs ({size / count / 1024:.1f} KiB each) were scanned and then
analysed for {duration:g} s; there were always photos left, so the throttle alone set the pace. Figures
come from the server's arrival times; rates are (n - 1) / (t_last - t_first) x 60 over the requests
answered 200.

{table}

{bullets(details)}
- How the client paces itself (`catalog/pacing.py`, `RateLimiter`): requests at least 60/60 = 1 s apart,
  and the request 60 places back at least 60 s + a 1.2-s margin ago. The first window therefore runs at
  60/min; after it, each block of 60 requests takes 61.2 s (60 one-second gaps, one of them 2.2 s), i.e.
  58.8/min (98.0% of the limit) over whole blocks, so a run's average lies between 58.8 and 60/min
  depending on where in a block it ends. The margin absorbs the delay between the client's send time and
  the server's arrival time (the tightest 61 arrivals above show how much of it was left).
- Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['os']}; 1-minute load
  average at the end: {load:.1f} (the run is network-bound on loopback, so load hardly matters).
"""
        write_section(args.doc, SECTION, section, command, say)
    return exit_status(missed, args.strict, say)


if __name__ == "__main__":
    sys.exit(main())
