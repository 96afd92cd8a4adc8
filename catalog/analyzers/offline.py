"""The embedded default analyzer: works with no network and no key, from real signals only.

It never invents what it cannot see. From the pixels: dominant colour, palette,
colour names, brightness, black-and-white, orientation. From EXIF: camera,
year, month, season (by hemisphere when GPS says so) and time of day. Objects,
scene, mood and safe-search are "unknown" / empty.
"""

from __future__ import annotations

import datetime
import io

from catalog.analyzers import Analysis, UploadImage
from catalog.colors import color_name, rgb_to_hex
from catalog.shape import shape_of

MODEL = "catalog-offline-1"
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
NORTHERN_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
                    6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}
SOUTHERN = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}


def time_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 21:
        return "evening"
    return "night"


def _pixels(data: bytes):
    """A small RGB version of the image: decoded at reduced size where the format allows."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (192, 192))  # JPEG decodes at 1/2..1/8 scale: fast on big photos
        img.seek(0)
        small = img.convert("RGB")
        small.thumbnail((96, 96))
        return small


def colour_facts(data: bytes) -> dict:
    from PIL import Image, ImageStat

    small = _pixels(data)
    width, height = small.size
    quantised = small.quantize(colors=6, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette()
    counts = sorted(quantised.getcolors(), reverse=True)  # [(count, index)]
    total = sum(c for c, _ in counts)
    swatches = [(c / total, tuple(palette[i * 3 : i * 3 + 3])) for c, i in counts]
    hsv = ImageStat.Stat(small.convert("HSV"))
    brightness = ImageStat.Stat(small.convert("L")).mean[0] / 255
    return {
        "palette": tuple(rgb_to_hex(rgb) for _, rgb in swatches[:5]),
        "names": list(dict.fromkeys(color_name(rgb) for share, rgb in swatches if share >= 0.12)),
        "brightness": brightness,
        "saturation": hsv.mean[1] / 255,
        "size": (width, height),
    }


def exif_tags(exif: dict) -> tuple[list[str], dict]:
    tags, words = [], {}
    make, model = (exif.get("make") or "").strip(), (exif.get("model") or "").strip()
    if make:
        tags.append(make.split()[0].lower())
    if model:
        tags.append(model.lower())
        words["camera"] = model if make.split()[0].lower() in model.lower() else f"{make} {model}".strip()
    taken = exif.get("taken_at")
    if taken:
        try:
            when = datetime.datetime.fromisoformat(str(taken))
        except ValueError:
            when = None
        if when:
            season = NORTHERN_SEASONS[when.month]
            if (exif.get("gps_lat") or 0) < 0:
                season = SOUTHERN[season]
            tags += [str(when.year), MONTHS[when.month - 1], season, time_of_day(when.hour)]
            words.update(year=when.year, month=MONTHS[when.month - 1], season=season,
                         daytime=time_of_day(when.hour))
    return tags, words


def describe(shape: str, names: list[str], words: dict) -> str:
    text = f"A {shape} photo"
    if names:
        text += " in " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]) + " tones"
    if "camera" in words:
        text += f", taken with a {words['camera']}"
    if "season" in words:
        text += f" on a {words['season']} {words['daytime']} in {words['month'].capitalize()} {words['year']}"
    return text + "."


def create(config=None) -> OfflineAnalyzer:
    """The registry's factory: the offline analyzer has no settings of its own."""
    return OfflineAnalyzer()


class OfflineAnalyzer:
    """Pixels and EXIF in, an honest Analysis out; costs nothing and needs no network."""

    name = "offline"

    def close(self) -> None:
        """Nothing to release: no connections, no files."""

    def analyze(self, image: UploadImage) -> Analysis:
        colours = colour_facts(image.data)
        width, height = colours["size"]
        shape = shape_of(width, height) or "square"  # the upload is upright; a 0-pixel side: nothing to say
        tags = list(colours["names"])
        if colours["saturation"] < 0.08:
            tags.append("black and white")
        if colours["brightness"] < 0.22:
            tags.append("dark")
        elif colours["brightness"] > 0.8:
            tags.append("bright")
        more, words = exif_tags(image.exif)
        tags += more + [shape]
        return Analysis(
            tags=tuple(dict.fromkeys(tags)),
            description=describe(shape, colours["names"], words),
            dominant_color=colours["palette"][0] if colours["palette"] else "unknown",
            palette=colours["palette"],
            orientation=shape,
            provider="offline",
            model=MODEL,
            raw={"palette_shares_from": "median-cut over a 96 px thumbnail", "exif": image.exif},
        )
