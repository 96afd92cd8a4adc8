"""A small generated demo library, so a fresh machine has something real to catalogue.

The pictures are drawn with Pillow (skies, sunsets, beaches, forests, snow,
night scenes) and carry real EXIF (camera, date, some GPS), in dated folders
with spaces in their names, plus one exact duplicate in a second folder. For the
offline enrichers: GPS of Paris, Malaga and Rome (places), a restaurant sign with
drawn words (text), and a real portrait, Grace Hopper's public-domain U.S. Navy
photo shipped in `demo_assets/` (faces). Folder and file names do not give those
away, so a search for "rome" or "trattoria" finds them through the enrichers.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

SCENES = {
    # name: (top colour, bottom colour, accent colour)
    "sunset": ((255, 120, 40), (90, 30, 110), (255, 220, 90)),
    "beach": ((110, 180, 240), (230, 205, 150), (20, 110, 170)),
    "forest": ((40, 100, 50), (20, 60, 25), (120, 170, 70)),
    "snow": ((235, 240, 250), (200, 210, 225), (150, 170, 200)),
    "night": ((10, 15, 40), (30, 30, 60), (255, 210, 80)),
    "desert": ((240, 200, 130), (200, 140, 80), (120, 80, 50)),
}
ALBUMS = [
    ("2019/Paris trip", "Canon", "Canon EOS 80D", (48.8566, 2.3522), ["night", "sunset", "snow"]),
    ("2021/Beach holiday", "Apple", "iPhone 12", (36.7213, -4.4214), ["beach", "sunset", "beach", "desert"]),
    ("2023/Garden", "FUJIFILM", "X-T30", None, ["forest", "forest", "snow"]),
    ("Scans", None, None, None, ["desert", "night"]),
]


def _picture(scene: str, rng: random.Random, size=(800, 600)):
    from PIL import Image, ImageDraw

    top, bottom, accent = SCENES[scene]
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / (h - 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(rng.randint(3, 9)):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randint(10, 90)
        jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in accent)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=jitter)
    return img


def _exif(make, model, taken, gps):
    from PIL import Image

    exif = Image.Exif()
    if make:
        exif[0x010F], exif[0x0110] = make, model
    exif[0x0112] = 1
    exif.get_ifd(0x8769)[0x9003] = taken
    if gps:
        lat, lon = gps

        def dms(v):
            v = abs(v)
            d, m = int(v), int((abs(v) - int(v)) * 60)
            return (float(d), float(m), round((v - d - m / 60) * 3600, 2))

        exif.get_ifd(0x8825).update({1: "N" if lat >= 0 else "S", 2: dms(lat),
                                    3: "E" if lon >= 0 else "W", 4: dms(lon)})
    return exif


ROME = (41.8986, 12.4769)
ASSETS = Path(__file__).with_name("demo_assets")


def _sign(rng: random.Random):
    """A street scene with a restaurant sign: dark words on a pale board."""
    from PIL import ImageDraw, ImageFont

    img = _picture("desert", rng)
    draw = ImageDraw.Draw(img)
    draw.rectangle([90, 120, 710, 420], fill=(245, 238, 220), outline=(90, 50, 30), width=8)
    for y, words, size in ((160, "TRATTORIA DA ENZO", 52), (260, "PIZZA  PASTA  VINO", 44),
                           (340, "APERTO DALLE 12", 36)):
        try:
            font = ImageFont.load_default(size=size)
        except (TypeError, ImportError, OSError):  # Pillow without FreeType: the small bitmap font
            font = ImageFont.load_default()
        width = draw.textlength(words, font=font)
        draw.text(((800 - width) / 2, y), words, fill=(60, 25, 20), font=font)
    return img


def _portrait():
    """Grace Hopper's portrait (public domain), enlarged onto a photo-sized canvas."""
    from PIL import Image

    with Image.open(ASSETS / "hopper.gif") as im:
        face = im.convert("RGB").resize((512, 512), Image.Resampling.LANCZOS)
    img = Image.new("RGB", (640, 560), (70, 80, 95))
    img.paste(face, (64, 24))
    return img


def _enricher_photos(dest: Path, rng: random.Random) -> list[Path]:
    """Photos for places, text and faces: a weekend in Rome and a family portrait."""
    made = []
    for folder, name, make_picture, gps in (
        ("2022/Weekend away", "IMG_2041.jpg", lambda: _sign(rng), ROME),
        ("2022/Weekend away", "IMG_2042.jpg", lambda: _picture("sunset", rng), ROME),
        ("2020/Family", "IMG_0815.jpg", _portrait, None),
    ):
        path = dest / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img = make_picture()
        if not path.exists():
            taken = f"{folder[:4]}:05:{rng.randint(1, 28):02d} {rng.randint(9, 19):02d}:{rng.randint(0, 59):02d}:00"
            img.save(path, quality=90, exif=_exif("Apple", "iPhone 12", taken, gps))
        made.append(path)
    return made


def build_demo_library(dest: Path, *, seed: int = 7) -> list[Path]:
    """Create (or re-create identically) the demo library under `dest`; returns the files."""
    rng = random.Random(seed)
    dest = Path(dest)
    made = []
    for album, make, model, gps, scenes in ALBUMS:
        folder = dest / album
        folder.mkdir(parents=True, exist_ok=True)
        year = album[:4] if album[:4].isdigit() else "2015"
        for i, scene in enumerate(scenes, 1):
            img = _picture(scene, rng)
            taken = f"{year}:{rng.randint(1, 12):02d}:{rng.randint(1, 28):02d} {rng.randint(6, 21):02d}:{rng.randint(0, 59):02d}:00"
            if album == "Scans":
                path = folder / f"scan {i:03d}.png"
                if not path.exists():  # rerunning leaves existing files (and their mtimes) alone
                    img.save(path, optimize=False)
            else:
                path = folder / f"IMG_{i:04d} {scene}.jpg"
                if not path.exists():
                    img.save(path, quality=88, exif=_exif(make, model, taken, gps))
            made.append(path)
    made += _enricher_photos(dest, rng)
    copy_dir = dest / "Phone backup"
    copy_dir.mkdir(exist_ok=True)
    duplicate = copy_dir / "IMG_0001 sunset (copy).JPG"
    if not duplicate.exists():
        shutil.copyfile(dest / "2021/Beach holiday/IMG_0002 sunset.jpg", duplicate)
    made.append(duplicate)
    return made
