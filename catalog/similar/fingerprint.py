"""A photo's perceptual fingerprint: a 64-bit difference hash of the upright picture, its aspect and mean colour.

The hash is a dHash: the upright picture, flattened onto white, is averaged down (BOX) to
9x8 grey cells, and each bit says whether a cell is darker than its right-hand neighbour.
Averaging first makes it indifferent to size, re-encoding and format; comparing neighbours
makes it indifferent to an even brightness change. The mean colour (`tone`) and 16x16 grey
cells (`detail`) tell a copy from a colour edit or a small crop (catalog.similar.classify holds
the distances measured on ../shared/photos and the thresholds drawn from them).

JPEG is decoded in draft mode (1/2 to 1/8 scale, never below WORK_EDGE on the short side):
the entropy decoding remains, so a 12 MP JPEG costs ~50 ms on this loaded 2-core machine
(a full decode: ~150 ms); the hash itself, from decoded pixels, well under 1 ms.
"""

from __future__ import annotations

import errno
from array import array
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO

from catalog.containers import BrokenImage

if TYPE_CHECKING:
    from os import PathLike

    from PIL import Image

HASH_W, HASH_H = 9, 8  # 8 comparisons a row, 8 rows: 64 bits
WORK_EDGE = 128  # JPEG draft never decodes the short side below this many pixels
CELLS = (HASH_W * 4, HASH_H * 4)
DETAIL = 16  # the tone is averaged over 4x4 blocks of each hash cell
DEFAULT_MAX_PIXELS = 178_956_970  # ScanSettings.max_image_pixels: the scan passes its own


@dataclass(frozen=True)
class Fingerprint:
    phash: int  # 64-bit perceptual hash of the upright picture, 0..2**64-1
    aspect: float  # upright width / height
    tone: int  # mean colour, R << 16 | G << 8 | B
    # DETAIL x DETAIL grey cells (bytes, row by row): tells a copy from a slightly cropped
    # or shifted picture, which the 64-bit hash alone cannot; b"" when unknown
    detail: bytes = b""

    @property
    def rgb(self) -> tuple[int, int, int]:
        return (self.tone >> 16) & 255, (self.tone >> 8) & 255, self.tone & 255


def distance(a: int, b: int) -> int:
    """Hamming distance between two 64-bit hashes."""
    return (a ^ b).bit_count()


def to_db(h: int) -> int:
    """An unsigned 64-bit hash as SQLite's signed INTEGER (two's complement)."""
    if not 0 <= h < 1 << 64:
        raise ValueError(f"not a 64-bit unsigned hash: {h}")
    return h - (1 << 64) if h >= 1 << 63 else h


def from_db(v: int) -> int:
    """SQLite's signed INTEGER back to the unsigned 64-bit hash."""
    return v + (1 << 64) if v < 0 else v


def fingerprint_image(img: Image.Image) -> Fingerprint:
    """The fingerprint of an already decoded, upright image (any mode, any size)."""
    from PIL import Image, ImageStat

    from catalog.decoding import flatten
    from catalog.prepare import web_mode

    if img.width < 1 or img.height < 1:
        raise BrokenImage("an image without pixels", "corrupt")
    rgb = flatten(web_mode(img)[0])
    if rgb.mode != "RGB":
        rgb = rgb.convert("RGB")
    cells = rgb.resize(CELLS, Image.Resampling.BOX)
    grey = cells.convert("F").resize((HASH_W, HASH_H), Image.Resampling.BOX)
    values = array("f", grey.tobytes())  # mode F: native 32-bit floats
    bits = 0
    for row in range(HASH_H):
        for col in range(HASH_W - 1):
            i = row * HASH_W + col
            bits = (bits << 1) | (values[i] < values[i + 1])
    r, g, b = (min(255, round(v)) for v in ImageStat.Stat(cells).mean)
    detail = rgb.convert("L").resize((DETAIL, DETAIL), Image.Resampling.BOX).tobytes()
    return Fingerprint(phash=bits, aspect=img.width / img.height, tone=r << 16 | g << 8 | b, detail=detail)


def detail_peak(a: Fingerprint, b: Fingerprint) -> int | None:
    """The largest difference between two matching grey cells (0-255), None if either is unknown:
    a small overlay (a digit, a watermark) moves a few cells a lot and the mean hardly at all."""
    if len(a.detail) != DETAIL * DETAIL or len(b.detail) != DETAIL * DETAIL:
        return None
    return int(_cell_gaps(a, b).max())


def detail_gap(a: Fingerprint, b: Fingerprint) -> float | None:
    """Mean absolute difference of the two pictures' grey cells (0-255), None if either is unknown."""
    if len(a.detail) != DETAIL * DETAIL or len(b.detail) != DETAIL * DETAIL:
        return None
    return int(_cell_gaps(a, b).sum()) / (DETAIL * DETAIL)


def _cell_gaps(a: Fingerprint, b: Fingerprint):
    """|a - b| of each pair of grey cells (numpy: relation() asks it for every pair grouped)."""
    import numpy as np

    return np.abs(np.frombuffer(a.detail, np.uint8).astype(np.int16) - np.frombuffer(b.detail, np.uint8))


def fingerprint_stream(f: BinaryIO, orientation: int | None, *,
                       max_image_pixels: int = DEFAULT_MAX_PIXELS) -> Fingerprint:
    """The fingerprint of the image in an open file, made upright by its EXIF `orientation`.

    The scan calls this with the file it has just hashed and the orientation it read from
    the header. Raises BrokenImage for what cannot be decoded, OSError when reading fails.
    Pillow's pixel limit (a global) is held only while the header is read, so workers
    decode side by side, each inside DECODE_GATE.
    """
    from PIL import Image, UnidentifiedImageError

    from catalog.decoding import DECODE_GATE, INPUT_FORMATS, decoded_bytes, pixel_limit, upright

    Image.init()
    try:
        with pixel_limit(max_image_pixels):
            im = Image.open(f, formats=[x for x in INPUT_FORMATS if x in Image.OPEN])
        with im:
            scale = min(1.0, WORK_EDGE / min(im.size)) if min(im.size) else 1.0
            width, height = im.size  # the header's: draft rounds the decoded size up
            drafted = im.draft("RGB", (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
            with DECODE_GATE.slot(decoded_bytes(im.size, im.mode)):
                im.load()
                img: Image.Image = im
                if drafted:  # the last row and column of 8x8 blocks is padding past the picture
                    inside = (max(1, int(drafted[1][2])), max(1, int(drafted[1][3])))
                    if inside != im.size:
                        img = im.crop((0, 0, *inside))
                found = fingerprint_image(upright(img, orientation))
        aspect = height / width if orientation in (5, 6, 7, 8) else width / height
        return replace(found, aspect=aspect)
    except Image.DecompressionBombError as exc:
        raise BrokenImage(f"decompression bomb refused: {exc}", "decompression_bomb") from None
    except UnidentifiedImageError:
        raise BrokenImage("not an image Pillow can read", "not_an_image") from None
    except BrokenImage:
        raise
    except OSError as exc:
        if exc.errno is not None and exc.errno != errno.EINVAL:
            raise  # the read failed (EIO on a NAS, the file went away): not the picture's fault
        raise BrokenImage(f"cannot decode the picture: {exc}", "corrupt") from None
    except MemoryError:
        raise
    except Exception as exc:  # decoders fail in every type there is (zlib.error, SyntaxError, ...)
        raise BrokenImage(f"cannot decode the picture ({type(exc).__name__}: {exc})", "corrupt") from None


def fingerprint_file(path: str | PathLike, *, max_image_pixels: int = DEFAULT_MAX_PIXELS) -> Fingerprint:
    """The fingerprint of the photo at `path`, decoded by the project's rules (pixel limit, JPEG
    draft, EXIF orientation applied). Raises BrokenImage for an undecodable file, OSError when
    it cannot be read."""
    from catalog.imagefacts import read_facts
    from catalog.libfile import open_library_file

    with open_library_file(path) as f:
        facts = read_facts(f, max_image_pixels=max_image_pixels)
        f.seek(0)
        return fingerprint_stream(f, facts.orientation, max_image_pixels=max_image_pixels)
