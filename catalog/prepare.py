"""Upload copies for the analysis API: upright, a format it takes, under its size limit, no GPS."""

from __future__ import annotations

import io
import math
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from catalog import exifcheck
from catalog.analyzers import UploadImage
from catalog.config_checks import MIN_EDGE, MIN_UPLOAD_BYTES
from catalog.containers import jpeg_has_length, jpeg_image_end, jpeg_segments
from catalog.errors import ConfigError, FileUnreadable, PreparationFailed
from catalog.decoding import (DECODE_GATE, decode_cost, failure_reason, open_image,
                              pixel_limit, resize, upright)
from catalog.libfile import open_library_file, read_all


QUALITIES = (85, 80, 75, 70, 60)  # 85 looks like the original to a model; 90+ only buys bytes
SENDABLE = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
SUFFIX = {"JPEG": ".jpg", "PNG": ".png"}
# Only decoders a photo library needs: Image.open would otherwise try EPS (Ghostscript) and more.
_GPS = ExifTags.IFD.GPSInfo
_XMP_HEADS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_XMP_GPS = re.compile(rb"GPS(?:Latitude|Longitude)")


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
            with DECODE_GATE.slot(size + decode_cost(f, max_edge)):
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
        img = resize(img, target)
    img = upright(img, orientation)  # as ImageOps.exif_transpose would, but on the smaller image
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
    return resize(img, size)
