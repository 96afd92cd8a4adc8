"""The thumbnail stage: `catalog thumbnails` fills missing previews from the originals, upright and small."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys

from PIL import Image

from catalog.thumbnails import EDGE, MAX_BYTES, QUALITY, make_thumbnail


def catalog(*args, db):
    return subprocess.run([sys.executable, "-m", "catalog", "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def thumbnails(db) -> dict[str, tuple[bytes, int, int]]:
    with sqlite3.connect(db) as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT photo_id, jpeg, width, height FROM thumbnails")}


def test_command_fills_missing_thumbnails_from_the_originals(photos, tmp_path):
    db = tmp_path / "catalog.db"
    assert catalog("scan", photos, db=db).returncode in (0, 1)  # edge/ holds broken files
    with sqlite3.connect(db) as conn:
        paths = dict(conn.execute("SELECT photo_id, MIN(path) FROM files WHERE status = 'ok' GROUP BY photo_id"))
    assert len(paths) == 40 and thumbnails(db) == {}  # the scan makes none

    made = catalog("thumbnails", "--json", db=db)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {"made": 40, "failed": 0}
    kept = thumbnails(db)
    assert set(kept) == set(paths)
    turned = 0
    for photo_id, (jpeg, width, height) in kept.items():
        small = Image.open(io.BytesIO(jpeg))
        assert small.format == "JPEG" and small.size == (width, height) and max(small.size) <= EDGE
        assert not small.getexif() and "exif" not in small.info  # no metadata, so no GPS
        with Image.open(paths[photo_id]) as original:
            sideways = original.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            w, h = (original.height, original.width) if sideways else original.size
        turned += sideways
        assert abs(width / height - w / h) < 0.05, paths[photo_id]  # upright, aspect kept
    assert turned >= 1  # the shared photos include sideways-stored ones

    again = catalog("thumbnails", db=db)
    assert again.returncode == 0 and "Made 0 thumbnails" in again.stdout
    assert thumbnails(db) == kept


def test_unreadable_original_is_counted_and_tried_again(photos, tmp_path):
    db = tmp_path / "catalog.db"
    catalog("scan", photos / "real", db=db)
    gone = photos / "real" / sorted(os.listdir(photos / "real"))[5]
    gone.rename(tmp_path / gone.name)  # unmounted, or moved since the scan
    result = catalog("thumbnails", db=db)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "could not be read" in result.stdout and len(thumbnails(db)) == 33
    (tmp_path / gone.name).rename(gone)
    back = catalog("thumbnails", "--json", db=db)
    assert back.returncode == 0 and json.loads(back.stdout) == {"made": 1, "failed": 0}


def test_large_jpeg_is_decoded_reduced(tmp_path):
    """A 48 MP JPEG becomes a 256 px thumbnail through draft (1/8 scale), not a full decode."""
    big = io.BytesIO()
    Image.new("RGB", (8000, 6000), (200, 40, 40)).save(big, "JPEG", quality=80)
    with Image.open(io.BytesIO(big.getvalue())) as im:
        im.draft("RGB", (256, 192))
        assert im.size == (1000, 750)  # what make_thumbnail decodes: 3 MB, not 192 MB
    thumb = make_thumbnail(big.getvalue())
    assert (thumb.width, thumb.height) == (256, 192)
    assert make_thumbnail(big.getvalue(), max_image_pixels=1_000_000) is None  # the bomb limit holds


def _tables(quality: int) -> dict:
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, "JPEG", quality=quality)
    return Image.open(out).quantization


def test_a_busy_picture_steps_its_quality_down_under_the_byte_cap(shared_photos):
    """Issue 14: thumbnails <= 15 KiB a photo; a busy picture lowers its quality, a plain one keeps 75."""
    noise = io.BytesIO()
    Image.effect_noise((512, 384), 90).convert("RGB").save(noise, "PNG")
    busy = make_thumbnail(noise.getvalue())
    assert len(busy.jpeg) <= MAX_BYTES and (busy.width, busy.height) == (256, 192)
    assert Image.open(io.BytesIO(busy.jpeg)).quantization != _tables(QUALITY)
    foliage = make_thumbnail((shared_photos / "real" / "Panasonic_Lumix_DMC-LX7.jpg").read_bytes())
    assert len(foliage.jpeg) <= MAX_BYTES and max(foliage.width, foliage.height) == EDGE  # 18.8 KiB at 75
    plain = make_thumbnail((shared_photos / "real" / "jolla.jpg").read_bytes())
    assert Image.open(io.BytesIO(plain.jpeg)).quantization == _tables(QUALITY)  # untouched below the cap
