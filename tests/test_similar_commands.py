"""`catalog similar PATH` and `catalog duplicates --near/--bursts` on a real scanned library (issue 13)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from similar_pairs import COPIES, EDITS, upright, variants

from catalog.cli import cli

ORIGINALS = ("DSCN0010.jpg", "el_torcal_rocks.jpg")
COPY_KINDS = ("resize50", "png", "webp")
CAMERA = ("Canon", "Canon EOS R5")


def burst(src: Path, folder: Path, shots: int = 3) -> list[Path]:
    """A burst: shots of one camera a second apart, the scene drifting a little from shot to shot."""
    folder.mkdir(parents=True, exist_ok=True)
    img = upright(src)
    img.thumbnail((1024, 1024))
    step = max(1, img.width // 50)  # 2 % of the width between shots
    paths = []
    for i in range(shots):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = CAMERA
        exif.get_ifd(0x8769)[0x9003] = f"2024:05:01 10:00:0{i}"
        shot = img.crop((i * step, 0, img.width - (shots - 1 - i) * step, img.height))
        path = folder / f"burst_{i}.jpg"
        shot.save(path, quality=90, exif=exif)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def library(tmp_path_factory, shared_photos):
    """Two pictures with three copies and an edit each, a burst, a lone photo; scanned by `catalog scan`."""
    base = tmp_path_factory.mktemp("similar")
    root = base / "library"
    made = {}
    for name in ORIGINALS:
        folder = root / Path(name).stem
        folder.mkdir(parents=True)
        shutil.copy(shared_photos / "real" / name, folder / name)
        made[name] = {"original": folder / name,
                      **variants(shared_photos / "real" / name, folder, {k: COPIES[k] for k in COPY_KINDS}),
                      **variants(shared_photos / "real" / name, folder, {"crop3": EDITS["crop3"]})}
    # A copy whose name tries to retitle the terminal.
    evil = made["el_torcal_rocks.jpg"]["png"].with_name("evil\x1b]0;owned\x07.png")
    made["el_torcal_rocks.jpg"]["png"].rename(evil)
    made["el_torcal_rocks.jpg"]["png"] = evil
    made["burst"] = burst(shared_photos / "real" / "kodak-dc240.jpg", root / "burst")
    shutil.copy(shared_photos / "real" / "jolla.jpg", root / "jolla.jpg")
    database = base / "catalog.db"
    result = CliRunner().invoke(cli, ["--db", str(database), "scan", str(root)])
    assert result.exit_code == 0, result.output
    return database, made


def run(database: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(database), *args])


def test_similar_lists_copies_first_then_edits_with_distances(library):
    database, made = library
    pictures = made["DSCN0010.jpg"]
    result = run(database, "similar", "--json", str(pictures["original"]))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["path"] == str(pictures["original"])
    found = {Path(r["path"]).name: r for r in data["similar"]}
    copies = {pictures[k].name for k in COPY_KINDS}
    assert {n for n, r in found.items() if r["relation"] == "copy"} == copies
    assert {n for n, r in found.items() if r["relation"] == "edit"} == {pictures["crop3"].name}
    relations = [r["relation"] for r in data["similar"]]
    assert relations == sorted(relations, key=["copy", "edit", "burst"].index)  # copies first
    assert all(isinstance(r["distance"], int) and 0 <= r["distance"] <= 64 for r in data["similar"])
    assert found[pictures["png"].name]["format"] == "PNG" and found[pictures["png"].name]["width"]
    # Nothing of the other picture, the burst or the lone photo.
    assert all(Path(r["path"]).parent == pictures["original"].parent for r in data["similar"])


def test_similar_takes_a_path_as_typed_and_prints_escaped_text(library, monkeypatch):
    database, made = library
    pictures = made["el_torcal_rocks.jpg"]
    monkeypatch.chdir(pictures["original"].parent)  # a relative path, as `catalog show` takes it
    result = run(database, "similar", pictures["original"].name)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{pictures['original']}: 3 copies, 1 edit")
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "evil\\x1b]0;owned\\x07.png" in result.output
    assert lines[1].lstrip().startswith("copy, distance ")


def test_similar_of_a_burst_shot_lists_its_mates(library):
    database, made = library
    shots = made["burst"]
    data = json.loads(run(database, "similar", "--json", str(shots[1])).output)
    assert {(Path(r["path"]).name, r["relation"]) for r in data["similar"]} == {
        (shots[0].name, "burst"), (shots[2].name, "burst")}


def test_similar_of_a_lone_photo_and_of_an_unknown_path(library, tmp_path):
    database, made = library
    lone = made["DSCN0010.jpg"]["original"].parents[1] / "jolla.jpg"
    result = run(database, "similar", str(lone))
    assert result.exit_code == 0 and result.output.startswith("No copies, edits or burst mates of ")
    missing = run(database, "similar", str(tmp_path / "nowhere.jpg"))
    assert missing.exit_code == 1 and "is not in the catalogue" in missing.output
    assert "Traceback" not in missing.output and len(missing.output.strip().splitlines()) == 1


def test_duplicates_near_lists_groups_keeper_first(library):
    database, made = library
    result = run(database, "duplicates", "--near", "--json")
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)
    assert len(groups) == len(ORIGINALS)
    for group in groups:
        keeper, *others = group
        name = next(n for n in ORIGINALS if Path(keeper["path"]).name == n)  # the original, JPEG, largest
        pictures = made[name]
        assert keeper["relation"] is None
        assert {Path(o["path"]).name: o["relation"] for o in others} == {
            **{pictures[k].name: "copy" for k in COPY_KINDS}, pictures["crop3"].name: "edit"}
    text = run(database, "duplicates", "--near").output
    assert text.count("Group ") == 2 and "keep " in text and "\x1b" not in text
    assert text.splitlines()[1].lstrip().startswith("keep")


def test_duplicates_bursts_and_usage(library):
    database, made = library
    groups = json.loads(run(database, "duplicates", "--bursts", "--json").output)
    assert [[Path(p["path"]).name for p in group] for group in groups] == [[p.name for p in made["burst"]]]
    text = run(database, "duplicates", "--bursts").output
    assert text.startswith("Burst 1: 3 shots:")
    both = run(database, "duplicates", "--near", "--bursts")
    assert both.exit_code == 2 and "choose one" in both.output
    plain = json.loads(run(database, "duplicates", "--json").output)
    assert plain == []  # different files of one picture are not byte-identical duplicates
    assert "--near" in run(database, "duplicates", "--help").output
    assert "copies, edits and burst mates" in run(database, "--help").output
