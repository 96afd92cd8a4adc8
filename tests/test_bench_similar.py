"""bench/similar.py on two or three photos, so the similar-photos benchmark cannot rot."""

from __future__ import annotations

import datetime
from pathlib import Path

import piexif
import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import similar
    import similar_set

    return similar, similar_set


def upright(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def test_the_set_is_labelled_and_scored(bench, photos, tmp_path):
    similar, s = bench
    items = s.build_set(photos / "real", tmp_path / "set", ["DSCN0010.jpg", "canon_hdr_NO.jpg"])
    assert len(items) == 2 * 13
    labels = [label for _a, _b, label in s.labelled_pairs(items)]
    # per photo: 7 files of one picture (21 copy pairs), 2 edits against them and each other (15),
    # 4 burst frames (6); every file of one photo against every file of the other (169)
    assert {c: labels.count(c) for c in ("copy", "edit", "burst", None)} == \
        {"copy": 42, "edit": 30, "burst": 12, None: 169}

    by = {(i.family, i.variant): i.path for i in items}
    for family in ("DSCN0010.jpg", "canon_hdr_NO.jpg"):
        original, turned = upright(by[family, "original"]), upright(by[family, "rotated"])
        assert original.size == turned.size
        assert max(ImageStat.Stat(ImageChops.difference(original, turned)).mean) < 8  # the same picture
        with Image.open(by[family, "rotated"]) as stored, Image.open(by[family, "original"]) as source:
            assert stored.size == source.size[::-1]  # its pixels turned, the tag turning them back
        frames = [piexif.load(str(by[family, f"burst{k}"])) for k in range(4)]
        assert len({(f["0th"][piexif.ImageIFD.Make], f["0th"][piexif.ImageIFD.Model]) for f in frames}) == 1
        times = [datetime.datetime.strptime(f["Exif"][piexif.ExifIFD.DateTimeOriginal].decode(), "%Y:%m:%d %H:%M:%S")
                 for f in frames]
        assert [(t - times[0]).total_seconds() for t in times] == [0, 1, 2, 3]

    cands, took = similar.candidates(items, tmp_path / "set")
    assert len(took) == len(items)
    result = s.evaluate(items, cands, similar.relation, similar.distance)
    assert result["pairs"] == len(labels)
    assert result["confusion"][None, "copy"] == 0  # the goal that must never slip: distinct is not a copy
    right, called, wanted = s.scores(result["confusion"])["copy"]
    assert wanted == 42 and right <= called


def test_the_benchmark_runs_end_to_end(bench, photos, tmp_path, capsys):
    similar, _s = bench
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    status = similar.main(["--source", str(photos / "real"), "--photos", "DSCN0010.jpg", "hopper.gif",
                           "--synthetic", "3000", "--runs", "1", "--workdir", str(tmp_path / "work"),
                           "--doc", str(doc)])
    assert status == 0
    text = doc.read_text()
    assert "## Other\n\nkept" in text and "## Similar photos" in text
    assert "`copy` precision" in text and "grouping 3,000 fingerprints" in text
    assert "- real path: `catalog scan` of the set" in text  # the commands ran and their groups were read
    assert "0 mixing files of different photos" in text
    assert "bench/similar.py --source" in text  # the command that measured it
    assert not list((tmp_path / "work").iterdir())  # the set is removed afterwards
