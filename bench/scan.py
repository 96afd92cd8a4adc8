#!/usr/bin/env python3
"""Scan benchmark: `catalog scan` against standard tools on the same synthetic files.

One run builds two trees under a work directory (default bench/.work/, removed
afterwards unless --keep) and measures, each next to a peer:

  1. first scan of N large JPEGs (default 1,000 x 4 MiB = 4 GiB)   vs  b3sum over the same files
  2. first scan of N small JPEGs with EXIF (default 100,000)       vs  b3sum over the same files
  3. no-change rescan of the small tree, cold then warm cache     vs  find -printf '%s %T@\\n'
  4. peak RSS of every catalog run (from /usr/bin/time -v, else getrusage of a wrapper)

It prints a markdown table and rewrites the `## Scan` section of
docs/benchmarks.md (not for --quick runs, nor with --no-doc).

`--sizes 10k,100k,1m` runs the growth benchmark instead (bench/scan_growth.py):
time, peak RSS and database bytes per file at each library size, `## Growth`.

The files are real JPEG containers so the identity code walks their segments:
a few bases are encoded with Pillow (noise, quality 95 / 85) and every file is
a copy whose *entropy-coded scan data* differs in three bytes (never a 0xFF
byte or the byte after one, and never writing 0xFF), so every file is a
distinct photo to the catalogue, not a duplicate. Large files are padded to
exactly --large-mib MiB with APP15 segments (left out of the identity hash,
hashed by b3sum: b3sum reads slightly more bytes than we do).

The page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before
every timed command when that works (root on Linux), so each command reads the
files from disk; the programs themselves (Python + catalog modules, b3sum,
find) are warmed up first. If dropping fails, every command runs warm after an
untimed warm-up read and the output says so.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import scan_growth
from common import (DEFAULT_DOC, REPO, catalog_command, command_line, drop_page_cache, exit_status, load_average,
                    machine, markdown_table, quoted, roots_of, write_section)

DEFAULT_WORKDIR = REPO / "bench" / ".work"
SECTION = "## Scan"
# what docs/benchmarks.md starts with when there is none yet
NEW_DOC = "# Benchmarks\n\nFigures measured by the scripts in `bench/`; each section is rewritten by its script.\n"
TIME_BIN = "/usr/bin/time"

GOAL_LARGE = 1.5     # first scan of large files, x b3sum
GOAL_SMALL = 4.0     # first scan of small files (facts and fingerprint included), x b3sum (issue 14)
GOAL_RESCAN = 3.0    # no-change rescan, x find -printf
GOAL_RSS_MB = 200.0  # peak RSS of any catalog run

SMALL_PER_FOLDER = 500
LARGE_PER_FOLDER = 100
SMALL_VARIANTS = 300
LARGE_BASES = 5


def human(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def die(message: str) -> None:
    print(f"bench/scan.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- tools -----------------------------------------------------------------------------------

def check_tools() -> dict:
    """Every peer must be there; say exactly what is missing and how to get it."""
    missing = []
    b3sum = shutil.which("b3sum")
    if not b3sum:
        missing.append("b3sum (apt-get install b3sum, or run `make bench`, which installs it)")
    find = shutil.which("find")
    xargs = shutil.which("xargs")
    if not find or not xargs:
        missing.append("find/xargs (GNU findutils: apt-get install findutils)")
    if missing:
        die("peer tools not found on PATH: " + "; ".join(missing))
    probe = subprocess.run([find, "/dev/null", "-maxdepth", "0", "-printf", "%s %T@\\n"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        die(f"{find} does not support -printf (GNU find needed): {probe.stderr.strip()}")
    try:
        import blake3  # noqa: F401
        import PIL  # noqa: F401

        import catalog  # noqa: F401
    except ImportError as exc:
        die(f"{exc}: run this with the project venv (`make bench` or .venv/bin/python bench/scan.py)")
    version = subprocess.run([b3sum, "--version"], capture_output=True, text=True).stdout.strip()
    return {"b3sum": b3sum, "b3sum_version": version, "find": find,
            "time": TIME_BIN if os.access(TIME_BIN, os.X_OK) else None}


# -- synthetic JPEGs -------------------------------------------------------------------------

def _segments_end(buf: bytes) -> tuple[int, int]:
    """(start, end) of the entropy-coded data of a baseline JPEG written by Pillow."""
    pos = 2
    while True:
        assert buf[pos] == 0xFF, "unexpected JPEG layout"
        marker = buf[pos + 1]
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if marker == 0xDA:
            start = pos + 2 + length
            end = buf.rindex(b"\xff\xd9")
            return start, end
        pos += 2 + length


@dataclass
class Base:
    data: bytes
    slots: tuple[int, int, int]  # scan-data offsets we may overwrite


def _base(encoded: bytes, pad_to: int | None = None) -> Base:
    if pad_to is not None:
        missing = pad_to - len(encoded)
        if missing < 0:
            raise ValueError("base image larger than the target size")
        padding = bytearray()
        while missing:
            if missing < 4:  # too small for a segment: trim one byte off the previous one
                raise ValueError("cannot pad by fewer than 4 bytes")
            body = min(missing - 4, 65533)
            if 0 < missing - 4 - body < 4:  # never leave a remainder too small for a segment
                body -= 4
            padding += b"\xff\xef" + (body + 2).to_bytes(2, "big") + bytes(body)
            missing -= body + 4
        encoded = encoded[:2] + bytes(padding) + encoded[2:]
        assert len(encoded) == pad_to
    start, end = _segments_end(encoded)
    slots = []
    rng = random.Random(len(encoded))
    while len(slots) < 3:
        p = rng.randrange(start + 16, end - 16)
        if encoded[p] != 0xFF and encoded[p - 1] != 0xFF and all(abs(p - q) > 2 for q in slots):
            slots.append(p)
    return Base(encoded, tuple(slots))


def _distinct(base: Base, n: int) -> bytes:
    """Copy `n` of a base: three scan-data bytes encode n (values 1..254, never 0xFF)."""
    buf = bytearray(base.data)
    for slot in base.slots:
        buf[slot] = n % 254 + 1
        n //= 254
    if n:
        raise ValueError("too many copies of one base")
    return bytes(buf)


def large_bases(target: int, count: int) -> list[Base]:
    from PIL import Image

    bases = []
    rng = random.Random(1)
    pixels = int(target / 1.20)  # uniform noise at quality 95: ~1.18 bytes per pixel
    for i in range(count):
        while True:
            w = int((pixels * 4 / 3) ** 0.5) // 16 * 16
            h = (w * 3 // 4) // 16 * 16
            img = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
            out = io.BytesIO()
            img.save(out, "JPEG", quality=95)
            if len(out.getvalue()) <= target - 1024:
                break
            pixels = int(pixels * 0.95)
        bases.append(_base(out.getvalue(), pad_to=target))
    return bases


CAMERAS = [("Canon", "Canon EOS 80D"), ("Apple", "iPhone 12"), ("FUJIFILM", "X-T30"),
           ("NIKON", "COOLPIX P6000"), ("SONY", "ILCE-7M3"), ("samsung", "SM-G991B")]


def small_bases(count: int) -> list[Base]:
    from PIL import Image

    rng = random.Random(2)
    bases = []
    for i in range(count):
        w, h = rng.choice([(64, 48), (80, 60), (96, 72), (72, 96)])
        img = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
        exif = Image.Exif()
        make, model = CAMERAS[i % len(CAMERAS)]
        exif[0x010F], exif[0x0110] = make, model
        exif[0x0112] = rng.randint(1, 8)
        taken = (f"{rng.randint(2005, 2024)}:{rng.randint(1, 12):02d}:{rng.randint(1, 28):02d} "
                 f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}")
        exif[0x0132] = taken
        exif.get_ifd(0x8769)[0x9003] = taken
        if i % 3 == 0:
            exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 23.8), 3: "E", 4: (2.0, 21.0, 7.9)})
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85, exif=exif)
        bases.append(_base(out.getvalue()))
    return bases


def build_tree(root: Path, bases: list[Base], count: int, per_folder: int, prefix: str) -> int:
    """`count` distinct files cycling through `bases`; returns the bytes written."""
    total = 0
    folder = None
    for i in range(count):
        if i % per_folder == 0:
            folder = root / f"{prefix}{i // per_folder:04d}"
            folder.mkdir(parents=True)
        base = bases[i % len(bases)]
        data = _distinct(base, i // len(bases))
        with open(folder / f"IMG_{i:06d}.jpg", "wb") as f:
            f.write(data)
        total += len(data)
    return total


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mb: float | None = None
    summary: dict = field(default_factory=dict)


def best(runs: list[Run]) -> Run:
    """Fastest of the repeats (other load only ever adds time), with the highest RSS of them all."""
    fastest = min(runs, key=lambda r: r.seconds)
    rss = [r.rss_mb for r in runs if r.rss_mb is not None]
    return Run(fastest.seconds, max(rss) if rss else None, fastest.summary)


class Bench:
    def __init__(self, work: Path, tools: dict, *, cold: bool = True):
        self.work = work
        self.tools = tools
        self.cold = cold and drop_page_cache()
        self.cache_note = (
            "cold page cache (dropped before every timed command but the warm-rescan row's; programs warmed up)"
            if self.cold else
            "warm page cache (could not drop it; every command ran after an untimed warm-up read)" if cold else
            "warm page cache (every command ran after an untimed warm-up read)"
        )
        self.env = dict(os.environ)
        for name in ("CATALOG_CONFIG", "CATALOG_DB"):
            self.env.pop(name, None)
        self.env["XDG_CONFIG_HOME"] = str(work / "xdg-config")  # no personal config file
        self.env["XDG_DATA_HOME"] = str(work / "xdg-data")
        self.max_load = 0.0  # 1-minute load average seen just before a timed command

    def _prepare(self, root: Path | list[Path]) -> None:
        """Before a timed command: same starting state for ours and the peer."""
        if self.cold:
            os.sync()
            if not drop_page_cache():
                die("dropping the page cache stopped working mid-run")
            # Programs warm, data cold: load Python, catalog's modules and the peers' binaries.
            subprocess.run([sys.executable, "-c",
                            "import catalog.cli, catalog.scan, catalog.commands.scan"], check=True)
            subprocess.run([self.tools["b3sum"], "--version"], capture_output=True, check=True)
            subprocess.run([self.tools["find"], "--version"], capture_output=True, check=True)
        else:
            subprocess.run(f"find {quoted(root)} -type f -print0 | xargs -0 cat > /dev/null",
                           shell=True, check=True)
        self.max_load = max(self.max_load, load_average())

    def peer(self, command: str, root: Path) -> Run:
        self._prepare(root)
        started = time.perf_counter()
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            die(f"peer command failed ({done.returncode}): {command}\n{done.stderr}")
        say(f"    peer     {seconds:7.2f} s")
        return Run(seconds)

    def catalog(self, root: Path | list[Path], db: Path, *, fresh: bool) -> Run:
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        self._prepare(root)
        env = dict(self.env, CATALOG_DB=str(db))
        command = catalog_command() + ["scan", "--json", *map(str, roots_of(root))]
        with tempfile.NamedTemporaryFile("r", dir=self.work, suffix=".rss") as rss_file:
            if self.tools["time"]:
                wrapped = [self.tools["time"], "-v", "-o", rss_file.name] + command
            else:  # a wrapper process whose only child is the catalog run
                wrapped = [sys.executable, "-c",
                           "import resource, subprocess, sys\n"
                           "rc = subprocess.run(sys.argv[2:]).returncode\n"
                           "open(sys.argv[1], 'w').write('Maximum resident set size (kbytes): %d\\n'"
                           " % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
                           "sys.exit(rc)", rss_file.name] + command
            started = time.perf_counter()
            done = subprocess.run(wrapped, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            report = rss_file.read()
        if done.returncode != 0:
            die(f"catalog scan failed ({done.returncode}): {shlex.join(command)}\n"
                f"{done.stderr[-2000:]}")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
        rss = int(m.group(1)) / 1024 if m else None
        say(f"    catalog  {seconds:7.2f} s" + (f", peak RSS {rss:.0f} MB" if rss is not None else ""))
        return Run(seconds, rss, json.loads(done.stdout))

    def alternate(self, peer_command: str, root: Path, db: Path, repeat: int, *, fresh: bool,
                  files: int, new: int, unchanged: int) -> tuple[Run, Run]:
        """`repeat` runs of the peer and of catalog, alternating; the best of each (peer, catalog)."""
        peer_runs, our_runs = [], []
        for _ in range(repeat):
            peer_runs.append(self.peer(peer_command, root))
            our_runs.append(self.catalog(root, db, fresh=fresh))
            check_summary(our_runs[-1].summary, files=files, new=new, unchanged=unchanged)
        return best(peer_runs), best(our_runs)


def check_summary(summary: dict, *, files: int, new: int, unchanged: int) -> None:
    got = (summary.get("files_seen"), summary.get("new"), summary.get("unchanged"), summary.get("errors"))
    if got != (files, new, unchanged, 0):
        die(f"catalog scan did not do what the benchmark expects: files_seen/new/unchanged/errors = "
            f"{got}, expected {(files, new, unchanged, 0)}")


# -- report ----------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    ours: Run
    peer_name: str
    peer: Run
    goal: float

    @property
    def ratio(self) -> float:
        return self.ours.seconds / self.peer.seconds


def _rss_cell(run: Run) -> str:
    if run.rss_mb is None:
        return "n/a"
    return f"{run.rss_mb:.0f} MB ({'pass' if run.rss_mb <= GOAL_RSS_MB else 'FAIL'})"


def table(rows: list[Row]) -> str:
    head = ("Measurement", "catalog (s)", "Peer", "Peer (s)", "Ratio", "Goal", "Result",
            f"catalog peak RSS (goal ≤ {GOAL_RSS_MB:.0f} MB)")
    return markdown_table(head, [
        (r.name, f"{r.ours.seconds:.2f}", r.peer_name, f"{r.peer.seconds:.2f}", f"{r.ratio:.2f}×",
         f"≤ {r.goal:g}×", "pass" if r.ratio <= r.goal else "FAIL", _rss_cell(r.ours))
        for r in rows
    ], right=(1, 3, 4, 5, 7))


def memory() -> str:
    try:
        mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        return f"{mem / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        return "unknown"


def load_note(bench: Bench, nproc: int) -> str:
    note = f"1-minute load average before timed commands: at most {bench.max_load:.1f} on {nproc} CPUs"
    if bench.max_load > nproc / 2:
        note += " (other processes were busy: figures are noisier than on an idle machine)"
    return note


def doc_section(rows, info, tools, args, bench, sizes) -> str:
    today = datetime.date.today().isoformat()
    return f"""{SECTION}

Measured {today} by `bench/scan.py`: best of {args.repeat} run(s) of each command, peer and catalog
alternating; {bench.cache_note}; {load_note(bench, info['nproc'])}.

{table(rows)}

- Large files: {sizes['large_files']:,} JPEGs of {args.large_mib:g} MiB ({human(sizes['large_bytes'])}), {LARGE_PER_FOLDER} per folder.
- Small files: {sizes['small_files']:,} JPEGs with EXIF make/model/date (a third with GPS), {sizes['small_bytes'] / sizes['small_files'] / 1024:.1f} KiB on average, {SMALL_PER_FOLDER} per folder.
- Every file is a distinct photo: copies of a few Pillow-encoded bases whose entropy-coded scan data differs in three bytes (large files are padded to size with APP15 segments, which the identity hash leaves out and b3sum reads).
- catalog: `catalog scan --json ROOT` on a fresh database for a first scan, the same database for the rescan (default settings: `hash_workers = 4`); identity hash and header/EXIF facts included. Peers: `find ROOT -type f -print0 | xargs -0 b3sum > /dev/null` (its default threading) and `find ROOT -type f -printf '%s %T@\\n' > /dev/null`.
- Peak RSS from `/usr/bin/time -v` (maximum resident set size of the catalog process).
- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Python {info['python']}, {tools['b3sum_version']}, {info['os']}.
"""


# -- main ------------------------------------------------------------------------------------

def growth(args, command: str) -> int:
    """--sizes: the growth mode (bench/scan_growth.py) in its own work dir, kept between --keep runs
    so the tree is grown, not rebuilt."""
    tools = check_tools()
    info = {**machine(), "memory": memory()}
    work = args.workdir.resolve() / "growth"
    work.mkdir(parents=True, exist_ok=True)
    args.command, args.new_doc = command, NEW_DOC
    try:
        bench = Bench(work, tools, cold=False)
        say(f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; {bench.cache_note}")
        missed = scan_growth.run(args, bench, tools, info, work, say)
    finally:
        if args.keep:
            say(f"work dir kept (the tree is grown, not rebuilt, next time): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return exit_status(missed, args.strict, say)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=None, help="small files (default 100000)")
    parser.add_argument("--large", type=int, default=None, help="large files (default 1000)")
    parser.add_argument("--large-mib", type=float, default=4, help="size of each large file (default 4)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"where the trees and databases go (default {DEFAULT_WORKDIR.relative_to(REPO)})")
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2000 small / 50 large files; docs are not updated")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="markdown file to update")
    parser.add_argument("--no-doc", action="store_true", help="do not update the doc")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of each command, the fastest counts (default 3; 1 with --quick)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--sizes", default=None, metavar="10k,100k,1m",
                        help="growth mode instead: first scan, rescan and database size at each library size "
                             "(k/m suffixes), with a warm page cache; see bench/scan_growth.py")
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "photos",
                        help="real camera photos whose thumbnails --sizes also measures (default ../shared/photos)")
    args = parser.parse_args(argv)
    if args.sizes is not None:
        try:
            args.sizes = scan_growth.parse_sizes(args.sizes)
        except ValueError as exc:
            parser.error(f"--sizes: {exc}")
        return growth(args, command_line("scan.py", argv))
    small = args.small if args.small is not None else (2000 if args.quick else 100_000)
    large = args.large if args.large is not None else (50 if args.quick else 1000)
    args.repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if small < 1 or large < 1 or args.large_mib <= 0 or args.repeat < 1:
        parser.error("--small, --large, --large-mib and --repeat must be positive")
    command = command_line("scan.py", argv)

    tools = check_tools()
    info = {**machine(), "memory": memory()}
    workdir = args.workdir.resolve()
    made_workdir = not workdir.exists()
    work = workdir / "scan"
    if work.exists():
        shutil.rmtree(work)  # leftovers of an earlier --keep run
    work.mkdir(parents=True)
    try:
        bench = Bench(work, tools)
        say(f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; {bench.cache_note}")
        rows: list[Row] = []
        sizes = {"large_files": large, "small_files": small}

        # 1. large files
        target = int(args.large_mib * 2**20)
        say(f"building {large:,} x {args.large_mib:g} MiB JPEGs under {work / 'large'} ...")
        t = time.perf_counter()
        sizes["large_bytes"] = build_tree(work / "large", large_bases(target, LARGE_BASES), large,
                                          LARGE_PER_FOLDER, "large-")
        say(f"  built in {time.perf_counter() - t:.1f} s; timing")
        root = work / "large"
        b3sum_command = f"find {shlex.quote(str(root))} -type f -print0 | xargs -0 b3sum > /dev/null"
        b3, ours = bench.alternate(b3sum_command, root, work / "large.db", args.repeat, fresh=True,
                                   files=large, new=large, unchanged=0)
        rows.append(Row(f"First scan, {large:,} × {args.large_mib:g} MiB JPEGs "
                        f"({human(sizes['large_bytes'])})", ours, "b3sum", b3, GOAL_LARGE))
        say(f"  catalog {ours.seconds:.2f} s, b3sum {b3.seconds:.2f} s")
        if not args.keep:
            shutil.rmtree(root)  # frees the disk before the next tree

        # 2 + 3. small files
        say(f"building {small:,} small JPEGs under {work / 'small'} ...")
        t = time.perf_counter()
        root = work / "small"
        sizes["small_bytes"] = build_tree(root, small_bases(min(SMALL_VARIANTS, small)), small,
                                          SMALL_PER_FOLDER, "small-")
        say(f"  built in {time.perf_counter() - t:.1f} s ({sizes['small_bytes'] / 2**20:.0f} MiB); timing")
        b3sum_command = f"find {shlex.quote(str(root))} -type f -print0 | xargs -0 b3sum > /dev/null"
        b3, ours = bench.alternate(b3sum_command, root, work / "small.db", args.repeat, fresh=True,
                                   files=small, new=small, unchanged=0)
        rows.append(Row(f"First scan, {small:,} small JPEGs", ours, "b3sum", b3, GOAL_SMALL))
        say(f"  catalog {ours.seconds:.2f} s, b3sum {b3.seconds:.2f} s")
        find_command = f"find {shlex.quote(str(root))} -type f -printf '%s %T@\\n' > /dev/null"
        found, again = bench.alternate(find_command, root, work / "small.db", args.repeat, fresh=False,
                                       files=small, new=0, unchanged=small)
        cache = ", cold page cache" if bench.cold else ""
        rows.append(Row(f"No-change rescan, {small:,} small JPEGs{cache}", again, "find -printf", found, GOAL_RESCAN))
        say(f"  catalog {again.seconds:.2f} s, find {found.seconds:.2f} s")
        if bench.cold:  # and with the page cache warm: the goal holds for both
            say("  the rescan again, page cache warm")
            bench.cold = False
            try:
                found, again = bench.alternate(find_command, root, work / "small.db", args.repeat, fresh=False,
                                               files=small, new=0, unchanged=small)
            finally:
                bench.cold = True
            rows.append(Row(f"No-change rescan, {small:,} small JPEGs, warm page cache", again, "find -printf",
                            found, GOAL_RESCAN))
            say(f"  catalog {again.seconds:.2f} s, find {found.seconds:.2f} s")
    finally:
        if args.keep:
            say(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if made_workdir:
                try:
                    workdir.rmdir()  # only if nothing else was put there meanwhile
                except OSError:
                    pass

    print()
    print(f"Scan benchmark: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
          f"{tools['b3sum_version']}; best of {args.repeat}; {bench.cache_note}; "
          f"{load_note(bench, info['nproc'])}.")
    print()
    print(table(rows))
    print()
    print(f"Command: {command}")
    missed = [r.name for r in rows if r.ratio > r.goal]
    missed += [f"{r.name} (peak RSS)" for r in rows if r.ours.rss_mb is not None and r.ours.rss_mb > GOAL_RSS_MB]
    if args.quick or args.no_doc:
        say("docs not updated (--quick / --no-doc)")
    else:
        write_section(args.doc, SECTION, doc_section(rows, info, tools, args, bench, sizes), command, say,
                      new_file=NEW_DOC)
    return exit_status(missed, args.strict, say)


if __name__ == "__main__":
    sys.exit(main())
