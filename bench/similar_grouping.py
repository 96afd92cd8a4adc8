"""Grouping time of bench/similar.py: 100k fingerprints through HashIndex, pairs and relation(), in a child process."""

from __future__ import annotations

import base64
import datetime
import json
import random
import subprocess
import sys
import time
from pathlib import Path

CAMERAS = ("Apple iPhone 12", "Apple iPhone 8", "Canon EOS R6", "NIKON CORPORATION NIKON D750", "SONY ILCE-7M3",
           "FUJIFILM X-T3", "samsung SM-G991B", "Google Pixel 6", "OLYMPUS E-M10", None)
SHAPES = ((4000, 3000), (3000, 4000), (6000, 4000), (4032, 3024), (1920, 1080), (3000, 3000), (1600, 1200))
# Planted near groups, as (groups per 100,000 photos, members, bits flipped from the group's
# centre per member): copies sit within a few bits of each other, edits and burst frames further.
PLANTED = {"copy": (4000, (2, 4), (0, 3)), "edit": (2000, (2, 3), (2, 6)), "burst": (1000, (3, 8), (3, 8))}
# The fingerprint's grey cells (Fingerprint.detail): a group's members differ from its centre
# by up to this many levels a cell (copies agree within COPY_DETAIL on average).
DETAIL_NOISE = {"copy": 1, "edit": 8, "burst": 12}
DETAIL_CELLS = 256
EPOCH = datetime.datetime(2015, 1, 1)
HERE = Path(__file__).resolve().parent


def _flip(h: int, bits: int, rng: random.Random) -> int:
    for b in rng.sample(range(64), bits):
        h ^= 1 << b
    return h


def row_of(c) -> dict:
    """A Candidate as a JSON row (its fingerprint's cells in base64); candidate_of reads it back."""
    fp = c.fingerprint
    return {"id": c.id, "phash": fp.phash, "aspect": fp.aspect, "tone": fp.tone,
            "detail": base64.b64encode(fp.detail).decode(), "width": c.width, "height": c.height,
            "taken_at": c.taken_at, "camera": c.camera, "bytes": c.bytes, "format": c.format}


def candidate_of(r: dict):
    from catalog.similar.classify import Candidate
    from catalog.similar.fingerprint import Fingerprint

    fp = Fingerprint(r["phash"], r["aspect"], r["tone"], base64.b64decode(r["detail"]))
    return Candidate(id=r["id"], fingerprint=fp, width=r["width"], height=r["height"], taken_at=r["taken_at"],
                     camera=r["camera"], bytes=r["bytes"], format=r["format"])


def _cells(rng: random.Random, around: bytes | None = None, noise: int = 0) -> str:
    cells = bytes(min(255, max(0, c + rng.randint(-noise, noise))) for c in around) if around else \
        rng.randbytes(DETAIL_CELLS)
    return base64.b64encode(cells).decode()


def synthetic(n: int, real: list[dict], seed: int = 13) -> tuple[list[dict], int]:
    """`n` candidate rows: the real set's (`real`), planted near groups scaled to `n`, and the
    rest random 64-bit hashes with random shapes, tones, cameras and dates. Also returns how
    many rows were planted."""
    rng = random.Random(seed)
    rows = [dict(r, id=f"real:{r['id']}") for r in real][:n]
    planted = 0
    for kind, (per_100k, members, flips) in PLANTED.items():
        for g in range(max(1, per_100k * n // 100_000)):
            centre, (w, h) = rng.getrandbits(64), rng.choice(SHAPES)
            tone, camera, cells = rng.getrandbits(24), rng.choice(CAMERAS[:-1]), rng.randbytes(DETAIL_CELLS)
            when = EPOCH + datetime.timedelta(seconds=rng.randrange(10 * 365 * 86400))
            for m in range(rng.randint(*members)):
                if len(rows) >= n:
                    break
                scale = 1 if kind != "copy" or m == 0 else rng.choice((0.5, 0.25))
                bump = 0 if kind == "copy" else 0x0a0a0a if kind == "edit" and m else 0
                rows.append({"id": f"{kind}{g}#{m}", "phash": _flip(centre, rng.randint(*flips), rng),
                             "aspect": w / h, "tone": (tone + bump) & 0xFFFFFF,
                             "detail": _cells(rng, cells, DETAIL_NOISE[kind] if m else 0), "width": round(w * scale),
                             "height": round(h * scale), "bytes": rng.randrange(100_000, 8_000_000),
                             "format": "JPEG", "camera": camera,
                             "taken_at": (when + datetime.timedelta(seconds=m if kind == "burst" else 0)).isoformat()})
                planted += 1
    while len(rows) < n:
        w, h = rng.choice(SHAPES)
        when = EPOCH + datetime.timedelta(seconds=rng.randrange(10 * 365 * 86400))
        rows.append({"id": f"r{len(rows)}", "phash": rng.getrandbits(64), "aspect": w / h,
                     "tone": rng.getrandbits(24), "detail": _cells(rng), "width": w, "height": h,
                     "bytes": rng.randrange(100_000, 8_000_000), "format": "JPEG", "camera": rng.choice(CAMERAS),
                     "taken_at": when.isoformat()})
    rng.shuffle(rows)
    return rows, planted


def memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc: unlike getrusage's ru_maxrss,
    which keeps the parent's peak across fork and exec, these belong to this process alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(rows_file: Path, radius: int) -> dict:
    """In this process: Candidates from the rows, then (timed) HashIndex, pairs, relation()."""
    from catalog.similar.classify import relation
    from catalog.similar.index import HashIndex

    rows = json.loads(rows_file.read_text())
    cands = {r["id"]: candidate_of(r) for r in rows}
    del rows
    rss_before = memory_mib("VmRSS")
    t0 = time.perf_counter()
    index = HashIndex((c.id, c.fingerprint.phash) for c in cands.values())
    t1 = time.perf_counter()
    pairs = list(index.pairs(radius))
    t2 = time.perf_counter()
    counts: dict = {}
    for a, b, _bits in pairs:
        got = relation(cands[a], cands[b])
        counts[got] = counts.get(got, 0) + 1
    t3 = time.perf_counter()
    peak = memory_mib("VmHWM")  # before the check below builds its own set of pairs
    return {"build": t1 - t0, "pairs": t2 - t1, "classify": t3 - t2, "total": t3 - t0, "n_pairs": len(pairs),
            "relations": {str(k): v for k, v in counts.items()}, "rss_before_mib": rss_before,
            "peak_rss_mib": peak, "missed_planted": missed_planted(cands, {(a, b) for a, b, _ in pairs}, radius)}


def missed_planted(cands: dict, found: set, radius: int) -> int:
    """Planted pairs within `radius` bits of each other that the index did not return."""
    groups: dict = {}
    for key in cands:
        if "#" in key:
            groups.setdefault(key.split("#")[0], []).append(key)
    missed = 0
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                near = (cands[a].fingerprint.phash ^ cands[b].fingerprint.phash).bit_count() <= radius
                missed += near and (a, b) not in found and (b, a) not in found
    return missed


def run_child(rows_file: Path, radius: int) -> dict:
    """One timing in a fresh interpreter, so its peak RSS is the grouping's alone."""
    code = ("import json, sys; from pathlib import Path; sys.path[:0] = [sys.argv[3], sys.argv[4]]; "
            "import similar_grouping as g; print(json.dumps(g.child(Path(sys.argv[1]), int(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, str(rows_file), str(radius), str(HERE), str(HERE.parent)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the grouping child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
