"""Basic facts about an image, read from its header: format, size, and EXIF facts.

Only headers are parsed (Pillow opens lazily), never pixels, so a scan of a
large library stays cheap. Broken metadata is a warning on the photo, not a
reason to drop it.
"""

from __future__ import annotations

import datetime
import threading
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from catalog.containers import BrokenImage
from catalog.exiffacts import PlainExif, plain_exif

try:  # HEIC/HEIF from phones
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - a declared dependency, but degrade gracefully
    pillow_heif = None

# We apply our own pixel limit (max_image_pixels) to the header's claim; Pillow's
# warning between its two thresholds would only be noise.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

# Pillow reports corrupt EXIF with warnings.warn; catching them means touching the global
# warning filters, so EXIF parsing takes this lock (it is Python code under the GIL anyway).
_EXIF_LOCK = threading.Lock()

TAG_ORIENTATION, TAG_MAKE, TAG_MODEL, TAG_DATETIME = 0x0112, 0x010F, 0x0110, 0x0132
IFD_EXIF, IFD_GPS = 0x8769, 0x8825
TAG_DATETIME_ORIGINAL = 0x9003


@dataclass(frozen=True)
class ImageFacts:
    format: str
    width: int
    height: int
    frames: int = 1
    orientation: int | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    exif_error: str | None = None


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _timestamp(value) -> str | None:
    text = _text(value)
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.datetime.strptime(text[:19], fmt).isoformat()
        except ValueError:
            continue
    return None  # "0000:00:00 00:00:00" and friends: unknown, not an error


def _degrees(value, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    result = d + m / 60 + s / 3600
    ref = _text(ref) or ""
    return round(-result if ref.upper() in ("S", "W") else result, 7)


def _gps(gps_ifd) -> tuple[float | None, float | None]:
    if not gps_ifd:
        return None, None
    lat = _degrees(gps_ifd.get(2), gps_ifd.get(1))
    lon = _degrees(gps_ifd.get(4), gps_ifd.get(3))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return lat, lon


def _exif_of(image: Image.Image) -> Image.Exif | PlainExif:
    if image.format == "JPEG":  # the plain case without Pillow's Exif (same values, a fifth of the cost)
        plain = plain_exif(image.info.get("exif"),
                           xmp=bool(image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")))
        if plain is not None:
            return plain
    if image.format == "PNG":
        # PngImageFile.getexif() decodes the whole image when eXIf follows IDAT; we only
        # take an eXIf chunk found in the header.
        exif = Image.Exif()
        raw = image.info.get("exif")
        if raw:
            exif.load(raw)
        return exif
    return image.getexif()


def read_facts(fileobj: BinaryIO, *, max_image_pixels: int) -> ImageFacts:
    """Facts from an open image file; raises BrokenImage for files that are not usable images."""
    with open_header(fileobj) as image:
        return facts_of(image, max_image_pixels=max_image_pixels)


def open_header(fileobj: BinaryIO) -> Image.Image:
    """The image in `fileobj` with its header read and no pixels decoded (Pillow opens lazily);
    BrokenImage when Pillow cannot read the header. The caller closes it."""
    try:
        return Image.open(fileobj)
    except Image.DecompressionBombError as exc:
        raise BrokenImage(f"decompression bomb refused: {exc}", "decompression_bomb") from None
    except UnidentifiedImageError:
        raise BrokenImage("not an image Pillow can read", "not_an_image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BrokenImage(f"damaged image header: {exc}", "corrupt") from None


def facts_of(image: Image.Image, *, max_image_pixels: int) -> ImageFacts:
    """Facts from an image opened by `open_header`: a header claiming more than `max_image_pixels`
    pixels is refused (BrokenImage) before anything decodes it."""
    width, height = image.size
    if width * height > max_image_pixels:
        raise BrokenImage(
            f"decompression bomb refused: the header claims {width}x{height} pixels "
            f"({width * height / 1e6:,.0f} MP, limit {max_image_pixels / 1e6:,.0f} MP)",
            "decompression_bomb",
        )
    facts = dict(format=image.format or "unknown", width=width, height=height,
                 frames=getattr(image, "n_frames", 1))
    with _EXIF_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            facts.update(_exif_facts(_exif_of(image)))
        except Exception as exc:  # corrupt EXIF comes in every exception type there is
            facts["exif_error"] = f"EXIF unreadable ({type(exc).__name__}: {exc})"[:300]
    problems = [str(w.message).strip() for w in caught if issubclass(w.category, UserWarning)
                and not issubclass(w.category, Image.DecompressionBombWarning)]
    if problems and "exif_error" not in facts:
        facts["exif_error"] = f"EXIF partly unreadable: {problems[0]}"[:300]
    return ImageFacts(**facts)


def _exif_facts(exif: Image.Exif) -> dict:
    if not exif:
        return {}
    sub = exif.get_ifd(IFD_EXIF)
    orientation = exif.get(TAG_ORIENTATION)
    lat, lon = _gps(exif.get_ifd(IFD_GPS))
    return dict(
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        taken_at=_timestamp(sub.get(TAG_DATETIME_ORIGINAL)) or _timestamp(exif.get(TAG_DATETIME)),
        camera_make=_text(exif.get(TAG_MAKE)),
        camera_model=_text(exif.get(TAG_MODEL)),
        gps_lat=lat,
        gps_lon=lon,
    )
