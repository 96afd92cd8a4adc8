"""The container walkers and the piexif guard, each tried once on the shared photos and the broken files."""

from __future__ import annotations

import ast
import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from catalog import exifcheck
from catalog.containers import (PNG_SIGNATURE, BrokenImage, ifd_entries, ifd_offset, ifd_value, iter_ifd,
                                jpeg_image_end, jpeg_segments, png_chunks, riff_chunks, tiff_order)
from catalog.identity import sniff

CATALOG = Path(__file__).resolve().parents[1] / "catalog"


def _files(photos: Path, fmt: str) -> list[Path]:
    return [p for p in sorted(photos.rglob("*")) if p.is_file() and sniff(p.read_bytes()[:16]) == fmt]


def _exif_of(data: bytes) -> bytes | None:
    """The APP1 EXIF payload ("Exif\\0\\0" + TIFF) of a JPEG, or None."""
    segments, _ = jpeg_segments(data)
    return next((data[s + 4:e] for m, s, e in segments if m == 0xE1 and data[s + 4:s + 10] == b"Exif\x00\x00"), None)


def test_jpeg_segments_give_back_the_header_verbatim(photos):
    jpegs = _files(photos, "JPEG")
    assert len(jpegs) >= 30
    for path in jpegs:
        data = path.read_bytes()
        if path.name == "truncated_jpeg.jpg":
            continue  # its header is whole; its scan data is not (see the next test)
        segments, sos = jpeg_segments(data)
        assert data[sos:sos + 2] == b"\xff\xda", path.name
        assert segments[0][1] == 2 and all(a[2] == b[1] for a, b in zip(segments, segments[1:])), path.name
        assert b"".join(data[s:e] for _, s, e in segments) == data[2:sos]
        assert {m for m, _, _ in segments} >= {0xDB, 0xC4} or path.name == "jolla.jpg" or \
            any(m in (0xC0, 0xC1, 0xC2) for m, _, _ in segments), path.name


def test_jpeg_image_end_follows_markers_past_thumbnails_and_stops_before_mpo_frames(photos):
    for path in _files(photos, "JPEG"):
        data = path.read_bytes()
        if path.name == "truncated_jpeg.jpg":
            with pytest.raises(BrokenImage) as exc:
                jpeg_image_end(data, jpeg_segments(data)[1])
            assert exc.value.kind == "truncated"
            continue
        end = jpeg_image_end(data, jpeg_segments(data)[1])
        assert data[end - 2:end] == b"\xff\xd9", path.name
        exif = _exif_of(data)
        if exif is not None and b"\xff\xd9" in exif:  # an EXIF thumbnail's end is not the image's
            assert end > data.index(exif) + len(exif), path.name
        if path.name == "Panasonic_Lumix_DMC-LX7.jpg":  # MPO: the second frame follows
            assert end < len(data) and b"\xff\xd8\xff" in data[end:]
            with Image.open(io.BytesIO(data[:end])) as first, Image.open(path) as whole:
                first.load()
                assert first.size == whole.size
        else:
            assert end == len(data), path.name


@pytest.mark.parametrize("damage, kind", [
    (lambda d: d[:2] + b"\x00" + d[3:], "corrupt"),  # no marker where the first segment starts
    (lambda d: d[:30], "truncated"),  # cut inside a header segment
    (lambda d: d[:2] + b"\xff\xd9", "truncated"),  # an end marker before any scan
])
def test_jpeg_segments_name_the_damage(photos, damage, kind):
    data = (photos / "real" / "DSCN0010.jpg").read_bytes()
    with pytest.raises(BrokenImage) as exc:
        jpeg_segments(damage(data))
    assert exc.value.kind == kind


def test_png_chunks_run_from_the_signature_to_iend(photos):
    pngs = _files(photos, "PNG")
    assert len(pngs) >= 4
    for path in pngs:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        if path.name == "truncated_image.png":
            with pytest.raises(BrokenImage, match="IEND") as exc:
                png_chunks(data)
            assert exc.value.kind == "truncated"
            continue
        chunks = png_chunks(data)
        assert chunks[0][:2] == (b"IHDR", 8) and chunks[-1][0] == b"IEND", path.name
        assert all(a[2] == b[1] for a, b in zip(chunks, chunks[1:])), path.name
        assert all(int.from_bytes(data[s:s + 4], "big") == e - s - 12 for _, s, e in chunks)
        with pytest.raises(BrokenImage):  # the same file without its last byte has no whole IEND
            png_chunks(data[:chunks[-1][2] - 1])


def test_riff_chunks_are_padded_to_even_sizes_and_cut_ones_are_named(photos):
    webps = _files(photos, "WEBP")
    assert {p.name for p in webps} >= {"denali.webp", "rotating-squares.webp"}
    for path in webps:
        data = path.read_bytes()
        chunks, riff_end = riff_chunks(data)
        assert riff_end == len(data) and chunks[0][1] == 12
        assert all(b[1] == a[2] + (a[2] & 1) for a, b in zip(chunks, chunks[1:])), path.name
        assert chunks[-1][2] + (chunks[-1][2] & 1) == riff_end
        cut = chunks[-1][1] + 10
        with pytest.raises(BrokenImage, match="truncated inside a chunk"):
            riff_chunks(data[:cut])
    fourccs = [c[0] for c in riff_chunks((photos / "real" / "denali.webp").read_bytes())[0]]
    assert fourccs == [b"VP8X", b"ICCP", b"VP8 ", b"EXIF", b"XMP "]


def test_tiff_directories_of_a_tiff_file_and_of_exif_blocks(photos):
    path = photos / "real" / "tifftag-photoshop.tiff"
    data = path.read_bytes()
    order = tiff_order(data)
    entries = ifd_entries(data, order, ifd_offset(data, order))
    tags = {e[0]: e for e in entries}
    assert [e[0] for e in entries] == sorted(tags)  # TIFF keeps IFD0 sorted
    width, height = Image.open(path).size
    for tag, want in ((256, width), (257, height)):
        raw = ifd_value(data, order, tags[tag])
        assert int.from_bytes(raw, "little" if order == "<" else "big") == want
    assert len(ifd_value(data, order, tags[34377])) == tags[34377][2]  # a value stored elsewhere
    walked = 0
    for jpeg in _files(photos, "JPEG"):
        exif = _exif_of(jpeg.read_bytes())
        if exif is None:
            continue
        tiff, order = exif[6:], tiff_order(exif[6:])
        if jpeg.name == "hopper_bad_exif.jpg":  # its IFD0 claims more entries than the block holds
            with pytest.raises(BrokenImage, match="truncated"):
                ifd_entries(tiff, order, ifd_offset(tiff, order))
            continue
        assert ifd_entries(tiff, order, ifd_offset(tiff, order)), jpeg.name
        walked += 1
    assert walked >= 25
    assert tiff_order(b"II+\x00\x08\x00") is None  # BigTIFF is not walked


def test_a_cut_directory_yields_its_whole_entries_then_says_truncated(photos):
    data = (photos / "real" / "tifftag-photoshop.tiff").read_bytes()
    off = ifd_offset(data, "<")
    cut = data[:off + 2 + 12 * 3 + 5]
    seen = []
    with pytest.raises(BrokenImage, match="truncated") as exc:
        for entry in iter_ifd(cut, "<", off):
            seen.append(entry)
    assert len(seen) == 3 and exc.value.kind == "truncated"
    with pytest.raises(BrokenImage):
        ifd_offset(b"II*\x00\x08", "<")


def test_piexif_reads_every_sound_exif_and_refuses_the_broken_ones_in_one_way(photos):
    read = refused = 0
    for path in _files(photos, "JPEG"):
        exif = _exif_of(path.read_bytes())
        if exif is None:
            continue
        if path.parent.name == "edge" and path.name in ("hopper_bad_exif.jpg", "exif_typeerror.jpg"):
            with pytest.raises(exifcheck.ExifUnreadable):
                exifcheck.load(exif[6:])
            assert exifcheck.without_gps(exif) is None, path.name  # the caller drops it whole
            refused += 1
            continue
        found = exifcheck.load(exif[6:])
        stripped = exifcheck.without_gps(exif)
        if any(tag != 0 for tag in found["GPS"]):
            assert stripped != exif and exifcheck.load(stripped[6:])["GPS"] == {}, path.name
            assert exifcheck.load(stripped[6:])["0th"].get(271) == found["0th"].get(271)  # the camera stays
        else:
            assert stripped == exif, path.name  # nothing to strip: the bytes are kept as they are
        read += 1
    assert read >= 25 and refused == 2


def test_exif_piexif_wrote_itself_passes_the_guard(photos):
    """Sub-directories (Exif, GPS) have no next-IFD link: the guard followed one and refused sound EXIF."""
    data = (photos / "real" / "DSCN0010.jpg").read_bytes()
    exif = _exif_of(data)
    stripped = exifcheck.without_gps(exif)  # piexif.dump's output, GPS gone
    assert exifcheck.load(stripped[6:])["0th"][271] == exifcheck.load(exif[6:])["0th"][271]


def test_the_count_guard_refuses_before_piexif_allocates():
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI4s", 270, 4, 2**31, b"\x00" * 4) + b"\x00" * 4
    with pytest.raises(exifcheck.ExifUnreadable, match="claims 2,147,483,648 values"):
        exifcheck.load(tiff)
    with pytest.raises(ValueError, match="claims"):
        exifcheck.check_counts(tiff)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "JPEG", exif=Image.Exif().tobytes())
    assert exifcheck.load(_exif_of(buf.getvalue())[6:])["0th"] == {}


def test_only_exifcheck_imports_piexif():
    importers = []
    for path in CATALOG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            if any(n and n.split(".")[0] == "piexif" for n in names):
                importers.append(path.relative_to(CATALOG).as_posix())
    assert importers == ["exifcheck.py"]
