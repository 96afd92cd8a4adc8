"""The labelled set of bench/similar.py: copies, edits and bursts derived from real photos, and their scoring."""

from __future__ import annotations

import datetime
import itertools
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import piexif
from PIL import Image, ImageChops, ImageEnhance, ImageOps, ImageStat

from catalog.imagefacts import TAG_ORIENTATION

# The shared photos that are one picture each: the landscape_N set is one scene eight times
# (the digit N drawn on it), so only landscape_1 stands for it; real/dup/ is an exact copy.
SKIP = {f"landscape_{n}.jpg" for n in range(2, 9)}
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic"}

# variant -> what it is to the original: "copy" (the same picture in another file), "edit"
# (the same shot cropped or colour-edited) or "burst" (another frame of a sequence).
VARIANTS = {
    "original": "copy", "resized50": "copy", "resized25": "copy", "q60": "copy", "png": "copy",
    "webp": "copy", "rotated": "copy", "crop3": "edit", "bright10": "edit",
}
BURST_FRAMES = 4
CROP = 0.03  # taken off the width and the height, from the left and top edges
BRIGHTNESS = 1.10
DERIVED_QUALITY = 90  # JPEG quality of the resized, rotated and edited files
BURST_EDGE = 1600  # burst frames are new shots: at most this many pixels on the long side
BURST_CAMERA = (b"BenchCam", b"Burst 1")  # for photos without a camera in their EXIF
CLASSES = ("copy", "edit", "burst")
NO_OP_LEVEL = 1.0  # an "edit" that moves the picture by less than this (mean, levels of 255) changes nothing


def visible_change(before: Image.Image, after: Image.Image) -> float:
    """Mean grey difference of two pictures at 64x64: what an edit changed that anyone could see."""
    small = [im.convert("L").resize((64, 64), Image.Resampling.BOX) for im in (before, after)]
    return ImageStat.Stat(ImageChops.difference(*small)).mean[0]


@dataclass(frozen=True)
class Item:
    path: Path
    family: str  # the source photo's file name
    variant: str  # a VARIANTS key or burstN

    @property
    def role(self) -> str:
        return "burst" if self.variant.startswith("burst") else VARIANTS[self.variant]


def expected(a: Item, b: Item) -> str | None | bool:
    """The relation a pair should get: "copy", "edit", "burst", None (distinct photos), or
    False for a pair the set does not label (a burst frame against its source's files)."""
    if a.family != b.family:
        return None
    roles = {a.role, b.role}
    if roles == {"copy"}:
        return "copy"
    if roles == {"burst"}:
        return "burst"
    if "burst" in roles:
        return False
    return "edit"  # an edit against the picture or its copies, or two edits of one shot


def labelled_pairs(items: list[Item]):
    """Every unordered pair of the set with its expected relation, unlabelled pairs left out."""
    for a, b in itertools.combinations(items, 2):
        label = expected(a, b)
        if label is not False:
            yield a, b, label


def sources(folder: Path, names: list[str] | None = None) -> list[Path]:
    """The photos of `folder` (not its subfolders) the set is made from, by name."""
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in SUFFIXES and p.name not in SKIP)
    if names:
        missing = set(names) - {p.name for p in found}
        if missing:
            raise SystemExit(f"not among the usable photos of {folder}: {', '.join(sorted(missing))}")
        found = [p for p in found if p.name in names]
    return found


def _text(value) -> str | None:
    text = value.strip("\x00 ") if isinstance(value, str) else ""
    return text or None


def _exif_without_orientation(im: Image.Image, orientation: int = 1) -> bytes:
    """The original's camera and dates (as a phone or an editor keeps them) with Orientation
    set to `orientation`: a new EXIF block, since some originals' (TIFF's) cannot be copied."""
    exif = im.getexif()
    zeroth = {piexif.ImageIFD.Orientation: orientation}
    for tag in (piexif.ImageIFD.Make, piexif.ImageIFD.Model, piexif.ImageIFD.DateTime):
        if _text(exif.get(tag)):
            zeroth[tag] = _text(exif.get(tag)).encode()
    taken = _text(exif.get_ifd(0x8769).get(piexif.ExifIFD.DateTimeOriginal))
    return piexif.dump({"0th": zeroth, "Exif": {piexif.ExifIFD.DateTimeOriginal: taken.encode()} if taken else {}})


def _save(img: Image.Image, path: Path, fmt: str, exif: bytes | None = None, **opts) -> None:
    if exif:
        opts["exif"] = exif
    img.save(path, fmt, **opts)


def _taken_at(im: Image.Image, index: int) -> datetime.datetime:
    """The photo's own DateTimeOriginal, else a made-up day per photo."""
    try:
        text = _text(im.getexif().get_ifd(0x8769).get(piexif.ExifIFD.DateTimeOriginal)) or ""
        return datetime.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:  # no date, or one that is not a date
        return datetime.datetime(2020, 1, 1, 12) + datetime.timedelta(days=index)


def _camera(im: Image.Image) -> tuple[bytes, bytes]:
    exif = im.getexif()
    make, model = _text(exif.get(piexif.ImageIFD.Make)), _text(exif.get(piexif.ImageIFD.Model))
    return (make.encode(), model.encode()) if make and model else BURST_CAMERA


def burst_frames(upright: Image.Image, n: int = BURST_FRAMES) -> list[Image.Image]:
    """`n` frames of one moment: a 90 % window drifting 1 % of the width (and 0.5 % of the height)
    a frame, exposure moving by 1 % a frame, as a camera held by hand shoots them."""
    img = upright.copy()
    img.thumbnail((BURST_EDGE, BURST_EDGE), Image.Resampling.LANCZOS)
    w, h = img.size
    frames = []
    for k in range(n):
        left, top = round(w * (0.03 + 0.01 * k)), round(h * (0.03 + 0.005 * k))
        window = img.crop((left, top, left + round(w * 0.9), top + round(h * 0.9)))
        frames.append(ImageEnhance.Brightness(window).enhance(1.0 + 0.01 * (k % 2)))
    return frames


def derive(src: Path, out: Path, index: int, no_ops: list[str] | None = None) -> list[Item]:
    """Copy `src` into `out` and write its derived files there; the items, the original first.

    An edit that changes nothing visible (a crop of a flat picture, brightening a saturated
    graphic) is a copy in all but name: it is left out of the set and named in `no_ops`."""
    family = src.name
    stem = out / src.stem
    original = out / src.name
    shutil.copyfile(src, original)
    original.chmod(0o644)
    items = [Item(original, family, "original")]
    with Image.open(src) as im:
        im.load()
        orientation = im.getexif().get(TAG_ORIENTATION, 1)
        upright = ImageOps.exif_transpose(im).convert("RGB")
        exif = _exif_without_orientation(im)
        w, h = upright.size

        def add(variant: str, path: Path) -> None:
            items.append(Item(path, family, variant))

        for variant, scale, keep_exif in (("resized50", 0.5, True), ("resized25", 0.25, False)):
            small = upright.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
            _save(small, stem.with_name(f"{src.stem}.{variant}.jpg"), "JPEG", exif if keep_exif else None,
                  quality=DERIVED_QUALITY)
            add(variant, stem.with_name(f"{src.stem}.{variant}.jpg"))
        _save(upright, stem.with_name(f"{src.stem}.q60.jpg"), "JPEG", exif, quality=60)
        add("q60", stem.with_name(f"{src.stem}.q60.jpg"))
        _save(upright, stem.with_name(f"{src.stem}.conv.png"), "PNG", compress_level=3)
        add("png", stem.with_name(f"{src.stem}.conv.png"))
        _save(upright, stem.with_name(f"{src.stem}.conv.webp"), "WEBP", exif, quality=80)
        add("webp", stem.with_name(f"{src.stem}.conv.webp"))
        # The stored pixels turned by 90 degrees, the EXIF orientation saying how to show them:
        # a camera's file (tag 6) for an upright original; for an original shown through its tag,
        # the editor's file (pixels turned upright, tag reset to 1).
        if orientation == 1:
            _save(upright.transpose(Image.Transpose.ROTATE_90), stem.with_name(f"{src.stem}.rotated.jpg"), "JPEG",
                  _exif_without_orientation(im, 6), quality=DERIVED_QUALITY)
        else:
            _save(upright, stem.with_name(f"{src.stem}.rotated.jpg"), "JPEG", exif,
                  quality=DERIVED_QUALITY)
        add("rotated", stem.with_name(f"{src.stem}.rotated.jpg"))
        cropped = upright.crop((round(w * CROP), round(h * CROP), w, h))
        brighter = ImageEnhance.Brightness(upright).enhance(BRIGHTNESS)
        for variant, edited in (("crop3", cropped), ("bright10", brighter)):
            if visible_change(upright, edited) < NO_OP_LEVEL:
                if no_ops is not None:
                    no_ops.append(f"{family} {variant}")
                continue
            _save(edited, stem.with_name(f"{src.stem}.{variant}.jpg"), "JPEG", exif, quality=DERIVED_QUALITY)
            add(variant, stem.with_name(f"{src.stem}.{variant}.jpg"))

        make, model = _camera(im)
        start = _taken_at(im, index) + datetime.timedelta(hours=1)
        for k, frame in enumerate(burst_frames(upright)):
            when = (start + datetime.timedelta(seconds=k)).strftime("%Y:%m:%d %H:%M:%S").encode()
            tags = piexif.dump({"0th": {piexif.ImageIFD.Make: make, piexif.ImageIFD.Model: model,
                                        piexif.ImageIFD.Orientation: 1},
                                "Exif": {piexif.ExifIFD.DateTimeOriginal: when}})
            path = stem.with_name(f"{src.stem}.burst{k}.jpg")
            _save(frame, path, "JPEG", tags, quality=DERIVED_QUALITY)
            add(f"burst{k}", path)
    return items


def build_set(folder: Path, out: Path, names: list[str] | None = None,
              no_ops: list[str] | None = None) -> list[Item]:
    """The labelled set from the photos of `folder`, written into `out` (one subfolder a photo);
    edits that change nothing visible are named in `no_ops` instead."""
    items = []
    for index, src in enumerate(sources(folder, names)):
        target = out / f"{index:02d}-{src.stem}"
        target.mkdir(parents=True)
        items += derive(src, target, index, no_ops)
    return items


# -- scoring ---------------------------------------------------------------------------------

def evaluate(items: list[Item], candidates: dict[Path, object], relation, distance) -> dict:
    """relation() on every labelled pair: the confusion counts (expected, got), the hash
    distances of each expected class, each variant's outcome against its original, and how
    many pairs got another answer with their order swapped."""
    confusion: Counter = Counter()
    distances: dict = defaultdict(list)
    variants: dict = defaultdict(Counter)
    misses, asymmetric = [], 0
    for a, b, label in labelled_pairs(items):
        ca, cb = candidates[a.path], candidates[b.path]
        got = relation(ca, cb)
        asymmetric += got != relation(cb, ca)
        confusion[label, got] += 1
        bits = distance(ca.fingerprint.phash, cb.fingerprint.phash)
        distances[label].append(bits)
        if label and a.variant == "original":
            variants[b.variant][got == label] += 1
        if label != got and (label or got == "copy"):
            misses.append((a, b, label, got, bits))
    return {"confusion": confusion, "distances": distances, "variants": variants, "misses": misses,
            "asymmetric": asymmetric, "pairs": sum(confusion.values())}


def scores(confusion: Counter) -> dict[str, tuple[int, int, int]]:
    """Per class: (right, called so, expected), for precision = right / called and recall =
    right / expected."""
    out = {}
    for cls in CLASSES:
        right = confusion[cls, cls]
        called = sum(n for (_label, got), n in confusion.items() if got == cls)
        wanted = sum(n for (label, _got), n in confusion.items() if label == cls)
        out[cls] = (right, called, wanted)
    return out
