"""bench/scan.py --sizes (the growth benchmark) and its tree, so they cannot rot."""

from __future__ import annotations

import io
import itertools
import shutil
from pathlib import Path

import pytest
from PIL import Image

from catalog.similar.fingerprint import distance, fingerprint_image

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import growth_tree
    import scan
    import scan_growth

    return scan, scan_growth, growth_tree


def test_sizes_take_k_and_m_suffixes_and_refuse_anything_else(bench, capsys):
    _scan, growth, _tree = bench
    assert growth.parse_sizes("100k,10k,1m") == [10_000, 100_000, 1_000_000]
    assert growth.parse_sizes("2500, 1.5k") == [1500, 2500]
    for bad in ("ten", "10k,", "1.5", "0"):
        with pytest.raises(ValueError):
            growth.parse_sizes(bad)
    with pytest.raises(SystemExit) as exc:
        _scan.main(["--sizes", "10q"])
    assert exc.value.code == 2 and "--sizes: '10q' is not a size" in capsys.readouterr().err


def test_the_tree_is_distinct_pictures_with_a_few_real_copies(bench):
    """Distinct photos are far apart for the similar-photo grouping (no giant group); copies are exact."""
    *_, tree = bench
    n = 600
    data = [tree.encode(i) for i in range(n)]
    assert data == [tree.encode(i) for i in range(n)]  # the same file from its index alone
    kinds = [tree.kind(i) for i in range(n)]
    assert {"copy", "near", "burst"} <= set(kinds) and kinds.count("photo") > 0.9 * n
    for i, k in enumerate(kinds):
        if k == "copy":
            assert data[i] == data[tree.source_of(i)] and kinds[tree.source_of(i)] == "photo"
    hashes = {i: fingerprint_image(Image.open(io.BytesIO(data[i]))).phash for i in range(n) if kinds[i] == "photo"}
    assert len(set(data[i] for i in hashes)) == len(hashes)
    closest = min(distance(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2))
    assert closest > 12, closest
    near = [distance(hashes[tree.source_of(i)], fingerprint_image(Image.open(io.BytesIO(data[i]))).phash)
            for i in range(n) if kinds[i] in ("near", "burst")]
    assert max(near) <= 8, near
    taken = {i: Image.open(io.BytesIO(data[i])).getexif().get(0x0132) for i in range(n)}
    frames = [i for i in range(n) if kinds[i] == "burst" and taken[i]]
    assert frames and all(taken[i] != taken[tree.source_of(i)] for i in frames)  # a burst: a later shot
    assert all(taken[i] == taken[tree.source_of(i)] for i in range(n) if kinds[i] == "near")


def test_the_tree_grows_and_each_size_is_a_subset(bench, tmp_path):
    *_, tree = bench
    said = []
    made = tree.grow(tmp_path, [50, 120], 2, said.append)
    assert [m["files"] for m in made] == [50, 70]
    assert sorted(p.name for p in tmp_path.rglob("*.jpg"))[:3] == ["IMG_0000000.jpg", "IMG_0000001.jpg",
                                                                   "IMG_0000002.jpg"]
    assert [len(list(r.rglob("*.jpg"))) for r in tree.roots(tmp_path, [50, 120], 50)] == [50]
    again = tree.grow(tmp_path, [50, 120, 200], 2, said.append)  # grown, not rebuilt
    assert [m["files"] for m in again] == [0, 0, 80]
    (tmp_path / "part-2" / ".complete").unlink()  # as if killed after its files were written
    tree.path_of(tmp_path, 2, 199).write_bytes(b"half")  # ... but in the middle of the last one
    assert [m["files"] for m in tree.grow(tmp_path, [50, 120, 200], 2, said.append)] == [0, 0, 80]
    (tmp_path / "part-2" / ".complete").unlink()  # killed once the last chunk was whole: nothing to write
    assert [m["files"] for m in tree.grow(tmp_path, [50, 120, 200], 2, said.append)] == [0, 0, 0]
    assert sum(len(list(r.rglob("*.jpg"))) for r in tree.roots(tmp_path, [50, 120, 200], 200)) == 200


def test_the_growth_run_reports_every_size(bench, tmp_path, shared_photos, capsys):
    scan, *_ = bench
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("DSCN0010.jpg", "jolla.jpg"):
        shutil.copy(shared_photos / "real" / name, photos / name)
    doc = tmp_path / "benchmarks.md"
    assert scan.main(["--sizes", "120,240", "--workdir", str(tmp_path / "work"), "--doc", str(doc),
                      "--photos", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "| 120 |" in out and "| 240 |" in out and "over 2 real camera photos" in out
    section = doc.read_text()
    assert section.startswith("# Benchmarks") and "## Growth" in section and "--sizes 120,240" in section
    assert not (tmp_path / "work" / "growth").exists()  # no --keep: removed
