"""Fingerprints in the scan: pixels that cannot be decoded behind a sound container, big decodes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

from PIL import Image

from audit import crashes, run_cli
from similar_pairs import undecodable_png


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}


def test_undecodable_pixels_are_a_recorded_reason(photos, tmp_path, figures):
    """A PNG whose container is sound but whose pixels are not: catalogued, no fingerprint, a reason."""
    lib = tmp_path / "lib"
    lib.mkdir()
    undecodable_png(lib / "broken.png")
    for name in ("DSCN0010.jpg", "hopper.gif"):
        (lib / name).write_bytes((photos / "real" / name).read_bytes())
    before = _digests(lib)
    env = {**os.environ, "CATALOG_DB": str(tmp_path / "c.db")}
    started = time.perf_counter()
    scans = [run_cli("scan", lib, env=env, timeout=120) for _ in range(2)]
    took = time.perf_counter() - started
    figures.crashes = sum(crashes(r) for r in scans) + sum(r.returncode not in (0, 1) for r in scans)
    figures.originals_damaged = sum(before[n] != d for n, d in _digests(lib).items())
    with sqlite3.connect(tmp_path / "c.db") as conn:
        rows = conn.execute("SELECT f.name, p.phash IS NOT NULL, p.fingerprint_error FROM files f "
                            "JOIN photos p ON p.id = f.photo_id ORDER BY f.name").fetchall()
    assert [(n, bool(ok)) for n, ok, _ in rows] == [("DSCN0010.jpg", True), ("broken.png", False),
                                                     ("hopper.gif", True)]
    reason = rows[1][2]
    assert reason and "cannot decode the picture" in reason
    figures.note = (f"1 of 3 photos without a fingerprint, its reason recorded ({reason[:40]}...); "
                    f"two scans in {took:.1f} s, exit {scans[0].returncode}/{scans[1].returncode}")
    assert figures.crashes == 0 and figures.originals_damaged == 0


def test_a_big_jpeg_is_fingerprinted_from_a_small_decode(tmp_path, figures):
    """A 36 MP JPEG fingerprints at 1/8 scale: the scan stays small and quick."""
    lib = tmp_path / "lib"
    lib.mkdir()
    Image.radial_gradient("L").resize((6000, 6000)).save(lib / "huge.jpg", quality=50)
    env = {**os.environ, "CATALOG_DB": str(tmp_path / "c.db")}
    started = time.perf_counter()
    result = run_cli("scan", lib, env=env, timeout=120)
    took = time.perf_counter() - started
    figures.crashes = crashes(result) + (result.returncode != 0)
    with sqlite3.connect(tmp_path / "c.db") as conn:
        (phash, aspect), = conn.execute("SELECT phash, aspect FROM photos").fetchall()
    assert phash is not None and aspect == 1.0
    figures.note = f"36 MP JPEG scanned and fingerprinted in {took:.1f} s (draft decode at 1/8)"
    assert figures.crashes == 0
