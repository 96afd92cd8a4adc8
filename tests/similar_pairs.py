"""Labelled pairs for the similar-photos tests: transformed copies of the shared real photos, as files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

# One scene each (landscape_2..8 show landscape_1's scene with another digit; dup/ is a byte copy).
DISTINCT = ["35-empty.jpg", "42_IndexError.jpg", "67-0_length_string.jpg", "87_OSError.jpg", "BlueSquare.jpg",
            "DSCN0010.jpg", "HMD_Nokia_8.3_5G.jpg", "IMG_5195.HEIC", "Issue_266.jpg", "Issue_280_dotnet.png",
            "Panasonic_DMC-FZ30.jpg", "Panasonic_Lumix_DMC-LX7.jpg", "Pentax_K10D.jpg", "canon_hdr_NO.jpg",
            "denali.webp", "el_torcal_rocks.jpg", "fujifilm-dx10.jpg", "hopper.gif", "iphone_hdr_YES.jpg",
            "jolla.jpg", "kodak-dc240.jpg", "landscape_1.jpg", "olympus-c960.jpg", "prairie_falcon.jpg",
            "ricoh-rdc5300.jpg", "sony-d700.jpg", "tifftag-photoshop.tiff"]
ORIENTATION = 0x0112
SUFFIX = {"png": "png", "webp": "webp"}


def upright(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im.convert("RGBA") if im.mode in ("P", "LA", "PA") else im).convert("RGB")


def _jpeg(img: Image.Image, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, **({"exif": exif.tobytes()} if exif is not None else {}))
    return out.getvalue()


def _saved(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def _crop(img: Image.Image, part: float) -> Image.Image:
    dx, dy = round(img.width * part), round(img.height * part)
    return img.crop((dx, dy, img.width, img.height))  # left and top: the picture shifts too


def _rotated_with_tag(img: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 8  # shown rotated 90 CCW: the sideways pixels come out upright
    return _jpeg(img.transpose(Image.Transpose.ROTATE_270), exif=exif)


COPIES = {  # the same picture in another file: `copy`
    "resize50": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "resize25": lambda im: _jpeg(im.resize((im.width // 4, im.height // 4), Image.Resampling.LANCZOS)),
    "jpeg60": lambda im: _jpeg(im, 60),
    "png": lambda im: _saved(im, "PNG"),
    "webp": lambda im: _saved(im, "WEBP"),
    "rotated_applied": lambda im: _jpeg(im),  # an editor turned the pixels upright, orientation 1
    "rotated_tagged": _rotated_with_tag,  # sideways pixels, an EXIF orientation that undoes it
}
EDITS = {  # the same shot, cropped or colour-edited: `edit`
    "crop3": lambda im: _jpeg(_crop(im, 0.03)),
    "bright10": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.10)),
    "warmer": lambda im: _jpeg(Image.merge("RGB", [im.getchannel("R").point(lambda v: min(255, v + 14)),
                                                   im.getchannel("G"),
                                                   im.getchannel("B").point(lambda v: max(0, v - 14))])),
}


def variants(src: Path, dest: Path, kinds: dict) -> dict[str, Path]:
    """Each transformation of `src` written under `dest`, by name."""
    dest.mkdir(parents=True, exist_ok=True)
    img = upright(src)
    if max(img.size) > 1600:  # big originals: a phone-sized export keeps the tests quick
        img = img.resize((img.width // 4, img.height // 4), Image.Resampling.LANCZOS)
    out = {}
    for kind, make in kinds.items():
        path = dest / f"{src.stem}-{kind}.{SUFFIX.get(kind, 'jpg')}"
        path.write_bytes(make(img))
        out[kind] = path
    return out


def undecodable_png(path: Path) -> Path:
    """A PNG whose chunks are sound (CRCs right, so the scan catalogues it) but whose pixels are not."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).save(out, "PNG")
    data = bytearray(out.getvalue())
    at = data.find(b"IDAT")
    (size,) = struct.unpack(">I", data[at - 4:at])
    data[at + 4:at + 4 + size] = bytes((x * 7 + 3) & 255 for x in range(size))
    data[at + 4 + size:at + 8 + size] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 4 + size])))
    path.write_bytes(bytes(data))
    return path
