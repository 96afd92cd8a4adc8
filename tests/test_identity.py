"""Identity is the image payload: metadata edits keep it, pixel edits change it."""

from __future__ import annotations

import io
import shutil

import piexif
import pytest
from PIL import Image, PngImagePlugin

from catalog.containers import BrokenImage
from catalog.identity import identity_of, payload_ranges, sniff


def xp_keywords(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\x00\x00"


@pytest.mark.parametrize("name", ["DSCN0010.jpg", "prairie_falcon.jpg", "Panasonic_Lumix_DMC-LX7.jpg", "landscape_6.jpg"])
def test_jpeg_identity_survives_keyword_write(tmp_path, shared_photos, name):
    original = tmp_path / name
    shutil.copy(shared_photos / "real" / name, original)
    before = identity_of(original)
    tagged = tmp_path / f"tagged-{name}"
    exif = piexif.load(str(original))
    exif["0th"][piexif.ImageIFD.XPKeywords] = xp_keywords("sunset;beach;café")
    exif["0th"][piexif.ImageIFD.ImageDescription] = b"A new description"
    exif.pop("thumbnail", None)
    exif["1st"] = {}
    piexif.insert(piexif.dump(exif), str(original), str(tagged))
    assert tagged.read_bytes() != original.read_bytes()
    assert identity_of(tagged).digest == before.digest


def test_jpeg_identity_changes_with_one_pixel(tmp_path, shared_photos):
    original = tmp_path / "a.jpg"
    shutil.copy(shared_photos / "real/DSCN0010.jpg", original)
    data = bytearray(original.read_bytes())
    # Flip one byte well inside the main image's entropy-coded data (not a marker; the
    # first FFDA in the file belongs to the EXIF thumbnail, which must NOT count).
    assert data.index(b"\xff\xda") < payload_ranges("JPEG", bytes(data))[-1][0]
    sos = payload_ranges("JPEG", bytes(data))[-1][0]
    i = sos + 2000
    while data[i] == 0xFF or data[i - 1] == 0xFF:
        i += 1
    data[i] ^= 0x01
    changed = tmp_path / "b.jpg"
    changed.write_bytes(bytes(data))
    assert identity_of(changed).digest != identity_of(original).digest
    # And a real pixel edit through Pillow, saved again.
    with Image.open(original) as img:
        img = img.copy()
    img.putpixel((10, 10), (255, 0, 0))
    img.save(tmp_path / "c.jpg", quality=95)
    assert identity_of(tmp_path / "c.jpg").digest != identity_of(original).digest


def test_png_identity_ignores_text_chunks(tmp_path):
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    img.save(tmp_path / "plain.png")
    info = PngImagePlugin.PngInfo()
    info.add_text("Keywords", "sunset, beach")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta/>")
    img.save(tmp_path / "tagged.png", pnginfo=info)
    assert identity_of(tmp_path / "plain.png").digest == identity_of(tmp_path / "tagged.png").digest
    img.putpixel((0, 0), (0, 0, 0))
    img.save(tmp_path / "edited.png")
    assert identity_of(tmp_path / "edited.png").digest != identity_of(tmp_path / "plain.png").digest


def test_other_formats_hash_whole_file(tmp_path, shared_photos):
    data = (shared_photos / "real/hopper.gif").read_bytes()
    assert payload_ranges("GIF", data) == [(0, len(data))]
    assert identity_of(shared_photos / "real/hopper.gif").hashed_bytes == len(data)


def test_truncated_containers_detected():
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, "JPEG")
    jpeg = buf.getvalue()
    assert payload_ranges("JPEG", jpeg)
    with pytest.raises(BrokenImage) as exc:
        payload_ranges("JPEG", jpeg[: len(jpeg) - 40])
    assert exc.value.kind == "truncated"
    with pytest.raises(BrokenImage):
        payload_ranges("JPEG", jpeg[:20])
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, "PNG")
    with pytest.raises(BrokenImage):
        payload_ranges("PNG", buf.getvalue()[:-12])


def test_sniff_ignores_extension():
    assert sniff(b"%PDF-1.4") is None
    assert sniff(b"\xff\xd8\xff\xe1") == "JPEG"
    assert sniff(b"\x00\x00\x00\x18ftypheic") == "HEIF"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"


def test_large_file_is_streamed_and_hashes_as_in_memory(tmp_path):
    """Files over LARGE_FILE are read in pread chunks (no mmap) and hash as bytes would."""
    import blake3

    from catalog.identity import LARGE_FILE

    data = b"GIF89a" + bytes(range(256)) * (LARGE_FILE // 256 + 10)
    (tmp_path / "big.gif").write_bytes(data)
    assert identity_of(tmp_path / "big.gif").digest == blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("name", ["real/DSCN0010.jpg", "real/Issue_280_dotnet.png", "real/denali.webp",
                                  "edge/truncated_jpeg.jpg", "edge/truncated_image.png", "tiff"])
@pytest.mark.parametrize("chunk", [1031, 2])  # odd sizes: markers straddle chunk boundaries
def test_file_view_walks_containers_like_bytes(tmp_path, shared_photos, name, chunk, monkeypatch):
    """The pread view of a large file gives every container walk the same answer as bytes."""
    from catalog import libfile
    from catalog.identity import hash_buffer
    from catalog.libfile import FileView

    monkeypatch.setattr(libfile, "CHUNK", chunk)
    path = tmp_path / "x.tif"
    if name == "tiff":
        Image.new("RGB", (300, 200), (9, 8, 7)).save(path, compression="tiff_lzw")
    else:
        path = shared_photos / name
    data = path.read_bytes()
    fmt = sniff(data[:16])
    with open(path, "rb") as f:
        view = FileView(f, len(data))
        try:
            expected = hash_buffer(fmt, data)
        except BrokenImage as exc:
            with pytest.raises(BrokenImage, match=str(exc)):
                hash_buffer(fmt, view)
            return
        assert hash_buffer(fmt, view) == expected


def _riff_without(data: bytes, drop: set[bytes]) -> bytes:
    """A WebP with some chunks removed (and the RIFF size fixed), done by hand."""
    pos, out = 12, []
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        end = pos + 8 + size + (size & 1)
        if data[pos : pos + 4] not in drop:
            out.append(data[pos:end])
        pos = end
    body = b"WEBP" + b"".join(out)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def test_webp_identity_ignores_metadata_chunks(tmp_path, shared_photos):
    original = (shared_photos / "real/denali.webp").read_bytes()
    assert b"EXIF" in original and b"XMP " in original
    (tmp_path / "stripped.webp").write_bytes(_riff_without(original, {b"EXIF", b"XMP "}))
    with Image.open(tmp_path / "stripped.webp") as img:
        img.load()  # still a valid WebP
    assert identity_of(tmp_path / "stripped.webp").digest == identity_of(shared_photos / "real/denali.webp").digest
    broken = bytearray(original)
    vp8 = broken.index(b"VP8 ")
    broken[vp8 + 200] ^= 0xFF
    (tmp_path / "edited.webp").write_bytes(bytes(broken))
    assert identity_of(tmp_path / "edited.webp").digest != identity_of(shared_photos / "real/denali.webp").digest


def test_tiff_identity_is_its_strips(tmp_path):
    img = Image.new("RGB", (64, 48), (200, 100, 50))
    img.save(tmp_path / "plain.tif")
    img.save(tmp_path / "described.tif", tiffinfo={270: "A description", 315: "Someone"})
    assert (tmp_path / "plain.tif").read_bytes() != (tmp_path / "described.tif").read_bytes()
    assert identity_of(tmp_path / "plain.tif").digest == identity_of(tmp_path / "described.tif").digest
    img.putpixel((3, 3), (0, 0, 0))
    img.save(tmp_path / "edited.tif")
    assert identity_of(tmp_path / "edited.tif").digest != identity_of(tmp_path / "plain.tif").digest
    with pytest.raises(BrokenImage):
        payload_ranges("TIFF", (tmp_path / "plain.tif").read_bytes()[:-500])


def test_tiff_identity_covers_geometry_and_pixel_layout(tmp_path):
    """Same strip bytes, different picture: 100x200 vs 200x100, grey vs palette, 8-bit vs 16-bit."""
    Image.new("RGB", (100, 200)).save(tmp_path / "tall.tif")
    Image.new("RGB", (200, 100)).save(tmp_path / "wide.tif")
    Image.new("L", (200, 300)).save(tmp_path / "grey.tif")
    Image.new("L", (200, 300)).convert("P").save(tmp_path / "palette.tif")
    Image.new("L", (100, 300)).save(tmp_path / "twice_as_wide_bytes.tif")
    Image.new("I;16", (100, 150)).save(tmp_path / "deep.tif")
    ids = {p.name: identity_of(p) for p in tmp_path.iterdir()}
    strips = {name: payload_ranges("TIFF", (tmp_path / name).read_bytes()) for name in ids}
    assert (tmp_path / "tall.tif").read_bytes() != (tmp_path / "wide.tif").read_bytes()
    assert ids["tall.tif"].previous == ids["wide.tif"].previous  # the strips alone are equal
    assert len({i.digest for i in ids.values()}) == len(ids)  # ... the photos are not
    assert all(sum(e - s for s, e in strips[name]) == ids[name].hashed_bytes for name in ids)


def test_tiff_identity_ignores_defaults_written_out_and_descriptive_tags(tmp_path):
    """Writing Compression=1 or Predictor=1 explicitly, or keywords and a description, is no change."""
    from PIL import TiffImagePlugin

    img = Image.new("RGB", (64, 48), (1, 2, 3))
    img.save(tmp_path / "plain.tif")
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[317] = 1  # Predictor: none, the default
    info[339] = (1, 1, 1)  # SampleFormat: unsigned integers, the default
    info[270] = "A description"
    info[700] = b"<x:xmpmeta>keywords</x:xmpmeta>"
    img.save(tmp_path / "explicit.tif", tiffinfo=info)
    assert identity_of(tmp_path / "plain.tif") == identity_of(tmp_path / "explicit.tif")


@pytest.mark.parametrize("name, digest, previous", [
    ("real/DSCN0010.jpg", "50d3427c866a1c6b26075d2db0934dbfc7e5ddc5eb01e3a0fda82dc13b6a6eb6", None),
    ("real/iphone_hdr_YES.jpg", "17869bec6f3d8ada62e2f811981970bc06b3e270392fbe1ca4dcc941e7cb121e", None),
    ("real/Issue_280_dotnet.png", "66ee1ae9282239faa4ce961aabe35d828b2bc1c9b390b07bbe406983085dcc09", None),
    ("real/denali.webp", "082a130edcc47f12bea54d69d36fdb57eda1688f7b3ae0a011c2af16a5582d77", None),
    ("edge/rotating-squares.webp", "173a7390adfaee9e2786a1529b1c0fd8487edd114b8e9c415131776f2d31cf16", None),
    ("real/tifftag-photoshop.tiff", "eaf06e13d6d44920ef8474d4984efaf6c3adb882cb3cc5bdc7fa75a95e3fbeb6",
     "3a4cdfb08de6d3583f6db13f440423cb9cb629b608b726e4628c0eb9b32c069a"),
    ("real/hopper.gif", "6f85ea7cb4c6c8c5c1c0f4d1371ebb4ace552ca71a5889679dfbf107aacf9885", None),
])
def test_identity_digests_are_pinned(shared_photos, name, digest, previous):
    """Everything paid for hangs off these digests: a refactor of the walkers must not move one."""
    found = identity_of(shared_photos / name)
    assert (found.digest, found.previous) == (digest, previous)
