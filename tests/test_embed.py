"""Lossless keyword embedding, read back by exiftool: pixels, identity and all else untouched; undo exact."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from catalog.identity import identity_of, sniff
from catalog.writeback import embed, iptc
from catalog.errors import WriteBackError

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
KEYWORDS = ["sunset", "café", "日本", "beach|sand"]
DESCRIPTION = "Un café à Paris"
# What we change; everything else exiftool reports must come back with the same value.
OURS = ("XMP", "IPTC:Keywords", "IPTC:Caption-Abstract", "IPTC:CodedCharacterSet", "IPTC:ApplicationRecordVersion",
        "IFD0:XPKeywords", "IFD0:ImageDescription", "Photoshop:IPTCDigest", "File:", "System:", "ExifTool:",
        "SourceFile", "Composite:", "PNG-zTXt:", "PNG:", "RIFF:",
        "MPImage2:MPImageStart")  # absolute file position: moves with the metadata (the image itself is checked)


def packet(keywords: list[str], description: str | None) -> bytes:
    """A minimal XMP packet (the real merge lives in catalog.writeback.xmp_merge; not tested here)."""
    li = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    alt = (f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt>'
           "</dc:description>" if description else "")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:lr="http://ns.adobe.com/lightroom/1.0/" '
            'xmlns:digiKam="http://www.digikam.org/ns/1.0/">'
            f"<dc:subject><rdf:Bag>{li}</rdf:Bag></dc:subject>{alt}"
            f"<lr:hierarchicalSubject><rdf:Bag>{li}</rdf:Bag></lr:hierarchicalSubject>"
            f"<digiKam:TagsList><rdf:Seq>{li}</rdf:Seq></digiKam:TagsList>"
            '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>').encode()


def write(data: bytes, fmt: str, keywords=KEYWORDS, description=DESCRIPTION, remove=()) -> bytes:
    """What the write-back stage does: merge IPTC, embed everything."""
    current = embed.read_embedded(data, fmt)
    iim = (iptc.merge_iptc(current.iptc, add=keywords, remove=remove, caption=description, replace_caption=True)
           if "iptc" in embed.embedded_fields(fmt) else None)
    return embed.write_embedded(data, fmt, xmp=packet(keywords, description), iptc=iim, keywords=keywords,
                                description=description)


def warnings(exiftool, *paths: Path) -> dict[str, set[str]]:
    """exiftool -validate's warnings per file (one exiftool run for all)."""
    out = subprocess.run([exiftool.path, "-validate", "-warning", "-a", "-s3", *map(str, paths), "/dev/null"],
                         capture_output=True, text=True).stdout  # /dev/null: always several, so headers
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        if line.startswith("======== "):
            current = found.setdefault(line[9:], set())
        elif not line[:1].isdigit() and line != "OK":
            current.add(line)
    return found


def real_photos():
    """Every real photo with a lossless embedded writer (HEIF and GIF get a sidecar: test_writeback.py)."""
    for path in sorted(p for p in (PHOTOS / "real").rglob("*") if p.is_file()):
        fmt = sniff(path.read_bytes()[:32])
        if fmt in embed.FIELDS:
            yield pytest.param(path, fmt, id=path.name)


REAL = list(real_photos())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every embeddable real photo: an untouched copy and a written copy."""
    root = tmp_path_factory.mktemp("embed")
    (root / "before").mkdir(), (root / "after").mkdir()
    pairs = {}
    for param in REAL:
        path, fmt = param.values
        before, after = root / "before" / path.name, root / "after" / path.name
        shutil.copy(path, before)
        after.write_bytes(write(before.read_bytes(), fmt))
        pairs[path.name] = before, after
    return pairs


@pytest.fixture(scope="module")
def read_back(written, exiftool):
    """exiftool's reading of every copy, written or not, and its -validate warnings (one run each)."""
    paths = [p for pair in written.values() for p in pair]
    return exiftool.read(*paths, options=("-a",)), warnings(exiftool, *paths)


@pytest.mark.parametrize(("path", "fmt"), REAL)
def test_pixels_identity_and_undo(written, path, fmt):
    before, after = written[path.name]
    original, new = before.read_bytes(), after.read_bytes()
    assert new != original
    assert identity_of(after) == identity_of(before)
    with Image.open(before) as a, Image.open(after) as b:
        assert (a.size, a.mode, a.tobytes()) == (b.size, b.mode, b.tobytes())
    assert embed.restore(new, fmt, embed.snapshot(original, fmt)) == original
    assert write(new, fmt) is new  # idempotent: the same write again changes nothing


@pytest.mark.parametrize(("path", "fmt"), REAL)
def test_exiftool_reads_what_we_wrote(written, read_back, exiftool, path, fmt):
    before, after = written[path.name]
    meta, checked = read_back
    as_list = exiftool.listed
    old, new = meta[before.resolve()], meta[after.resolve()]
    assert as_list(new.get("XMP-dc:Subject")) == KEYWORDS
    assert as_list(new.get("XMP-lr:HierarchicalSubject")) == KEYWORDS
    assert as_list(new.get("XMP-digiKam:TagsList")) == KEYWORDS
    assert new.get("IFD0:XPKeywords") == "sunset;café;日本;beach|sand"
    assert new.get("IFD0:ImageDescription") == DESCRIPTION
    if "iptc" in embed.embedded_fields(fmt):
        keywords = [str(k) for k in as_list(new.get("IPTC:Keywords"))]
        assert set(KEYWORDS) <= set(keywords)
        assert {str(k) for k in as_list(old.get("IPTC:Keywords"))} <= set(keywords)  # the user's stay
        assert new.get("IPTC:Caption-Abstract") == DESCRIPTION
        assert new.get("IPTC:CodedCharacterSet") == "UTF8"
    lost = {k: v for k, v in old.items() if not k.startswith(OURS) and new.get(k) != v}
    assert not lost, f"{path.name}: tags lost or changed: {sorted(lost)[:10]}"
    assert checked[str(after)] <= checked[str(before)]  # exiftool -validate: nothing new


@pytest.mark.parametrize("name", ["hopper_bad_exif.jpg", "exif_typeerror.jpg"])
def test_damaged_exif_is_refused_and_left_alone(tmp_path, name):
    path = tmp_path / name
    shutil.copy(PHOTOS / "edge" / name, path)
    data = path.read_bytes()
    with pytest.raises(WriteBackError, match="EXIF is damaged"):
        embed.write_embedded(data, "JPEG", xmp=packet(KEYWORDS, None), iptc=None, keywords=KEYWORDS,
                             description=None)
    with pytest.raises(WriteBackError, match="EXIF is damaged"):
        embed.read_embedded(data, "JPEG")
    assert path.read_bytes() == (PHOTOS / "edge" / name).read_bytes()


@pytest.mark.parametrize(("name", "message"), [
    ("real/IMG_5195.HEIC", "no lossless writer for HEIF: use a sidecar"),
    ("edge/truncated_jpeg.jpg", "truncated"), ("edge/truncated_image.png", "truncated")])
def test_formats_and_files_we_cannot_write(name, message):
    data = (PHOTOS / name).read_bytes()
    with pytest.raises(WriteBackError, match=message):
        embed.write_embedded(data, sniff(data[:32]), xmp=b"<x/>", iptc=None, keywords=["a"], description=None)


def generated(fmt: str, mode: str = "RGB", **options) -> bytes:
    image = Image.new(mode, (37, 21), (200, 30, 90, 120)[: len(mode)])
    image.putpixel((3, 4), (0, 255, 0, 255)[: len(mode)])
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def big_endian_tiff() -> bytes:
    """A 5x3 RGB TIFF in Motorola byte order (Pillow writes only Intel order)."""
    pixels = bytes(range(45)) + b"\x00"
    start = 8 + 2 + 12 * 12 + 4  # header, then IFD0 with 12 entries, then pixels, bits, resolution
    bits, resolution = start + len(pixels), start + len(pixels) + 6
    short = [(256, 5), (257, 3), (259, 1), (262, 2), (277, 3), (278, 3), (296, 2)]
    entries = [struct.pack(">HHIHH", tag, 3, 1, value, 0) for tag, value in short] + [
        struct.pack(">HHII", 258, 3, 3, bits), struct.pack(">HHII", 273, 4, 1, start),
        struct.pack(">HHII", 279, 4, 1, 45), struct.pack(">HHII", 282, 5, 1, resolution),
        struct.pack(">HHII", 283, 5, 1, resolution)]
    table = struct.pack(">H", 12) + b"".join(sorted(entries)) + b"\x00" * 4
    return b"MM\x00*" + struct.pack(">I", 8) + table + pixels + struct.pack(">HHHII", 8, 8, 8, 72, 1)


ODD_FILES = [
    ("simple-vp8.webp", lambda: generated("WEBP", quality=90)),
    ("simple-vp8l-alpha.webp", lambda: generated("WEBP", "RGBA", lossless=True)),
    ("bare.jpg", lambda: generated("JPEG")),
    ("bare.png", lambda: generated("PNG")),
    ("bare.tif", lambda: generated("TIFF", compression="tiff_lzw")),
    ("motorola.tif", big_endian_tiff),
    ("animated.webp", lambda: (PHOTOS / "edge/rotating-squares.webp").read_bytes()),
    ("cmyk.jpg", lambda: (PHOTOS / "edge/pil_sample_cmyk.jpg").read_bytes()),
    ("16bit.png", lambda: (PHOTOS / "edge/RGB_16__128x128.png").read_bytes()),
]


@pytest.mark.parametrize(("name", "make"), ODD_FILES)
def test_files_without_metadata_and_odd_ones(tmp_path, name, make):
    data = make()
    fmt = sniff(data[:32])
    (tmp_path / f"before-{name}").write_bytes(data)
    new = write(data, fmt)
    (tmp_path / name).write_bytes(new)
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(new)) as b:
        assert (a.size, a.mode, getattr(a, "n_frames", 1)) == (b.size, b.mode, getattr(b, "n_frames", 1))
        assert a.tobytes() == b.tobytes()
        size = b.size
    assert identity_of(tmp_path / name) == identity_of(tmp_path / f"before-{name}")
    assert embed.restore(new, fmt, embed.snapshot(data, fmt)) == data
    found = embed.read_embedded(new, fmt)
    assert found.xmp == packet(KEYWORDS, DESCRIPTION)
    assert found.exif["0th"][0x9C9E] == tuple("sunset;café;日本;beach|sand".encode("utf-16-le") + b"\x00\x00")
    if "iptc" in embed.embedded_fields(fmt):
        assert iptc.keywords_of(found.iptc)[-4:] == KEYWORDS
    if fmt == "WEBP":  # the canvas (VP8X) matches the bitstream and announces EXIF + XMP
        vp8x = new[new.index(b"VP8X") + 8:][:10]
        assert vp8x[0] & 0x0C == 0x0C
        assert (int.from_bytes(vp8x[4:7], "little") + 1, int.from_bytes(vp8x[7:10], "little") + 1) == size


@pytest.mark.parametrize(("name", "make"), ODD_FILES)
def test_exiftool_reads_files_without_metadata_and_odd_ones(tmp_path, exiftool, name, make):
    data = make()
    fmt = sniff(data[:32])
    before, after = tmp_path / f"before-{name}", tmp_path / name
    before.write_bytes(data)
    after.write_bytes(write(data, fmt))
    meta = exiftool.read(after, options=("-a",))[after.resolve()]
    assert exiftool.listed(meta.get("XMP-dc:Subject")) == KEYWORDS and meta.get("IFD0:ImageDescription") == DESCRIPTION
    if "iptc" in embed.embedded_fields(fmt):
        assert exiftool.listed(meta.get("IPTC:Keywords"))[-4:] == KEYWORDS
    checked = warnings(exiftool, before, after)
    assert checked[str(after)] <= checked[str(before)]


def test_rewrites_do_not_grow_and_each_undo_is_exact(tmp_path):
    """Later writes rewrite our own IFD0 at the end instead of appending another; keywords can go."""
    for name in ("real/DSCN0010.jpg", "real/tifftag-photoshop.tiff", "real/denali.webp", "real/Issue_280_dotnet.png"):
        data = (PHOTOS / name).read_bytes()
        fmt = sniff(data[:32])
        first = write(data, fmt, ["a", "b"], "one")
        second = write(first, fmt, ["c"], "two", remove=["a", "b"])
        third = write(second, fmt, ["a", "b"], "one", remove=["c"])
        assert len(third) == len(first), name
        assert embed.restore(second, fmt, embed.snapshot(first, fmt)) == first
        assert embed.restore(third, fmt, embed.snapshot(second, fmt)) == second
        assert embed.restore(third, fmt, embed.snapshot(data, fmt)) == data
        if "iptc" in embed.embedded_fields(fmt):
            current = iptc.keywords_of(embed.read_embedded(second, fmt).iptc)
            assert "c" in current and "a" not in current and "b" not in current
    with pytest.raises(WriteBackError, match="image data"):
        embed.restore(generated("JPEG"), "JPEG", embed.snapshot((PHOTOS / "real/jolla.jpg").read_bytes(), "JPEG"))


def test_mpo_preview_still_found_when_segments_before_it_change(tmp_path, exiftool):
    """MPF offsets are relative to the MPF segment: anything we add after it must move them."""
    data = (PHOTOS / "real/Panasonic_Lumix_DMC-LX7.jpg").read_bytes()
    segments, sos = embed._jpeg_head(data)
    mpf = next(s for s in segments if s[4:8] == b"MPF\x00")
    moved = embed._fix_mpf(segments, [mpf] + [s for s in segments if s is not mpf])  # MPF first, then EXIF
    paths = {"original": data, "moved": data[:2] + b"".join(moved) + data[sos:]}
    paths["written"] = write(paths["moved"], "JPEG")  # XMP/IPTC land after EXIF, so after MPF
    previews = {}
    for name, content in paths.items():
        (tmp_path / f"{name}.jpg").write_bytes(content)
        previews[name] = exiftool.run("-b", "-MPImage2:PreviewImage", tmp_path / f"{name}.jpg").stdout
    assert len(previews["original"]) == 718934
    assert previews["moved"] == previews["written"] == previews["original"]


def test_xmp_too_big_for_one_jpeg_segment():
    data = (PHOTOS / "real/landscape_1.jpg").read_bytes()
    with pytest.raises(WriteBackError, match="extended XMP"):
        embed.write_embedded(data, "JPEG", xmp=b" " * 65503, iptc=None, keywords=[], description=None)
    assert embed.write_embedded(data, "JPEG", xmp=None, iptc=None, keywords=[], description=None) is data


# -- IPTC ----------------------------------------------------------------------------------------

def test_keywords_are_cut_on_a_character_boundary():
    iim = iptc.merge_iptc(None, add=["é" * 40, "x" * 63 + "日", "ok"])
    words = iptc.keywords_of(iim)
    assert words == ["é" * 32, "x" * 63, "ok"]
    assert (1, 90, iptc.UTF8) in iptc.parse_iim(iim) and (2, 0, b"\x00\x04") in iptc.parse_iim(iim)
    assert len(iptc.merge_iptc(None, add=[], caption="à" * 1500)) < 2100


def test_merge_keeps_what_it_does_not_touch_and_fixes_latin1():
    """Legacy IIM: no 1:90, Latin-1 text; merged as Latin-1, written as UTF-8, binary left alone."""
    datasets = [(1, 0, b"\x00\x04"), (2, 0, b"\x00\x02"), (2, 80, "José".encode("latin-1")), (2, 25, b"old"),
                (2, 25, "caf\xe9".encode("latin-1")), (2, 120, b"kept"), (2, 202, b"\xff\xd8\x00binary")]
    legacy = b"".join(bytes((0x1C, r, n)) + struct.pack(">H", len(v)) + v for r, n, v in datasets)
    merged = iptc.parse_iim(iptc.merge_iptc(legacy, add=["café", "new"], remove=["old"], caption="ignored"))
    assert (2, 80, "José".encode()) in merged and (2, 202, b"\xff\xd8\x00binary") in merged
    assert [v for r, n, v in merged if (r, n) == (2, 25)] == ["café".encode(), b"new"]
    assert (2, 120, b"kept") in merged and (1, 0, b"\x00\x04") in merged and (2, 0, b"\x00\x02") in merged
    replaced = iptc.parse_iim(iptc.merge_iptc(legacy, add=[], caption="nouveau", replace_caption=True))
    assert (2, 120, "nouveau".encode()) in replaced


def test_long_datasets_round_trip():
    big = bytes(range(256)) * 200  # 51,200 bytes: an extended dataset
    datasets = [(1, 90, iptc.UTF8), (2, 0, b"\x00\x04"), (2, 202, big), (2, 25, b"a")]
    assert iptc.parse_iim(iptc.build_iim(datasets)) == datasets
    assert iptc.parse_iim(iptc.build_iim(datasets) + b"\x00\x00\x00") == datasets  # TIFF LONG padding


@pytest.mark.parametrize("name", ["BlueSquare.jpg", "prairie_falcon.jpg", "Issue_266.jpg", "87_OSError.jpg"])
def test_photoshop_blocks_rebuild_byte_for_byte_and_digest_follows(name):
    segments, _ = embed._jpeg_head((PHOTOS / "real" / name).read_bytes())
    payload = b"".join(s[18:] for s in segments if s[4:18] == iptc.PHOTOSHOP)
    resources = iptc.read_irb(payload)
    assert iptc.build_irb(resources) == payload
    new = iptc.replace_iim(resources, b"\x1c\x02\x19\x00\x01z")
    assert [r.resource_id for r in new if r.resource_id != 0x0404] == \
        [r.resource_id for r in resources if r.resource_id != 0x0404]
    digest = [r.data for r in new if r.resource_id == iptc.DIGEST_RESOURCE]
    assert digest in ([], [hashlib.md5(b"\x1c\x02\x19\x00\x01z").digest()])


def test_exif_with_an_absurd_count_is_refused_without_allocating(tmp_path):
    """A damaged count of billions must not make piexif build a gigantic struct format."""
    import struct

    from catalog.errors import WriteBackError
    from catalog.writeback.embed import read_embedded

    # A minimal EXIF block whose only entry claims 2**31 LONG values.
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHI4s", 270, 4, 2**31, b"\x00\x00\x00\x00") + struct.pack("<I", 0)
    segment = b"Exif\x00\x00" + tiff
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    data = jpeg.getvalue()
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + data[2:]
    with pytest.raises(WriteBackError, match="claims"):
        read_embedded(data, "JPEG")


def test_exif_written_by_piexif_is_written_back(tmp_path):
    """piexif leaves no zero link after the Exif and GPS directories: the count guard once took that for damage."""
    import piexif

    original = PHOTOS / "real" / "DSCN0010.jpg"
    tagged = tmp_path / "piexif.jpg"
    piexif.insert(piexif.dump(piexif.load(str(original))), str(original), str(tagged))
    data = tagged.read_bytes()
    out = embed.write_embedded(data, "JPEG", xmp=None, iptc=None, keywords=["falcon"], description=None)
    assert embed.read_embedded(out, "JPEG").exif["0th"][piexif.ImageIFD.XPKeywords]
    assert identity_of(tagged) == identity_of(original)
