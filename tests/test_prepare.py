"""Upload copies: what goes as-is, what is cleaned losslessly, what is re-encoded, what is refused."""

from __future__ import annotations

import io
import random
from pathlib import Path

import blake3
import piexif
import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from catalog.errors import ConfigError, PreparationFailed
from catalog.prepare import prepare_upload

LIMIT = 10_000_000
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "photos"
REAL = sorted(p.relative_to(SHARED).as_posix() for p in (SHARED / "real").rglob("*") if p.is_file())
VALID_EDGE = ["edge/pil_sample_cmyk.jpg", "edge/RGB_16__128x128.png", "edge/chi.gif",
              "edge/rotating-squares.webp", "edge/hopper_bad_exif.jpg", "edge/exif_typeerror.jpg"]
GPS_JPEGS = ["real/DSCN0010.jpg", "real/iphone_hdr_YES.jpg", "real/HMD_Nokia_8.3_5G.jpg",
             "real/67-0_length_string.jpg", "real/87_OSError.jpg"]
XMP_GPS = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
           b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
           b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="43,28.0N" '
           b'exif:GPSLongitude="11,53.1E"/></rdf:RDF></x:xmpmeta>')
GPS_IFD = {1: "N", 2: (43.0, 28.0, 2.8), 3: "E", 4: (11.0, 53.0, 6.5)}


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): blake3.blake3(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def lib(photos):
    """The photo copies, with a check afterwards that no call changed a single byte of them."""
    before = digests(photos)
    yield photos
    assert digests(photos) == before


def decode(upload) -> Image.Image:
    im = Image.open(io.BytesIO(upload.data))
    im.load()
    return im


def location_tags(data: bytes) -> set[int]:
    """GPS tags other than GPSVersionID, as Pillow and (for JPEG) piexif read them."""
    tags = {t for t in Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825) if t != 0}
    if data[:2] == b"\xff\xd8":
        tags |= {t for t in piexif.load(data)["GPS"] if t != 0}
    return tags


def noisy(size, amount: float, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A gradient under tiled random noise: a stand-in for a detailed photo, generated fast."""
    tile = Image.frombytes(mode, (500, 500), random.Random(seed).randbytes(500 * 500 * len(mode)))
    noise = Image.new(mode, size)
    for x in range(0, size[0], 500):
        for y in range(0, size[1], 500):
            noise.paste(tile, (x, y))
    return Image.blend(Image.linear_gradient("L").resize(size).convert(mode), noise, amount)


def jpeg_bytes(im: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **options)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, reading the original here
@pytest.mark.parametrize("name", REAL + VALID_EDGE)
def test_every_photo_gives_a_valid_upright_gps_free_upload(lib, name):
    upload = prepare_upload(lib / name)
    im = decode(upload)
    assert im.format in FORMATS and upload.mime == FORMATS[im.format]
    assert len(upload.data) <= LIMIT
    assert getattr(im, "n_frames", 1) == 1
    assert im.mode in ("1", "L", "LA", "P", "RGB", "RGBA")
    assert im.size == ImageOps.exif_transpose(Image.open(lib / name)).size
    assert im.getexif().get(274, 1) == 1
    assert location_tags(upload.data) == set()
    assert b"GPSLatitude" not in upload.data and b"GPSLongitude" not in upload.data


def test_all_eight_orientations_come_out_upright(lib):
    def small_grey(im):
        return im.convert("L").resize((160, 120), Image.Resampling.BOX)

    def distance(a, b):
        return ImageStat.Stat(ImageChops.difference(small_grey(a), small_grey(b))).mean[0]

    reference = ImageOps.exif_transpose(Image.open(lib / "real/landscape_1.jpg"))
    for n in range(1, 9):
        im = decode(prepare_upload(lib / f"real/landscape_{n}.jpg"))
        assert im.size == (600, 450), n
        assert distance(im, reference) < 20, n  # each file has its own digit and colours
        # Any other transform of what we sent would be much further away: the check can fail.
        wrong = [distance(im.transpose(t), reference) for t in Image.Transpose]
        assert distance(im, reference) + 15 < min(wrong), n


def test_a_fine_file_is_sent_byte_identical(lib):
    for name in ["real/landscape_1.jpg", "real/jolla.jpg", "real/Issue_266.jpg",
                 "real/el_torcal_rocks.jpg", "real/prairie_falcon.jpg", "real/hopper.gif",
                 "real/denali.webp", "real/Issue_280_dotnet.png"]:
        upload = prepare_upload(lib / name)
        assert upload.data == (lib / name).read_bytes(), name
        assert upload.filename == Path(name).name


@pytest.mark.parametrize("name", GPS_JPEGS)
def test_gps_is_stripped_from_a_jpeg_without_touching_pixels(lib, name):
    original = (lib / name).read_bytes()
    assert location_tags(original)
    upload = prepare_upload(lib / name)
    assert upload.data != original and location_tags(upload.data) == set()
    assert decode(upload).tobytes() == Image.open(lib / name).tobytes()
    kept = piexif.load(upload.data)["0th"]  # only the location left: the camera is still named
    assert kept[piexif.ImageIFD.Make] == piexif.load(original)["0th"][piexif.ImageIFD.Make]
    assert piexif.ImageIFD.GPSTag not in kept


def test_send_location_keeps_the_gps(lib):
    path = lib / "real/DSCN0010.jpg"
    upload = prepare_upload(path, send_location=True)
    assert upload.data == path.read_bytes()
    assert {2, 4} <= location_tags(upload.data)


def test_send_location_keeps_gps_in_a_reencoded_copy_too(tmp_path):
    exif = Image.Exif()
    exif[274] = 6
    exif[0x8825] = GPS_IFD
    path = tmp_path / "rotated_gps.jpg"
    path.write_bytes(jpeg_bytes(noisy((400, 300), 0.2), exif=exif.tobytes()))
    kept = decode(prepare_upload(path, send_location=True))
    assert kept.size == (300, 400)
    assert kept.getexif().get_ifd(0x8825)[2] == (43.0, 28.0, 2.8)
    dropped = prepare_upload(path)
    assert decode(dropped).size == (300, 400) and location_tags(dropped.data) == set()


def test_the_facts_come_from_the_original(lib):
    upload = prepare_upload(lib / "real/DSCN0010.jpg")
    assert upload.exif == {"make": "NIKON", "model": "COOLPIX P6000",
                           "taken_at": "2008-10-22T16:28:39", "orientation": 1}
    assert prepare_upload(lib / "real/canon_hdr_NO.jpg").exif["orientation"] == 6


def test_xmp_gps_is_dropped_losslessly_from_jpeg_and_by_reencoding_png(tmp_path):
    im = noisy((320, 240), 0.3)
    jpg = tmp_path / "xmp_gps.jpg"
    jpg.write_bytes(jpeg_bytes(im, xmp=XMP_GPS))
    upload = prepare_upload(jpg)
    assert b"GPSLatitude" not in upload.data
    assert decode(upload).tobytes() == Image.open(jpg).tobytes()
    jpg.write_bytes(jpeg_bytes(im, comment=b"GPSLatitude 43.4674 GPSLongitude 11.8851"))
    assert b"GPSLatitude" not in prepare_upload(jpg).data  # any text segment naming a position

    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_GPS.decode())
    png = tmp_path / "xmp_gps.png"
    im.save(png, pnginfo=info)
    upload = prepare_upload(png)
    assert b"GPSLatitude" not in upload.data and decode(upload).size == (320, 240)


@pytest.mark.parametrize("name", ["edge/hopper_bad_exif.jpg", "edge/exif_typeerror.jpg"])
def test_exif_piexif_cannot_read_is_dropped_losslessly(lib, name):
    upload = prepare_upload(lib / name)
    assert b"Exif\x00\x00" not in upload.data[:65536]
    assert decode(upload).tobytes() == Image.open(lib / name).tobytes()


def test_mpo_sends_its_first_frame_as_plain_jpeg(lib):
    path = lib / "real/Panasonic_Lumix_DMC-LX7.jpg"
    upload = prepare_upload(path)
    im = decode(upload)
    assert im.format == "JPEG" and upload.mime == "image/jpeg"
    assert len(upload.data) < path.stat().st_size
    original = Image.open(path)
    assert original.format == "MPO" and original.n_frames == 2
    assert im.tobytes() == original.tobytes()


def test_data_appended_after_the_image_is_cut(tmp_path):
    image = jpeg_bytes(noisy((200, 150), 0.3))
    path = tmp_path / "motion.jpg"
    path.write_bytes(image + b"\x00\x00ftypmp42 pretend video with a position" * 100)
    assert prepare_upload(path).data == image


def test_a_jpeg_over_ten_megabytes_fits_with_its_aspect_ratio(tmp_path):
    path = tmp_path / "huge.jpg"
    noisy((6000, 4000), 0.2).save(path, quality=100)
    assert path.stat().st_size > LIMIT
    upload = prepare_upload(path)
    im = decode(upload)
    assert len(upload.data) <= LIMIT and im.format == "JPEG"
    assert im.width / im.height == pytest.approx(1.5, rel=0.01)
    assert im.width > 3000  # re-encoding alone makes room here: no needless shrinking


@pytest.mark.parametrize("limit", [150_000, 40_000])
def test_dimensions_shrink_when_quality_alone_cannot_fit(tmp_path, limit):
    path = tmp_path / "detailed.jpg"
    noisy((1600, 1000), 1.0).save(path, quality=95)
    upload = prepare_upload(path, max_upload_bytes=limit)
    im = decode(upload)
    assert len(upload.data) <= limit and im.width < 1600
    assert im.width / im.height == pytest.approx(1.6, rel=0.01)


def test_transparency_is_kept_as_png_under_the_limit(tmp_path):
    im = noisy((900, 600), 1.0, mode="RGBA")
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    path = tmp_path / "alpha.tiff"
    im.save(path)
    upload = prepare_upload(path, max_upload_bytes=300_000)
    out = decode(upload)
    assert out.format == "PNG" and out.mode == "RGBA" and len(upload.data) <= 300_000
    assert out.getchannel("A").getextrema()[0] < 255


def test_max_edge_shrinks_the_long_edge(lib):
    for name, edge, size in [("real/42_IndexError.jpg", 1000, (1000, 750)),
                             ("real/canon_hdr_NO.jpg", 1024, (768, 1024)),
                             ("real/landscape_6.jpg", 300, (300, 225)),
                             ("real/IMG_5195.HEIC", 800, (620, 800)),
                             ("real/Issue_280_dotnet.png", 320, (320, 256))]:
        assert decode(prepare_upload(lib / name, max_edge=edge)).size == size, name


@pytest.mark.parametrize("name", ["real/IMG_5195.HEIC", "real/tifftag-photoshop.tiff"])
def test_heic_and_tiff_become_upright_jpeg_without_gps(lib, name):
    upload = prepare_upload(lib / name)
    im = decode(upload)
    assert im.format == "JPEG" and upload.filename == Path(name).stem + ".jpg"
    assert im.size == ImageOps.exif_transpose(Image.open(lib / name)).size
    assert location_tags(upload.data) == set() and b"GPSLatitude" not in upload.data


def test_a_heic_keeps_its_position_only_when_asked(lib):
    upload = prepare_upload(lib / "real/IMG_5195.HEIC", send_location=True, max_edge=600)
    assert {2, 4} <= location_tags(upload.data)


def test_awkward_modes_become_8_bit_and_animations_their_first_frame(lib, tmp_path):
    def looks_like(upload, original):
        im = decode(upload)
        diff = ImageChops.difference(im.convert("RGB"), original.convert("RGB"))
        return sum(ImageStat.Stat(diff).mean) / 3 < 8  # JPEG blurs sharp red text a little

    cmyk = prepare_upload(lib / "edge/pil_sample_cmyk.jpg")
    assert decode(cmyk).mode == "RGB"
    assert looks_like(cmyk, Image.open(lib / "edge/pil_sample_cmyk.jpg"))
    sixteen = prepare_upload(lib / "edge/RGB_16__128x128.png")
    assert decode(sixteen).mode == "RGB"
    assert looks_like(sixteen, Image.open(lib / "edge/RGB_16__128x128.png"))
    assert looks_like(prepare_upload(lib / "edge/chi.gif"), Image.open(lib / "edge/chi.gif"))
    squares = decode(prepare_upload(lib / "edge/rotating-squares.webp"))
    assert (squares.format, squares.mode) == ("PNG", "RGBA")

    grey16 = tmp_path / "grey16.png"
    ramp = Image.linear_gradient("L").resize((256, 64)).convert("I").point(lambda v: v * 257)
    ramp.convert("I;16").save(grey16)
    assert Image.open(grey16).mode.startswith("I")
    out = decode(prepare_upload(grey16))
    assert out.mode == "L" and ImageStat.Stat(out).mean[0] == pytest.approx(127.5, abs=2)


@pytest.mark.parametrize("name, words", [
    ("edge/truncated_jpeg.jpg", "truncated"),
    ("edge/truncated_image.png", "truncated"),
    ("edge/empty.jpg", "empty"),
    ("edge/not_an_image_pdf.jpg", "not an image"),
    ("edge/decompression_bomb.gif", "65535x66601"),
    ("edge/65536-uint32-limit.png", "65536x65536"),
])
def test_broken_files_raise_preparation_failed_with_a_clear_message(lib, name, words):
    with pytest.raises(PreparationFailed, match=words) as failure:
        prepare_upload(lib / name)
    assert type(failure.value) is PreparationFailed and name.split("/")[1] in str(failure.value)


def test_the_pixel_limit_is_ours_and_pillow_is_left_as_it_was(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (1500, 1000), "gray").save(path)
    before = Image.MAX_IMAGE_PIXELS
    # 1.5 MP is only a warning for Pillow at a 1 MP limit: still refused, size named.
    with pytest.raises(PreparationFailed, match="1500x1000"):
        prepare_upload(path, max_image_pixels=1_000_000)
    assert prepare_upload(path, max_image_pixels=1_500_000).mime == "image/png"
    assert Image.MAX_IMAGE_PIXELS == before


def test_unreadable_paths_and_bad_settings(tmp_path):
    with pytest.raises(PreparationFailed, match="cannot read"):
        prepare_upload(tmp_path / "missing.jpg")
    with pytest.raises(PreparationFailed, match="cannot read"):
        prepare_upload(tmp_path)
    (tmp_path / "notes.jpg").write_text("not a photo")
    with pytest.raises(PreparationFailed, match="not an image"):
        prepare_upload(tmp_path / "notes.jpg")
    with pytest.raises(ConfigError):
        prepare_upload(tmp_path / "notes.jpg", max_edge=0)


def test_a_fifo_in_place_of_a_photo_is_refused_at_once(tmp_path):
    """The analysis reads a path the scan saw as a photo; it is a FIFO now: a message, no hang."""
    import os
    import threading

    os.mkfifo(tmp_path / "was_a_photo.jpg")
    outcome = []

    def prepare():
        try:
            prepare_upload(tmp_path / "was_a_photo.jpg")
        except PreparationFailed as e:
            outcome.append(str(e))

    worker = threading.Thread(target=prepare, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        os.close(os.open(tmp_path / "was_a_photo.jpg", os.O_WRONLY | os.O_NONBLOCK))  # let it go
        pytest.fail("preparing a FIFO hung")
    assert outcome and "not a regular file any more (now a FIFO)" in outcome[0]


def test_a_large_image_is_resized_in_bands_without_a_seam(monkeypatch, shared_photos):
    """Banded resizing (used from 48 MP on to save memory) looks like one resize, band edges included."""
    from catalog import decoding

    photo = Image.open(shared_photos / "real/el_torcal_rocks.jpg").convert("RGB")
    monkeypatch.setattr(decoding, "BANDED_RESIZE_PIXELS", 0)
    monkeypatch.setattr(decoding, "BAND_BYTES", photo.width * 4 * 10)  # bands of a few rows
    for size in [(photo.width // 3, photo.height // 3), (photo.width * 7 // 10, photo.height * 7 // 10)]:
        banded = decoding.resize(photo, size)
        whole = photo.resize(size, Image.Resampling.LANCZOS)
        difference = ImageChops.difference(banded, whole)
        assert max(high for _, high in difference.getextrema()) <= 2
        assert max(ImageStat.Stat(difference).mean) < 0.05


def test_the_decode_gate_lets_a_big_image_run_alone():
    """Slots worth more than the budget never overlap; small ones share it."""
    import threading
    import time

    from catalog.decoding import DecodeGate

    gate, inside, most = DecodeGate(100), [], []
    lock = threading.Lock()

    def work(cost):
        with gate.slot(cost):
            with lock:
                inside.append(cost)
                most.append(sum(inside))
            time.sleep(0.05)
            with lock:
                inside.remove(cost)

    threads = [threading.Thread(target=work, args=(c,)) for c in (500, 30, 30, 30, 500, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert max(most) <= 500 and all(total <= 100 or total == 500 for total in most)
    assert 60 <= max(t for t in most if t != 500) <= 90  # small ones did run side by side
