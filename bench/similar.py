#!/usr/bin/env python3
"""Similar photos benchmark (issue 13): relation() on a labelled set of real photos, the commands, grouping 100k.

1. The labelled set (bench/similar_set.py): every photo of ../shared/photos/real (one of the
   eight landscape_N files, which are one scene) copied, plus files derived from its upright
   picture: resized to 50 % and 25 %, JPEG quality 60, PNG and WebP conversions, the pixels
   turned by 90 degrees with the EXIF orientation saying how to show them (copies); 3 % cropped
   off the left and top, brightness +10 % (edits); four burst frames (a 90 % window drifting
   1 % a frame, same camera Make/Model, DateTimeOriginal a second apart).
2. `relation()` on every labelled pair (copies of one picture: copy; an edit against the picture,
   its copies or the other edit: edit; frames of one burst: burst) and on every pair of files of
   two different photos (expected None). Precision and recall per class. Goals: copy precision
   >= 0.99, recall >= 0.95, no pair of distinct photos called a copy.
3. The real path: `catalog scan` over the set into a fresh catalogue, then
   `catalog duplicates --near --json`; its groups against the labels.
4. Grouping time at 100k photos (bench/similar_grouping.py): the set's fingerprints and
   synthetic ones (random hashes, and planted groups of copies, edits and bursts) through
   HashIndex, pairs() and relation(), each run in a fresh process for its peak RSS.
   Goal: <= 10 s on 2 cores.

It prints markdown tables and rewrites the `## Similar photos` section of docs/benchmarks.md
(not for --quick runs, nor with --no-doc).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from catalog.imagefacts import read_facts  # noqa: E402
from catalog.similar.classify import GROUP_DISTANCE, Candidate, relation  # noqa: E402
from catalog.similar.fingerprint import distance, fingerprint_file  # noqa: E402
from catalog.similar.index import chunk_count  # noqa: E402
from common import (add_common_options, bullets, command_line, exit_status,  # noqa: E402
                    load_average, machine, markdown_table, print_report, scratch_dir, write_section)
from similar_grouping import row_of, run_child, synthetic  # noqa: E402
from similar_set import CLASSES, NO_OP_LEVEL, build_set, evaluate, expected, scores  # noqa: E402

SECTION = "## Similar photos"
SOURCE = REPO.parent / "shared" / "photos" / "real"
WORKDIR = REPO / "bench" / ".work"
QUICK_PHOTOS = ["DSCN0010.jpg", "canon_hdr_NO.jpg", "hopper.gif"]
GOAL_PRECISION, GOAL_RECALL, GOAL_SECONDS = 0.99, 0.95, 10.0
MAX_PIXELS = 178_956_970  # the scan's default max_image_pixels
RADIUS = GROUP_DISTANCE  # the pairs catalog.similar.groups.near_groups asks its HashIndex for
REPEAT_UNDER = 3  # a grouping run over REPEAT_UNDER x the goal is not repeated (minutes of 2 shared CPUs)


def say(msg: str) -> None:
    print(f"[similar] {msg}", file=sys.stderr, flush=True)


def camera(make: str | None, model: str | None) -> str | None:
    return " ".join(p for p in (make, model) if p) or None


def candidates(items, root: Path) -> tuple[dict, list[float]]:
    """A Candidate per file, as the catalogue knows it (header facts, fingerprint), and the
    seconds each fingerprint took."""
    out, took = {}, []
    for item in items:
        with open(item.path, "rb") as f:
            facts = read_facts(f, max_image_pixels=MAX_PIXELS)
        started = time.perf_counter()
        fp = fingerprint_file(item.path)
        took.append(time.perf_counter() - started)
        out[item.path] = Candidate(id=str(item.path.relative_to(root)), fingerprint=fp, width=facts.width,
                                   height=facts.height, taken_at=facts.taken_at,
                                   camera=camera(facts.camera_make, facts.camera_model),
                                   bytes=item.path.stat().st_size, format=facts.format)
    return out, took


def ratio(right: int, total: int) -> str:
    return f"{right / total:.3f} ({right}/{total})" if total else "n/a (0/0)"


def cli_check(work: Path, root: Path, items) -> dict:
    """`catalog scan` into a fresh catalogue, `catalog duplicates --near --json`, and how its
    groups agree with the labels (pairs of files grouped together against copy/edit labels)."""
    catalog_bin = Path(sys.executable).parent / "catalog"
    env = {k: v for k, v in os.environ.items() if k not in ("CATALOG_CONFIG", "IMGTAGS_API_KEY", "IMGTAGS_BASE_URL")}
    env.update(CATALOG_DB=str(work / "catalog.db"), XDG_CONFIG_HOME=str(work / "xdg-config"))
    started = time.perf_counter()
    scan = subprocess.run([str(catalog_bin), "scan", "--json", str(root)], env=env, capture_output=True, text=True)
    scan_s = time.perf_counter() - started
    if scan.returncode not in (0, 1):
        return {"error": f"catalog scan failed ({scan.returncode}): {scan.stderr.strip()[-300:]}"}
    near = subprocess.run([str(catalog_bin), "duplicates", "--near", "--json"], env=env, capture_output=True,
                          text=True)
    if near.returncode:
        return {"error": f"`catalog duplicates --near --json` exited {near.returncode}: "
                         f"{near.stderr.strip().splitlines()[-1] if near.stderr.strip() else ''}"}
    groups = json.loads(near.stdout)
    by_path = {str(i.path.resolve()): i for i in items}
    grouped, mixed, unknown = {}, 0, 0
    for group in groups:
        paths = [p for record in group for p in record_paths(record)]
        members = [by_path[p] for p in paths if p in by_path]
        unknown += len(paths) - len(members)
        mixed += len({m.family for m in members}) > 1
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if expected(a, b) is not False:  # a burst frame and its source's files: unlabelled
                    grouped[frozenset((a.path, b.path))] = expected(a, b)
    want = {frozenset((a.path, b.path)) for i, a in enumerate(items) for b in items[i + 1:]
            if expected(a, b) in ("copy", "edit")}
    return {"scan_s": scan_s, "groups": len(groups), "mixed": mixed, "unknown": unknown,
            "grouped_pairs": len(grouped), "right": len(want & grouped.keys()), "wanted": len(want),
            "wrong": Counter(str(label) for label in grouped.values() if label not in ("copy", "edit"))}


def record_paths(record: dict) -> list[str]:
    """The file paths of one photo in `duplicates --near --json`."""
    paths = record.get("paths") or ([record["path"]] if record.get("path") else [])
    return [str(Path(p).resolve()) for p in paths]


def distance_summary(bits: list[int]) -> str:
    if not bits:
        return "-"
    bits = sorted(bits)
    return f"{bits[0]}-{statistics.median(bits):g}-{bits[-1]}"


def miss_lines(misses: list, most: int = 12) -> list[str]:
    """The wrong answers, by kind of pair (the original's copies taken together), most first."""
    kinds: dict = {}
    for a, b, label, got, bits in misses:
        names = sorted("a copy" if i.role == "copy" and i.variant not in ("original",) else
                       "burst" if i.role == "burst" else i.variant for i in (a, b))
        kind = kinds.setdefault((label, got, " / ".join(names)), {"n": 0, "bits": [], "photos": set()})
        kind["n"] += 1
        kind["bits"].append(bits)
        kind["photos"].add(a.family)
    lines = []
    for (label, got, names), k in sorted(kinds.items(), key=lambda kv: -kv[1]["n"])[:most]:
        photos = sorted(k["photos"])
        lines.append(f"wrong: {names}, expected {label}, got {got}: {k['n']} pair(s) of {len(photos)} photo(s) "
                     f"({', '.join(photos[:4])}{', ...' if len(photos) > 4 else ''}), "
                     f"{distance_summary(k['bits'])} bits")
    if len(kinds) > most:
        lines.append(f"... and {len(kinds) - most} more kinds of wrong answer")
    return lines


def quality_rows(result: dict) -> tuple[list[tuple], list[str]]:
    """The precision/recall rows and the goals they miss."""
    per_class = scores(result["confusion"])
    rows, missed = [], []
    for cls in CLASSES:
        right, called, wanted = per_class[cls]
        if cls == "copy":
            p_ok = called and right / called >= GOAL_PRECISION
            r_ok = wanted and right / wanted >= GOAL_RECALL
            rows.append((f"`{cls}` precision", ratio(right, called), f">= {GOAL_PRECISION}",
                         "pass" if p_ok else "**FAIL**"))
            rows.append((f"`{cls}` recall", ratio(right, wanted), f">= {GOAL_RECALL}", "pass" if r_ok else "**FAIL**"))
            missed += [] if p_ok else ["copy precision"]
            missed += [] if r_ok else ["copy recall"]
        else:
            rows.append((f"`{cls}` precision", ratio(right, called), "(reported)", ""))
            rows.append((f"`{cls}` recall", ratio(right, wanted), "(reported)", ""))
    distinct = sum(n for (label, _got), n in result["confusion"].items() if label is None)
    as_copy = result["confusion"][None, "copy"]
    rows.append(("pairs of distinct photos called `copy`", f"{as_copy} of {distinct:,}", "0",
                 "pass" if as_copy == 0 else "**FAIL**"))
    missed += [] if as_copy == 0 else ["distinct pairs called copy"]
    return rows, missed


def confusion_table(confusion: Counter) -> str:
    gots = ["copy", "edit", "burst", "similar", None]
    head = ("expected \\ relation()", *[str(g) for g in gots], "pairs")
    rows = []
    for label in ("copy", "edit", "burst", None):
        counts = [confusion[label, g] for g in gots]
        name = str(label) if label else "None (distinct photos)"
        rows.append((name, *[f"{c:,}" for c in counts], f"{sum(counts):,}"))
    return markdown_table(head, rows, right=range(1, len(head)))


def grouping_rows(runs: list[dict], n: int, wanted: int) -> tuple[list[tuple], list[str], list[str]]:
    totals = [r["total"] for r in runs]
    med = statistics.median(totals)
    peak = max(r["peak_rss_mib"] for r in runs)
    ok = med <= GOAL_SECONDS
    rows = [(f"grouping {n:,} fingerprints: HashIndex + pairs + relation() "
             f"({'median of ' + str(len(runs)) if len(runs) > 1 else 'one run'})",
             f"{med:.2f} s", f"<= {GOAL_SECONDS:g} s", "pass" if ok else "**FAIL**"),
            ("peak RSS of that process", f"{peak:.0f} MiB", "(reported)", "")]
    first = runs[0]
    details = ["grouping runs (s): " + "; ".join(f"build {r['build']:.2f} + pairs {r['pairs']:.2f} + classify "
                                                  f"{r['classify']:.2f} = {r['total']:.2f}" for r in runs),
               f"pairs within the radius: {first['n_pairs']:,}; relation() said "
               + ", ".join(f"{k} {v:,}" for k, v in sorted(first["relations"].items())),
               f"planted pairs within the radius the index did not return: {first['missed_planted']}",
               f"RSS after loading the {n:,} candidates: {first['rss_before_mib']:.0f} MiB; peak {peak:.0f} MiB"]
    if len(runs) < wanted:
        details.append(f"{len(runs)} of the {wanted} grouping runs asked for: a run over {REPEAT_UNDER} x the goal "
                       "is not repeated")
    return rows, details, [] if ok else ["grouping time"]


def index_work(n: int, seconds: float) -> str:
    """What HashIndex.pairs has to check for `n` evenly spread hashes at RADIUS, by its own choice
    of chunks (catalog.similar.index.chunk_count): the pigeonhole guarantee against the work."""
    m = chunk_count(n, RADIUS)
    if m is None:
        return f"HashIndex.pairs({RADIUS}) compares all {n * (n - 1) // 2:,} pairs for {n:,} hashes"
    s, widths = RADIUS // m, [64 // m + (i < 64 % m) for i in range(m)]  # as index._spans cuts them
    # per chunk: each of its 2**w values meets the values within s bits, ~n / 2**w hashes each
    checks = sum(sum(math.comb(w, k) for k in range(s + 1)) * n * n / 2 ** (w + 1) for w in widths)
    return (f"HashIndex.pairs({RADIUS}) on {n:,} hashes cuts them into {m} chunks of {min(widths)}-{max(widths)} bits "
            f"and pairs hashes within {s} bit(s) in some chunk: ~{n / 2 ** max(widths):,.0f} hashes share each "
            f"chunk value, so about {checks:,.0f} candidate pairs are checked on all 64 bits "
            f"({checks / seconds / 1e6:,.1f} million a second in the run above)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="the real photos (../shared/photos/real)")
    parser.add_argument("--photos", nargs="+", default=None, metavar="NAME",
                        help=f"only these photos of --source (all; --quick: {', '.join(QUICK_PHOTOS)})")
    parser.add_argument("--synthetic", type=int, default=None, help="fingerprints to group (100,000; --quick 10,000)")
    parser.add_argument("--runs", type=int, default=None, help="grouping runs, each in a fresh process (3; --quick 1)")
    parser.add_argument("--no-cli", action="store_true", help="skip `catalog scan` + `catalog duplicates --near`")
    parser.add_argument("--quick", action="store_true", help="three photos, 10,000 fingerprints, docs untouched")
    add_common_options(parser, "where the labelled set goes (bench/.work)", "keep the labelled set")
    args = parser.parse_args(argv)
    args.workdir = args.workdir or WORKDIR
    names = args.photos or (QUICK_PHOTOS if args.quick else None)
    n = args.synthetic or (10_000 if args.quick else 100_000)
    runs = args.runs or (1 if args.quick else 3)
    command = command_line("similar.py", argv)
    info = machine()
    load_start = load_average()
    if not args.source.is_dir():
        raise SystemExit(f"no photos at {args.source} (expected ../shared/photos/real; see --source)")

    with scratch_dir(args, "similar-", say) as work:
        root = work / "set"
        started = time.perf_counter()
        no_ops: list[str] = []
        items = build_set(args.source, root, names, no_ops)
        say(f"made {len(items)} files from {len({i.family for i in items})} photos "
            f"in {time.perf_counter() - started:.1f} s")
        cands, took = candidates(items, root)
        result = evaluate(items, cands, relation, distance)
        cli = {"error": "skipped (--no-cli)"} if args.no_cli else cli_check(work, root, items)
        real_rows = [row_of(c) for c in cands.values()]
        rows_file = work / "fingerprints.json"
        synth, planted = synthetic(n, real_rows)
        rows_file.write_text(json.dumps(synth))
        del synth
        timings = []
        for k in range(runs):
            timings.append(run_child(rows_file, RADIUS))
            say(f"grouping run {k + 1}: {timings[-1]['total']:.2f} s, peak RSS {timings[-1]['peak_rss_mib']:.0f} MiB")
            if timings[-1]["total"] > REPEAT_UNDER * GOAL_SECONDS:
                break

    q_rows, missed = quality_rows(result)
    g_rows, g_details, g_missed = grouping_rows(timings, n, runs)
    missed += g_missed
    table = markdown_table(("Measure", "catalog", "goal", "result"), q_rows + g_rows)
    matrix = confusion_table(result["confusion"])
    labels = Counter(label for label, _got in result["confusion"].elements())
    variants = result["variants"]
    details = [
        f"set: {len({i.family for i in items})} photos -> {len(items)} files; labelled pairs: "
        + ", ".join(f"{labels[c]:,} {c}" for c in CLASSES) + f", {labels[None]:,} of distinct photos "
        f"(relation() asked both ways: {result['asymmetric']} pair(s) answered differently)",
        f"edits left out because they change nothing visible (mean change < {NO_OP_LEVEL} level at 64x64): "
        + (", ".join(no_ops) or "none"),
        "each derived file against its original, right/all: "
        + ", ".join(f"{v} {variants[v][True]}/{sum(variants[v].values())}" for v in variants),
        "hash distance (bits, min-median-max) by expected relation: "
        + "; ".join(f"{label or 'distinct'} {distance_summary(result['distances'][label])}"
                    for label in ("copy", "edit", "burst", None)),
        f"distinct pairs within 10 bits: {sum(b <= 10 for b in result['distances'][None]):,}, within 16: "
        f"{sum(b <= 16 for b in result['distances'][None]):,}",
        f"fingerprint_file per file: median {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.0f} ms",
    ]
    details += miss_lines(result["misses"])
    if "error" in cli:
        details.append(f"real path: {cli['error']}")
    else:
        details.append(f"real path: `catalog scan` of the set ({cli['scan_s']:.1f} s) then `catalog duplicates --near "
                       f"--json`: {cli['groups']} groups ({cli['mixed']} mixing files of different photos, "
                       f"{cli['unknown']} paths not in the set); pairs of files grouped together that are labelled "
                       f"copy or edit: {ratio(cli['right'], cli['grouped_pairs'])}; labelled copy/edit pairs it "
                       f"grouped: {ratio(cli['right'], cli['wanted'])}"
                       + "".join(f"; grouped pairs labelled {k}: {v}" for k, v in sorted(cli["wrong"].items())))
    details += g_details + [f"synthetic: {n - len(real_rows):,} made-up fingerprints ({planted:,} in planted groups "
                            f"of copies, edits and bursts) + the set's {len(real_rows)}; pairs() radius {RADIUS} bits",
                            index_work(n, statistics.median(t["pairs"] for t in timings))]
    print_report(table + "\n\n" + matrix, details)
    if not args.quick and not args.no_doc:
        today = datetime.date.today().isoformat()
        section = f"""{SECTION}

Measured {today} by `bench/similar.py` (labelled set: `bench/similar_set.py`; grouping:
`bench/similar_grouping.py`):

{__doc__.split(chr(10), 2)[2].split("It prints")[0].strip()}

{table}

{matrix}

{bullets(details)}
- Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['os']}; 1-minute load
  average {load_start:.1f} at the start, {load_average():.1f} at the end.
"""
        write_section(args.doc, SECTION, section, command, say)
    return exit_status(missed, args.strict, say)


if __name__ == "__main__":
    sys.exit(main())
