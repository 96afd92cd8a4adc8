"""EXIF facts read without Pillow's Exif: the same facts as Pillow's, on real, made and damaged EXIF."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from catalog import imagefacts
from catalog.exiffacts import plain_exif
from catalog.imagefacts import read_facts

MAX_PX = 178_956_970


def jpeg(exif: bytes | Image.Exif | None = None, xmp: bytes | None = None) -> bytes:
    out = io.BytesIO()
    extra = {"exif": exif} if exif is not None else {}
    if xmp is not None:
        extra["xmp"] = xmp
    Image.new("RGB", (40, 30), (200, 80, 10)).save(out, "JPEG", **extra)
    return out.getvalue()


def camera_exif(endian: str = "<", gps=((48, 1), (51, 1), (238, 10))) -> Image.Exif:
    exif = Image.Exif()
    exif.endian = endian
    exif[0x010F], exif[0x0110], exif[0x0112], exif[0x0132] = "Canon\0", "EOS 80D", 6, "2019:06:01 10:11:12"
    exif.get_ifd(0x8769)[0x9003] = "2019:06:01 10:11:12"
    if gps is not None:
        from PIL.TiffImagePlugin import IFDRational

        exif.get_ifd(0x8825).update({1: "N", 2: tuple(IFDRational(*v) for v in gps), 3: "W",
                                     4: tuple(IFDRational(*v) for v in gps)})
    return exif


def both_ways(data: bytes, monkeypatch) -> tuple:
    fast = read_facts(io.BytesIO(data), max_image_pixels=MAX_PX)
    with monkeypatch.context() as patch:
        patch.setattr(imagefacts, "plain_exif", lambda raw, xmp: None)
        slow = read_facts(io.BytesIO(data), max_image_pixels=MAX_PX)
    return fast, slow


def exif_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.info["exif"]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_plain_exif_gives_pillows_facts(endian, monkeypatch):
    """Camera, dates, orientation and GPS in either byte order: read here, equal to Pillow's."""
    data = jpeg(camera_exif(endian))
    assert plain_exif(exif_of(data), xmp=False) is not None
    fast, slow = both_ways(data, monkeypatch)
    assert fast == slow
    assert (fast.camera_make, fast.orientation, fast.taken_at) == ("Canon", 6, "2019-06-01T10:11:12")
    assert fast.gps_lat == pytest.approx(48.856611) and fast.gps_lon == pytest.approx(-48.856611)


def test_a_zero_denominator_and_an_xmp_orientation_read_as_pillow_does(monkeypatch):
    """GPS with a zero denominator (no position); no EXIF orientation but XMP has one (Pillow's)."""
    data = jpeg(camera_exif(gps=((48, 0), (51, 1), (1, 1))))
    assert plain_exif(exif_of(data), xmp=False) is not None
    fast, slow = both_ways(data, monkeypatch)
    assert fast == slow and fast.gps_lat is None
    exif = camera_exif()
    del exif[0x0112]
    data = jpeg(exif, xmp=b'<x:xmpmeta><rdf:Description tiff:Orientation="8"/></x:xmpmeta>')
    assert plain_exif(exif_of(data), xmp=True) is None
    fast, slow = both_ways(data, monkeypatch)
    assert fast == slow and fast.orientation == 8


def test_every_real_jpeg_reads_the_same(shared_photos, monkeypatch):
    """The test photos' JPEGs (phones, cameras, edited, damaged EXIF): the same facts both ways."""
    checked = 0
    for path in sorted((shared_photos).rglob("*")):
        if path.is_file() and path.read_bytes()[:3] == b"\xff\xd8\xff":
            try:
                fast, slow = both_ways(path.read_bytes(), monkeypatch)
            except Exception as exc:  # not readable at all: the same refusal both ways
                with pytest.raises(type(exc)):
                    both_ways(path.read_bytes(), monkeypatch)
                continue
            assert fast == slow, path
            checked += 1
    assert checked >= 10


def test_damaged_exif_reads_the_same_as_pillow(monkeypatch):
    """2,000 random byte changes inside the EXIF segment: every time the same facts and the same
    warning as Pillow alone (the plain reader steps aside for whatever it does not take apart)."""
    data = jpeg(camera_exif())
    raw = exif_of(data)
    start = data.index(raw)
    rng = random.Random(14)
    plain = 0
    for _ in range(2000):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[start + rng.randrange(6, len(raw))] = rng.randrange(256)
        fast, slow = both_ways(bytes(damaged), monkeypatch)
        assert fast == slow, bytes(damaged[start : start + len(raw)]).hex()
        plain += plain_exif(exif_of(bytes(damaged)), xmp=False) is not None
    assert 100 < plain < 2000  # both paths were taken
