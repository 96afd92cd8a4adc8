"""Upload copies for the analysis API: upright, a format it takes, under its size limit, no GPS."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import os
import re
import threading
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pillow_heif
from PIL import ExifTags, Image

from catalog import exifcheck
from catalog.analyzers import UploadImage
from catalog.config_checks import MIN_EDGE, MIN_UPLOAD_BYTES
from catalog.containers import BrokenImage, jpeg_has_length, jpeg_image_end, jpeg_segments
from catalog.errors import ConfigError, FileUnreadable, PreparationFailed
from catalog.libfile import open_library_file, read_all

pillow_heif.register_heif_opener()

QUALITIES = (85, 80, 75, 70, 60)  # 85 looks like the original to a model; 90+ only buys bytes
SENDABLE = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
SUFFIX = {"JPEG": ".jpg", "PNG": ".png"}
# Only decoders a photo library needs: Image.open would otherwise try EPS (Ghostscript) and more.
INPUT_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF")
_GPS = ExifTags.IFD.GPSInfo
_T = Image.Transpose  # EXIF orientation -> the transform that makes the picture upright
_TRANSPOSE = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,
              6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}
_XMP_HEADS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_XMP_GPS = re.compile(rb"GPS(?:Latitude|Longitude)")
_PILLOW_GLOBALS = threading.Lock()
# Decoded pixels held at once by all analysis workers together (see DecodeGate): with the
# image, its copies on the way to an upload and the file's bytes, a process stays under 1 GB.
DECODE_BUDGET = 512 << 20
BANDED_RESIZE_PIXELS = 48_000_000  # from this size on, resize in bands of about BAND_BYTES
BAND_BYTES = 32 << 20
TRIM_AFTER = 64 << 20  # after a decode this large, freed memory goes back to the system
try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _LIBC.malloc_trim  # noqa: B018 - glibc only: AttributeError elsewhere
except (OSError, AttributeError):
    _LIBC = None


def prepare_upload(path: str | Path, *, max_upload_bytes: int = 10_000_000,
                   send_location: bool = False, max_edge: int | None = None,
                   max_image_pixels: int = 178_956_970) -> UploadImage:
    """The original's bytes when they are fine to send, else a clean copy; never writes a file.

    The file is read through open_library_file (a FIFO swapped in is refused, not waited
    on) and decoded inside DECODE_GATE, so large images take turns instead of piling up.
    """
    if max_upload_bytes < MIN_UPLOAD_BYTES or (max_edge is not None and max_edge < MIN_EDGE) or max_image_pixels < 1:
        raise ConfigError(f"need max_upload_bytes >= {MIN_UPLOAD_BYTES}, max_edge >= {MIN_EDGE}, max_image_pixels >= 1")
    path = Path(path)
    try:
        with open_library_file(path) as f:
            size = os.fstat(f.fileno()).st_size
            if not size:
                raise PreparationFailed(f"{path}: empty file (0 bytes), nothing to analyse")
            with DECODE_GATE.slot(size + _decode_cost(f, max_edge)):
                f.seek(0)
                data = read_all(f, size)
                return _prepare(path, data, max_upload_bytes, send_location, max_edge, max_image_pixels)
    except OSError as e:  # the way to the file failed, not the file: moved, EACCES, EIO on a NAS
        raise FileUnreadable(f"{path}: cannot read it ({e.strerror or e})") from e


def _prepare(path: Path, data: bytes, max_upload_bytes: int, send_location: bool,
             max_edge: int | None, max_image_pixels: int) -> UploadImage:
    try:
        with pixel_limit(max_image_pixels):
            im = open_image(data)
            exif = _exif(im)
            facts = _facts(exif)
            orientation = facts.get("orientation", 1)
            keep_pixels = orientation == 1 and (max_edge is None or max(im.size) <= max_edge)
            if im.format in ("JPEG", "MPO") and im.mode in ("L", "RGB") and keep_pixels:
                clean = _clean_jpeg(data, send_location)  # lossless: metadata and trailers only
                if len(clean) <= max_upload_bytes:
                    return UploadImage(clean, "image/jpeg", path.name, facts)
            elif (im.format in SENDABLE and len(data) <= max_upload_bytes and keep_pixels
                  and getattr(im, "n_frames", 1) == 1 and _plain_mode(im)
                  and (send_location or not (_has_location(exif) or _XMP_GPS.search(data)))):
                im.load()  # proves the file is complete before we spend an API call on it
                return UploadImage(data, SENDABLE[im.format], path.name, facts)
            scale = min(1.0, (max_edge or math.inf) / max(im.size))
            target = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            if im.format in ("JPEG", "MPO") and scale <= 0.5:
                # Decode at 1/2, 1/4 or 1/8 scale. The box has the target's own aspect ratio:
                # draft takes the scale from the tighter side, so a square box would waste it.
                im.draft(im.mode, target)
            im.load()
        gps = exif.get_ifd(_GPS) if send_location and _has_location(exif) else None
        out, fmt = _reencode(im, target, orientation, max_upload_bytes, gps)
    except Exception as e:  # one bad photo must never stop a batch with a surprise type
        raise PreparationFailed(f"{path}: {failure_reason(e, data, max_image_pixels)}") from e
    return UploadImage(out, SENDABLE[fmt], path.stem + SUFFIX[fmt], facts)


class DecodeGate:
    """A process-wide budget of decoded bytes: images are decoded while they fit together.

    Every worker thread decoding a photo holds a slot worth its decoded size from before
    the read until the upload is made; an image bigger than the whole budget waits for
    the others to finish and then runs alone. Four 169 MP PNGs thus take turns instead of
    holding 3.7 GB at once, while ordinary photos (a 24 MP JPEG is ~100 MB) run side by side.
    """

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, cost: int) -> Iterator[None]:
        cost = max(0, min(cost, self.budget))
        with self._cond:
            self._cond.wait_for(lambda: self.used + cost <= self.budget)
            self.used += cost
        try:
            yield
        finally:
            if cost >= TRIM_AFTER:
                _release_freed_memory()
            with self._cond:
                self.used -= cost
                self._cond.notify_all()


def _release_freed_memory() -> None:
    """Give freed heap back to the system (glibc keeps it per thread arena, so four workers
    taking turns on one large image each would otherwise hold four images' worth)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


DECODE_GATE = DecodeGate(DECODE_BUDGET)


def decoded_bytes(size: tuple[int, int], mode: str) -> int:
    """What Pillow holds for a decoded image (RGB and 16-bit greys take four bytes a pixel)."""
    return size[0] * size[1] * (1 if mode in ("1", "L", "P") else 4)


def _decode_cost(f, max_edge: int | None) -> int:
    """The decoded size of the image in `f`, from its header alone (0 when it has none we read)."""
    Image.init()
    try:
        with pixel_limit(None):
            im = Image.open(f, formats=[x for x in INPUT_FORMATS if x in Image.OPEN])
        scale = min(1.0, (max_edge or math.inf) / max(im.size))
        shrink = 1
        while im.format in ("JPEG", "MPO") and shrink < 8 and scale * shrink * 2 <= 1:
            shrink *= 2  # draft decodes JPEG at 1/2, 1/4 or 1/8 of its size
        return decoded_bytes((im.width // shrink, im.height // shrink), im.mode)
    except Exception:  # the real open judges the file and says what is wrong with it
        return 0


@contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """Pillow's bomb limit is a module global: set ours under a lock, restore it after.

    Pillow warns above the limit and raises above twice it: here both mean "refuse".
    """
    with _PILLOW_GLOBALS, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            yield
        except Image.DecompressionBombWarning as e:
            raise Image.DecompressionBombError(str(e)) from e
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def open_image(data: bytes) -> Image.Image:
    """Sniff the real format from the content (never the extension) and read the header."""
    Image.init()  # registers every plugin once; until then Image.OPEN holds only a few
    formats = [f for f in INPUT_FORMATS if f in Image.OPEN]
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.UnidentifiedImageError as e:
        raise PreparationFailed(f"not an image we can read (it starts with {data[:8]!r}); "
                                f"we read {', '.join(formats)}") from e


def failure_reason(error: Exception, data: bytes, limit: int) -> str:
    """Say what is wrong with the file in words a user can act on."""
    if isinstance(error, PreparationFailed):
        return str(error)
    if isinstance(error, Image.DecompressionBombError):
        try:  # name the size the header claims, read with the limit switched off
            with pixel_limit(None):
                w, h = Image.open(io.BytesIO(data)).size
            claimed = f"{w}x{h} = {w * h:,} pixels"
        except Exception:  # the size is a courtesy in the message, not a requirement
            claimed = "more pixels"
        return (f"claims {claimed}, over the limit of {limit:,}; "
                "refusing to decode a possible decompression bomb")
    if isinstance(error, (OSError, SyntaxError, ValueError, EOFError, BrokenImage)):
        return f"truncated or corrupt, cannot decode it ({error})"
    return f"could not prepare it ({type(error).__name__}: {error})"


def _exif(im: Image.Image) -> Image.Exif:
    try:
        return im.getexif()
    except Exception:  # unreadable EXIF counts as none; decoding still judges the pixels
        return Image.Exif()


def _facts(exif: Image.Exif) -> dict[str, Any]:
    """Camera and date facts an offline analyzer can use without parsing the file again."""
    facts: dict[str, Any] = {}
    for key, tag in (("make", 271), ("model", 272)):
        if isinstance(exif.get(tag), str) and exif[tag].strip("\x00 "):
            facts[key] = exif[tag].strip("\x00 ")
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        stamp = str(sub.get(36867) or exif.get(306) or "").strip("\x00 ")
        taken = datetime.strptime(stamp[:19], "%Y:%m:%d %H:%M:%S").isoformat()
        offset = str(sub.get(36881) or "").strip("\x00 ")
        facts["taken_at"] = taken + offset if re.fullmatch(r"[+-]\d\d:\d\d", offset) else taken
    except Exception:  # missing or nonsense dates ("0000:00:00 ...") are simply not facts
        pass
    if exif.get(274) in range(1, 9):
        facts["orientation"] = exif[274]
    return facts


def _has_location(exif: Image.Exif) -> bool:
    """A GPS IFD holding more than GPSVersionID (some cameras write just that) is a location."""
    try:
        return any(tag != 0 for tag in exif.get_ifd(_GPS))
    except Exception:  # an unreadable GPS IFD may still hold a position
        return _GPS in exif


def _plain_mode(im: Image.Image) -> bool:
    """Modes every receiver decodes the same way: no 16-bit PNG, no CMYK."""
    rawmode = im.tile[0][3] if im.tile and isinstance(im.tile[0][3], str) else ""
    return im.mode in ("1", "L", "LA", "P", "RGB", "RGBA") and ";16" not in rawmode


def _clean_jpeg(data: bytes, send_location: bool) -> bytes:
    """Drop location metadata and anything after the image, without touching a pixel.

    GPS leaves the EXIF via exifcheck (piexif); EXIF piexif cannot parse goes whole, as does XMP or other
    text naming a position (editing XML safely is not worth it for an upload copy). Appended
    data (MPO frames, motion-photo videos, trailers) is cut, and the MPF index with it.
    """
    header, scans = jpeg_segments(data)
    segments = [(m, s, e) for m, s, e in header if jpeg_has_length(m)]
    end = jpeg_image_end(data, scans)  # no end marker means truncated: a decode would conceal it
    trailer = bool(data[end:].strip(b"\x00\xff"))
    xmp_gps = any(data.startswith(_XMP_HEADS, s + 4) and _XMP_GPS.search(data, s, e)
                  for m, s, e in segments if m == 0xE1)
    out, changed = [data[:2]], trailer
    for marker, start, stop in segments:
        segment = data[start:stop]
        if marker == 0xE2 and segment[4:8] == b"MPF\x00" and trailer:
            segment = b""
        elif send_location or marker < 0xE1:  # tables, frame header and JFIF stay as they are
            pass
        elif segment[4:10] == b"Exif\x00\x00":
            segment = _exif_without_gps(segment)
        elif _XMP_GPS.search(segment) or (xmp_gps and segment[4:].startswith(_XMP_HEADS)):
            segment = b""  # XMP, Photoshop or comment text naming a position
        changed |= segment != data[start:stop]
        out.append(segment)
    return b"".join(out) + data[scans:end] if changed else data


def _exif_without_gps(segment: bytes) -> bytes:
    """The EXIF APP1 segment without GPS (and thumbnail); empty when piexif cannot read or rewrite it."""
    payload = exifcheck.without_gps(segment[4:])
    if payload is None or len(payload) + 2 > 0xFFFF:
        return b""
    return segment if payload == segment[4:] else b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _reencode(im: Image.Image, target: tuple[int, int], orientation: int, limit: int,
              gps: dict | None) -> tuple[bytes, str]:
    """Resize, set upright, convert to JPEG (PNG when transparency matters), fit the limit.

    No EXIF is kept but GPS when asked for; the ICC profile is, if it fits the colour space.
    """
    icc = im.info.get("icc_profile")
    img, fmt = web_mode(im)
    if img.size != target:
        img = _resize(img, target)
    if orientation in _TRANSPOSE:  # as ImageOps.exif_transpose would, but on the smaller image
        img = img.transpose(_TRANSPOSE[orientation])
    options: dict[str, Any] = {}
    if isinstance(icc, bytes) and icc[16:20] == (b"GRAY" if img.mode in ("L", "LA") else b"RGB "):
        options["icc_profile"] = icc  # a CMYK profile would lie about RGB pixels
    if gps:
        exif = Image.Exif()
        exif[_GPS] = dict(gps)
        options["exif"] = exif.tobytes()
    return _fit(img, fmt, limit, options), fmt


def web_mode(im: Image.Image) -> tuple[Image.Image, str]:
    """8-bit L or RGB for JPEG; RGBA/LA kept for PNG only when some pixel is see-through."""
    img: Image.Image = im
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit grey: scale, don't clip
        img = img.convert("I") if img.mode != "F" else img
        factor = 1 / 257 if img.getextrema()[1] > 255 else 1
        img = img.point(lambda v: v * factor).convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        alpha = "LA" if img.mode in ("LA", "La") else "RGBA"
        img = img if img.mode == alpha else img.convert(alpha)  # convert() to its own mode copies
        if img.getchannel("A").getextrema()[0] < 255:
            return img, "PNG"
    wanted = "L" if img.mode in ("1", "L", "LA") else "RGB"
    return (img if img.mode == wanted else img.convert(wanted)), "JPEG"


def _fit(img: Image.Image, fmt: str, limit: int, options: dict[str, Any]) -> bytes:
    """Encode once at a predicted quality and size; step down only if the prediction was wrong."""
    budget = limit - sum(len(v) for v in options.values())
    img, step = _plan(img, budget) if fmt == "JPEG" else (img, 0)
    while True:
        buf = io.BytesIO()
        img.save(buf, fmt, **(dict(options, quality=QUALITIES[step]) if fmt == "JPEG" else options))
        if buf.tell() <= limit:
            return buf.getvalue()
        if fmt == "JPEG" and step < len(QUALITIES) - 1:
            step += 1
        else:
            img = _shrunk(img, max(budget, 1) / buf.tell(), limit)


def _plan(img: Image.Image, budget: int) -> tuple[Image.Image, int]:
    """The first quality predicted to fit, shrinking first when even the lowest will not.

    A mosaic of 64 tiles from all over the image costs ~1% of a 24 MP encode and predicts its
    size within ~20% (mostly 5%), so one full encode usually suffices; small images just try.
    """
    tile, grid = 64, 8
    while img.width * img.height > 4 * (tile * grid) ** 2 and min(img.size) >= tile:
        mosaic = Image.new(img.mode, (tile * grid, tile * grid))
        for i in range(grid):
            for j in range(grid):
                x, y = (img.width - tile) * i // (grid - 1), (img.height - tile) * j // (grid - 1)
                mosaic.paste(img.crop((x, y, x + tile, y + tile)), (i * tile, j * tile))
        ratio = img.width * img.height / (tile * grid) ** 2
        for step, quality in enumerate(QUALITIES):
            buf = io.BytesIO()
            mosaic.save(buf, "JPEG", quality=quality)
            if buf.tell() * ratio <= budget * 0.9:
                return img, step
        img = _shrunk(img, budget * 0.85 / (buf.tell() * ratio), budget)
    return img, 0


def _shrunk(img: Image.Image, byte_ratio: float, limit: int) -> Image.Image:
    """Fewer pixels in proportion to the bytes to lose (bytes shrink a little slower than area)."""
    scale = math.sqrt(byte_ratio) * 0.95
    size = (round(img.width * scale), round(img.height * scale))
    if min(size) < 8:
        raise PreparationFailed(f"cannot fit it under {limit:,} bytes even at 8 pixels")
    return _resize(img, size)


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """LANCZOS to `size`; a large image band by band, so no full-height intermediate exists.

    Pillow resizes in two passes, the first making a (new width x old height) image: 300 MB
    for a 169 MP photo on top of the photo itself. Bands of output rows, each cut from the
    source with the filter's reach as margin, give the same pixels for a few MB each.
    """
    if img.width * img.height < BANDED_RESIZE_PIXELS:
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = Image.new(img.mode, size)
    ratio = img.height / size[1]
    margin = math.ceil(3 * max(ratio, 1.0)) + 2  # LANCZOS reaches 3 source pixels per output pixel
    rows = max(8, int(BAND_BYTES / (img.width * 4 * ratio)))
    for top in range(0, size[1], rows):
        bottom = min(size[1], top + rows)
        y0, y1 = top * ratio, bottom * ratio
        cut0, cut1 = max(0, math.floor(y0) - margin), min(img.height, math.ceil(y1) + margin)
        band = img.crop((0, cut0, img.width, cut1))
        out.paste(band.resize((size[0], bottom - top), Image.Resampling.LANCZOS,
                              box=(0, y0 - cut0, img.width, y1 - cut0)), (0, top))
    return out
