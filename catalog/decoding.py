"""Decoding photos within memory and pixel limits: shared by uploads, thumbnails and enrichers.

Pillow's decompression-bomb limit is a process-wide global, so `pixel_limit` sets ours under
a lock. `DECODE_GATE` is a process-wide budget of decoded bytes: large images take turns
instead of piling up in worker threads, and freed memory goes back to the system after a
big decode. `resize` works band by band on very large images.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

import pillow_heif
from PIL import Image

from catalog.containers import BrokenImage
from catalog.errors import PreparationFailed

pillow_heif.register_heif_opener()

INPUT_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF")
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


def decode_cost(f, max_edge: int | None) -> int:
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


_T = Image.Transpose  # EXIF orientation -> the transform that makes the picture upright
UPRIGHT = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,
           6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}


def upright(img: Image.Image, orientation: int | None) -> Image.Image:
    """The picture as a viewer shows it: as ImageOps.exif_transpose would, from a known orientation."""
    return img.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else img


def flatten(im: Image.Image) -> Image.Image:
    """RGB or grayscale pixels; transparency goes onto white, as a viewer would show it."""
    if im.mode in ("RGB", "L"):
        return im.copy()
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        white.info = rgba.info  # keeps the EXIF orientation for exif_transpose
        return white
    return im.convert("RGB")


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
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
