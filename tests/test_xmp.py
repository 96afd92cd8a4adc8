"""XMP merge and sidecars: what we write, exiftool (an independent reader) must read back, and
everything a person or another tool wrote must survive."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from catalog.writeback import xmp
from catalog.errors import WriteBackError
from catalog.writeback.sidecar import sidecar_path, write_sidecar
from catalog.writeback.xmp import find_xmp_packet, read_xmp
from catalog.writeback.xmp_merge import merge_xmp

REAL = Path(__file__).resolve().parents[2] / "shared" / "photos" / "real"
OURS = ("XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList")

# What darktable 4.x writes beside a raw it has edited: a rating, its processing history as
# attributes on rdf:li, a person's keyword and description, and one keyword we wrote earlier.
DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2019:07:04 18:12:33"
   xmp:Rating="4"
   xmpMM:DerivedFrom="IMG_0042.CR2"
   darktable:import_timestamp="63791482612000000"
   darktable:change_timestamp="63791483011000000"
   darktable:export_timestamp="-1"
   darktable:print_timestamp="-1"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4">
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Oma am Strand, Sommer 2019</rdf:li>
    </rdf:Alt>
   </dc:description>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Oma</rdf:li>
     <rdf:li>sunset</rdf:li>
     <rdf:li>darktable|format|cr2</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Familie|Oma</rdf:li>
     <rdf:li>auto|sunset</rdf:li>
     <rdf:li>darktable|format|cr2</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="rawprepare"
      darktable:enabled="1"
      darktable:modversion="1"
      darktable:params="0000000000000000000000000000000000020000ff3f0000"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz08eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGCg="/>
     <rdf:li
      darktable:num="1"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="00000000000080b9a6999f3f0000484200000000"
      darktable:multi_name="&lt;mask &amp; tone&gt;"
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz08eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGCg="/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
""".encode()


def xmp_read(exiftool, *paths: Path) -> list[dict]:
    """What exiftool reads of these files' XMP (one process for all), with group-qualified names such as
    XMP-dc:Subject, plus its verdict on each file's structure (ExifTool:Validate)."""
    found = exiftool.read(*paths, options=("-XMP:all", "-validate"))
    assert list(found) == [p.resolve() for p in paths]
    return [{k: v for k, v in f.items() if k != "SourceFile"} for f in found.values()]


def not_ours(found: dict) -> dict:
    return {k: v for k, v in found.items() if k.startswith("XMP-") and k not in OURS}


def merged_sidecar(tmp_path: Path, existing: bytes | None, **kwargs) -> tuple[Path, bytes]:
    kwargs.setdefault("remove", [])
    kwargs.setdefault("description", None)
    kwargs.setdefault("replace_description", False)
    packet = merge_xmp(existing, **kwargs)
    path = tmp_path / "IMG_0042.CR2.xmp"
    write_sidecar(str(path), packet)
    return path, packet


def test_new_sidecar_reads_back_with_exiftool(tmp_path, exiftool):
    keywords = ["beach", "café", "日本", "AC/DC", "R&B <live>", 'say "hi"', "a|b", "Zoë\u0301"]
    path, packet = merged_sidecar(tmp_path, None, add=keywords, description="Strand & <Meer>\nzweite Zeile")
    assert packet.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'.encode())
    assert packet.endswith(b'<?xpacket end="w"?>') and b"<x:xmpmeta" in packet and b"<rdf:RDF" in packet
    [found] = xmp_read(exiftool, path)
    assert found["ExifTool:Validate"] == "OK"
    assert found["XMP-dc:Subject"] == keywords
    assert found["XMP-lr:HierarchicalSubject"] == [f"auto|{k}" for k in keywords]
    assert found["XMP-digiKam:TagsList"] == [f"auto/{k}" for k in keywords]
    assert found["XMP-dc:Description"] == "Strand & <Meer>\nzweite Zeile"
    assert read_xmp(packet) == xmp.XmpFacts(tuple(keywords), tuple(f"auto|{k}" for k in keywords),
                                            tuple(f"auto/{k}" for k in keywords), "Strand & <Meer>\nzweite Zeile")


def test_merge_into_darktable_sidecar_keeps_everything_not_ours(tmp_path, exiftool):
    before_path = tmp_path / "before.xmp"
    before_path.write_bytes(DARKTABLE)
    path, packet = merged_sidecar(tmp_path, DARKTABLE, add=["beach", "Oma"], remove=["sunset"],
                                  description="A beach at dusk", parent="auto")
    before, after = xmp_read(exiftool, before_path, path)
    assert before["XMP-xmp:Rating"] == 4 and len(before["XMP-darktable:History"]) == 2  # exiftool sees them
    assert not_ours(after) == not_ours(before)
    assert after["ExifTool:Validate"] == before["ExifTool:Validate"]  # darktable's own empty masks_history Seq
    assert after["XMP-dc:Subject"] == ["Oma", "darktable|format|cr2", "beach"]  # "Oma" was not doubled
    assert after["XMP-lr:HierarchicalSubject"] == ["Familie|Oma", "darktable|format|cr2", "auto|beach", "auto|Oma"]
    assert exiftool.listed(after["XMP-digiKam:TagsList"]) == ["auto/beach", "auto/Oma"]
    assert after["XMP-dc:Description"] == "Oma am Strand, Sommer 2019"  # the person's description stays
    assert after["XMP-darktable:History"][1]["Multi_name"] == "<mask & tone>"
    assert b'xmlns:darktable="http://darktable.sf.net/"' in packet and b"<darktable:history>" in packet


def test_merge_is_idempotent_byte_for_byte():
    kwargs = dict(add=["beach", "café", "R&B"], remove=["sunset"], description="A beach", replace_description=True)
    for existing in (None, DARKTABLE, find_xmp_packet((REAL / "prairie_falcon.jpg").read_bytes())):
        once = merge_xmp(existing, **kwargs)
        assert merge_xmp(once, **kwargs) == once
        assert merge_xmp(merge_xmp(once, **kwargs), **kwargs) == once


def test_stale_own_keywords_go_and_the_persons_stay():
    first = merge_xmp(DARKTABLE, add=["beach", "sea"], remove=[], description=None, replace_description=False)
    second = merge_xmp(first, add=["beach"], remove=["sea", "sunset"], description=None, replace_description=False)
    facts = read_xmp(second)
    assert facts.subject == ("Oma", "darktable|format|cr2", "beach")
    assert facts.hierarchical == ("Familie|Oma", "darktable|format|cr2", "auto|beach")
    assert facts.tags_list == ("auto/beach",)
    # a person's keyword that happens to equal ours in another case is neither doubled nor removed
    user = merge_xmp(None, add=["Beach"], remove=[], description=None, replace_description=False, parent="x")
    again = merge_xmp(user, add=["beach"], remove=["BEACH"], description=None, replace_description=False)
    assert read_xmp(again).subject == ("Beach",)
    assert read_xmp(again).hierarchical == ("x|Beach", "auto|beach")


def test_description_rules():
    def description(existing, text, replace):
        return read_xmp(merge_xmp(existing, add=[], remove=[], description=text, replace_description=replace))

    assert description(None, "ours", False).description == "ours"  # none yet: ours goes in
    assert description(DARKTABLE, "ours", False).description == "Oma am Strand, Sommer 2019"
    assert description(DARKTABLE, "ours", True).description == "ours"
    assert description(DARKTABLE, None, True).description == "Oma am Strand, Sommer 2019"
    assert description(DARKTABLE, "", True).description == "Oma am Strand, Sommer 2019"
    german = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
              b'<rdf:li xml:lang="de">Am Strand</rdf:li></rdf:Alt></dc:description></rdf:Description>'
              b'</rdf:RDF></x:xmpmeta>')
    assert description(german, "ours", False).description == "Am Strand"
    replaced = merge_xmp(german, add=[], remove=[], description="ours", replace_description=True)
    assert replaced.index(b'xml:lang="x-default">ours<') < replaced.index(b'xml:lang="de">Am Strand<')


def test_attribute_form_and_several_descriptions_are_not_duplicated():
    packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3"/>'
              b'<rdf:Description rdf:about="" xmlns:purl="http://purl.org/dc/elements/1.1/" '
              b'purl:description="old &amp; plain"><!-- kept --><purl:subject><rdf:Bag><rdf:li>Oma</rdf:li>'
              b'</rdf:Bag></purl:subject></rdf:Description></rdf:RDF></x:xmpmeta>')
    merged = merge_xmp(packet, add=["beach"], remove=[], description="new", replace_description=True)
    assert merged.count(b"description") == 2  # one element, opened and closed; the attribute is gone
    assert merged.count(b"<purl:subject>") == 1 and b"<dc:" not in merged  # the file's own prefix stays
    assert b'xmp:Rating="3"' in merged and b"<!-- kept -->" in merged
    facts = read_xmp(merged)
    assert facts.subject == ("Oma", "beach") and facts.description == "new"
    kept = merge_xmp(packet, add=[], remove=[], description="new", replace_description=False)
    assert read_xmp(kept).description == "old & plain" and b'purl:description="old &amp; plain"' in kept


def test_characters_xml_cannot_carry_are_dropped_not_fatal():
    merged = merge_xmp(None, add=["tab\there", "bell\x07", "\x00", "  "], remove=[], description="a\x0bb",
                       replace_description=False)
    facts = read_xmp(merged)
    assert facts.subject == ("tab\there", "bell") and facts.description == "ab"


@pytest.mark.parametrize("name", ["BlueSquare.jpg", "prairie_falcon.jpg"])
def test_real_photo_packets_keep_their_keywords(tmp_path, name, exiftool):
    source = REAL / name
    packet = find_xmp_packet(source.read_bytes())  # read-only: the shared photo is never written
    assert packet is not None and packet.startswith(b"<?xpacket begin") and packet.endswith(b"?>")
    path, merged = merged_sidecar(tmp_path, packet, add=["sky", "raptors"], description="ours")
    original, after = xmp_read(exiftool, source, path)
    assert after["XMP-dc:Subject"] == original["XMP-dc:Subject"] + (
        ["sky"] if "raptors" in original["XMP-dc:Subject"] else ["sky", "raptors"])
    hierarchical = exiftool.listed(original.get("XMP-lr:HierarchicalSubject"))
    assert after["XMP-lr:HierarchicalSubject"] == hierarchical + ["auto|sky", "auto|raptors"]
    assert not_ours(after) == not_ours(original) and after["ExifTool:Validate"] == "OK"
    assert after["XMP-dc:Description"] == original["XMP-dc:Description"]


@pytest.mark.parametrize("bad", [
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF>",
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><unbound:thing/></x:xmpmeta>",
    b"<html><body>not xmp</body></html>",
    b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>',
    b"\x89PNG\r\n\x1a\n garbage",
])
def test_unparseable_packets_raise_value_error(bad):
    with pytest.raises(ValueError, match="XMP"):
        merge_xmp(bad, add=["beach"], remove=[], description=None, replace_description=False)
    with pytest.raises(ValueError):
        read_xmp(bad)


def test_find_xmp_packet():
    assert find_xmp_packet(b"\xff\xd8 no metadata here") is None
    bare = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    assert find_xmp_packet(b"junk" + b'<x:xmpmeta xmlns:x="adobe:ns:meta/">a</x:xmpmeta>' + b"junk") == \
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">a</x:xmpmeta>'
    assert find_xmp_packet(b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>" + bare + b"   <?xpacket end='w'?>x") \
        == b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>" + bare + b"   <?xpacket end='w'?>"
    assert find_xmp_packet(DARKTABLE).startswith(b"<x:xmpmeta") and find_xmp_packet(DARKTABLE).endswith(b"</x:xmpmeta>")


def test_sidecar_paths():
    assert sidecar_path("/lib/2019/IMG_0042.JPG") == "/lib/2019/IMG_0042.JPG.xmp"
    assert sidecar_path("/lib/2019/IMG_0042.JPG", style="base") == "/lib/2019/IMG_0042.xmp"
    assert sidecar_path("/lib/2019/Paris trip/IMG.CR2", sidecar_dir="/side", root="/lib/") == \
        "/side/2019/Paris trip/IMG.CR2.xmp"
    assert sidecar_path("/lib/a/IMG.CR2", style="base", sidecar_dir="/side", root="/lib") == "/side/a/IMG.xmp"
    latin1 = os.fsdecode(b"/lib/caf\xe9/\xe9t\xe9.jpg")
    assert os.fsencode(sidecar_path(latin1)) == b"/lib/caf\xe9/\xe9t\xe9.jpg.xmp"
    assert os.fsencode(sidecar_path(latin1, sidecar_dir="/side", root="/lib")) == b"/side/caf\xe9/\xe9t\xe9.jpg.xmp"
    with pytest.raises(ValueError, match="not inside"):
        sidecar_path("/elsewhere/IMG.JPG", sidecar_dir="/side", root="/lib")
    with pytest.raises(ValueError, match="root"):
        sidecar_path("/lib/IMG.JPG", sidecar_dir="/side")
    with pytest.raises(ValueError, match="style"):
        sidecar_path("/lib/IMG.JPG", style="lightroom")


def test_write_sidecar_mirror_tree_and_non_utf8_name(tmp_path):
    photo = os.fsdecode(os.fsencode(tmp_path / "lib" / "2019") + b"/caf\xe9.jpg")
    target = sidecar_path(photo, sidecar_dir=str(tmp_path / "side"), root=str(tmp_path / "lib"))
    write_sidecar(target, b"packet")
    assert os.listdir(os.fsencode(tmp_path / "side" / "2019")) == [b"caf\xe9.jpg.xmp"]
    assert Path(target).read_bytes() == b"packet"


def test_write_sidecar_keeps_permissions_and_honours_umask(tmp_path):
    existing = tmp_path / "IMG.JPG.xmp"
    existing.write_bytes(b"old")
    existing.chmod(0o640)
    write_sidecar(str(existing), b"new")
    assert existing.read_bytes() == b"new" and stat.S_IMODE(existing.stat().st_mode) == 0o640
    old = os.umask(0o027)
    try:
        write_sidecar(str(tmp_path / "fresh.xmp"), b"new")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.xmp").stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["IMG.JPG.xmp", "fresh.xmp"]


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    blocked = tmp_path / "IMG.JPG.xmp"  # os.replace cannot put a file over a non-empty folder
    blocked.mkdir()
    (blocked / "inside").write_bytes(b"x")
    with pytest.raises(WriteBackError, match="not a regular file"):  # never replaced, never followed
        write_sidecar(str(blocked), b"packet")
    assert os.listdir(tmp_path) == ["IMG.JPG.xmp"] and os.listdir(blocked) == ["inside"]

    target = tmp_path / "other.xmp"
    target.write_bytes(b"old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_sidecar(str(target), b"new")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["IMG.JPG.xmp", "other.xmp"]


@pytest.mark.parametrize("name", ["DSCN0010.jpg", "Pentax_K10D.jpg"])
def test_sidecars_exiftool_wrote_survive_a_merge(tmp_path, name, exiftool):
    """A sidecar as exiftool-based tools leave it (every tag it can map to XMP) loses nothing."""
    theirs = tmp_path / "theirs.xmp"
    exiftool.run("-q", "-o", theirs, "-tagsfromfile", REAL / name, "-all:all")
    path, _ = merged_sidecar(tmp_path, theirs.read_bytes(), add=["sky"], description="ours", parent="Machine|auto")
    before, after = xmp_read(exiftool, theirs, path)
    assert not_ours(after) == not_ours(before) | {"XMP-dc:Description": before.get("XMP-dc:Description", "ours")}
    assert exiftool.listed(after["XMP-dc:Subject"]) == exiftool.listed(before.get("XMP-dc:Subject")) + ["sky"]
    assert exiftool.listed(after["XMP-lr:HierarchicalSubject"])[-1] == "Machine|auto|sky"
    assert exiftool.listed(after["XMP-digiKam:TagsList"]) == ["Machine/auto/sky"]


def test_bare_rdf_sidecar_and_empty_file_become_valid_packets(tmp_path, exiftool):
    bare = (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="2"/></rdf:RDF>')
    paths = []
    for n, existing in enumerate((bare, b"", b"  \n")):
        packet = merge_xmp(existing, add=["beach"], remove=[], description="ours", replace_description=False)
        assert packet.count(b"<x:xmpmeta") == 1
        paths.append(tmp_path / f"{n}.xmp")
        write_sidecar(str(paths[-1]), packet)
    for n, found in enumerate(xmp_read(exiftool, *paths)):
        assert found["ExifTool:Validate"] == "OK"
        assert found["XMP-dc:Subject"] == ["beach"] and found["XMP-dc:Description"] == "ours"
        assert found.get("XMP-xmp:Rating") == (2 if n == 0 else None)


def test_deep_nesting_is_refused_before_anything_recurses():
    """1,000 nested elements raised RecursionError (which aborted the whole run): now a ValueError."""
    deep = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="">' + b"<a>" * 1000 + b"</a>" * 1000
            + b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    for call in (lambda: read_xmp(deep),
                 lambda: merge_xmp(deep, add=["x"], remove=[], description=None, replace_description=False)):
        with pytest.raises(ValueError, match="deeper than"):
            call()
    shallow = deep.replace(b"<a>" * 1000 + b"</a>" * 1000, b"<a>" * 90 + b"</a>" * 90)
    assert b"<rdf:li>x</rdf:li>" in merge_xmp(shallow, add=["x"], remove=[], description=None,
                                              replace_description=False)


def test_oversized_packets_are_refused_unparsed():
    huge = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b" " * xmp.MAX_BYTES + b"</x:xmpmeta>"
    with pytest.raises(ValueError, match="limit"):
        read_xmp(huge)
