#!/usr/bin/env python3
"""Upload preparation benchmark: `catalog.prepare.prepare_upload` against plain Pillow.

Three generated JPEGs (made once, in a temporary directory):

  1. a 24 MP (6000 x 4000) photo-like JPEG over 10,000,000 bytes (a gradient with noise,
     quality 95): too big to send, so prepare_upload re-encodes it. The baseline is what a
     plain Pillow script does to produce the same output: Image.open -> draft -> resize to the
     size prepare produced -> save at the quality prepare used (read from the output's
     quantisation tables). Goal: prepare_upload at most 1.3 x the baseline.
  2. a ~2 MB upright JPEG without GPS: sent as it is (reported, next to reading the file).
  3. the same photo with an EXIF GPS position: GPS stripped losslessly (reported, next to
     reading the file).

Every figure is the median of N runs, catalog and baseline interleaved, after one untimed
warm-up of each. It prints a markdown table and rewrites the `## Upload preparation` section
of docs/benchmarks.md (not for --quick runs, nor with --no-doc).
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import piexif  # noqa: E402
from PIL import Image  # noqa: E402

from catalog.prepare import prepare_upload  # noqa: E402
from common import (MEASURE_HEAD, add_common_options, bullets, command_line, exit_status,  # noqa: E402
                    interleaved, load_average, machine, markdown_table, print_report, scratch_dir,
                    write_section)

SECTION = "## Upload preparation"
GOAL_RATIO = 1.3
LIMIT = 10_000_000  # prepare_upload's default max_upload_bytes
MAX_EDGE = 2048  # for the extra shrink case (analysis.max_edge)

# libjpeg's standard tables (ITU T.81 Annex K), in natural order, to read a JPEG's quality back.
STD_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]


def scaled_table(quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - quality * 2
    return [min(255, max(1, (v * scale + 50) // 100)) for v in STD_LUMA]


def jpeg_quality(data: bytes) -> int | None:
    """The libjpeg quality whose luminance table this JPEG uses (None if none matches)."""
    with Image.open(io.BytesIO(data)) as im:
        tables = getattr(im, "quantization", None) or {}
    if 0 not in tables:
        return None
    table = sorted(tables[0])  # Pillow may give zigzag order; compare as multisets
    for q in range(100, 0, -1):
        if sorted(scaled_table(q)) == table:
            return q
    return None


def photo_like(width: int, height: int, sigma: float) -> Image.Image:
    """Smooth gradients plus Gaussian noise: compresses like a detailed photo."""
    base = Image.linear_gradient("L").resize((width, height))
    grad = Image.merge("RGB", (base, base.rotate(90).resize((width, height)),
                               Image.radial_gradient("L").resize((width, height))))
    noise = Image.merge("RGB", [Image.effect_noise((width, height), sigma) for _ in range(3)])
    return Image.blend(grad, noise, 0.5)


def make_files(work: Path) -> dict[str, Path]:
    big = work / "big-24mp.jpg"
    photo_like(6000, 4000, 20).save(big, "JPEG", quality=95)
    if big.stat().st_size <= LIMIT:  # make sure the 24 MP file really is over the limit
        photo_like(6000, 4000, 30).save(big, "JPEG", quality=98)
    small = photo_like(2400, 1700, 20)
    plain = work / "asis-2mb.jpg"
    small.save(plain, "JPEG", quality=95)
    gps = {piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0), piexif.GPSIFD.GPSLatitudeRef: b"N",
           piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (2400, 100)), piexif.GPSIFD.GPSLongitudeRef: b"E",
           piexif.GPSIFD.GPSLongitude: ((2, 1), (17, 1), (4000, 100))}
    exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"EOS R6",
                                piexif.ImageIFD.Orientation: 1},
                        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2019:07:04 18:30:00"}, "GPS": gps})
    located = work / "gps-2mb.jpg"
    small.save(located, "JPEG", quality=95, exif=exif)
    return {"big": big, "plain": plain, "gps": located}


def baseline_resave(path: Path, size: tuple[int, int], quality: int) -> bytes:
    """What a plain Pillow script does: open, draft, resize to the output size, save."""
    with Image.open(path) as im:
        im.draft("RGB", size)
        img = im.convert("RGB") if im.mode != "RGB" else im
        img.load()
        if img.size != size:  # resizing to the size it already has would only copy pixels
            img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def pillow_facts() -> dict:
    import PIL
    from PIL import features

    turbo = features.check_feature("libjpeg_turbo")
    return {"pillow": PIL.__version__, "jpeg": f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
            if turbo else "libjpeg"}


def say(msg: str) -> None:
    print(f"[prepare] {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="timed runs of each (15; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (3 runs), docs untouched")
    add_common_options(parser, "where the generated JPEGs go", "keep the generated JPEGs")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 15)
    command = command_line("prepare.py", argv)
    info = {**machine(), **pillow_facts()}
    load_start = load_average()

    with scratch_dir(args, "prepare-", say) as work:
        say("generating the test JPEGs")
        files = make_files(work)
        sizes = {k: p.stat().st_size for k, p in files.items()}
        dims = {k: Image.open(p).size for k, p in files.items()}

        # 1. the re-encode path
        upload = prepare_upload(files["big"])
        out_size = Image.open(io.BytesIO(upload.data)).size
        quality = jpeg_quality(upload.data)
        if quality is None:
            raise SystemExit("cannot read the quality of prepare_upload's output back")
        base_bytes = baseline_resave(files["big"], out_size, quality)
        say(f"24 MP: {sizes['big']:,} bytes -> {len(upload.data):,} bytes, {out_size[0]}x{out_size[1]}, "
            f"quality {quality}; baseline output {len(base_bytes):,} bytes")
        t_cat, t_base = interleaved(lambda: prepare_upload(files["big"]),
                                    lambda: baseline_resave(files["big"], out_size, quality), runs)
        big_cat, big_base = statistics.median(t_cat), statistics.median(t_base)

        # 1b. the same file with `max_edge` set, so the copy is shrunk (draft + resize really work)
        small_up = prepare_upload(files["big"], max_edge=MAX_EDGE)
        small_size = Image.open(io.BytesIO(small_up.data)).size
        small_q = jpeg_quality(small_up.data)
        t_cat2, t_base2 = interleaved(lambda: prepare_upload(files["big"], max_edge=MAX_EDGE),
                                      lambda: baseline_resave(files["big"], small_size, small_q), runs)
        edge_cat, edge_base = statistics.median(t_cat2), statistics.median(t_base2)
        edge_base_bytes = len(baseline_resave(files["big"], small_size, small_q))

        # 2. sent as it is, 3. GPS stripped losslessly
        asis = prepare_upload(files["plain"])
        assert asis.data == files["plain"].read_bytes(), "the plain JPEG was expected to go as it is"
        stripped = prepare_upload(files["gps"])
        assert b"GPS" not in stripped.data[:4096] or piexif.load(stripped.data)["GPS"] == {}, "GPS was not stripped"
        assert len(stripped.data) < sizes["gps"]
        t_asis, t_read1 = interleaved(lambda: prepare_upload(files["plain"]), lambda: files["plain"].read_bytes(), runs)
        t_gps, t_read2 = interleaved(lambda: prepare_upload(files["gps"]), lambda: files["gps"].read_bytes(), runs)
        asis_cat, asis_read = statistics.median(t_asis), statistics.median(t_read1)
        gps_cat, gps_read = statistics.median(t_gps), statistics.median(t_read2)

    ratio = big_cat / big_base
    rows = [
        (f"24 MP JPEG ({sizes['big'] / 1e6:.1f} MB) -> upload copy {out_size[0]}x{out_size[1]} q{quality}",
         ms(big_cat), f"{ms(big_base)} (Pillow open, draft, resize, save)", f"{ratio:.2f}x",
         f"<= {GOAL_RATIO}x", "pass" if ratio <= GOAL_RATIO else "**FAIL**"),
        (f"same file with `max_edge = {MAX_EDGE}` -> {small_size[0]}x{small_size[1]} q{small_q}", ms(edge_cat),
         f"{ms(edge_base)} (Pillow open, draft, resize, save)", f"{edge_cat / edge_base:.2f}x",
         f"<= {GOAL_RATIO}x", "pass" if edge_cat / edge_base <= GOAL_RATIO else "**FAIL**"),
        (f"{sizes['plain'] / 1e6:.1f} MB upright JPEG, no GPS -> sent as it is", ms(asis_cat),
         f"{ms(asis_read)} (read the file)", f"{asis_cat / asis_read:.1f}x", "(reported)", ""),
        (f"{sizes['gps'] / 1e6:.1f} MB JPEG with GPS -> GPS stripped losslessly", ms(gps_cat),
         f"{ms(gps_read)} (read the file)", f"{gps_cat / gps_read:.1f}x", "(reported)", ""),
    ]
    missed = [r[0] for r in rows if r[-1] == "**FAIL**"]
    table = markdown_table(MEASURE_HEAD, rows)
    details = [
        f"24 MP input: {dims['big'][0]}x{dims['big'][1]}, {sizes['big']:,} bytes (over the {LIMIT:,}-byte limit); "
        f"prepare_upload's copy: {len(upload.data):,} bytes, {out_size[0]}x{out_size[1]}, quality {quality} "
        f"(read back from its quantisation tables); the baseline's: {len(base_bytes):,} bytes",
        f"with `max_edge = {MAX_EDGE}`: prepare_upload's copy {len(small_up.data):,} bytes, the baseline's "
        f"{edge_base_bytes:,} bytes (both decode at 1/2 scale through `draft`, then LANCZOS to {small_size[0]}x{small_size[1]})",
        f"as-is input: {dims['plain'][0]}x{dims['plain'][1]}, {sizes['plain']:,} bytes; GPS input: the same pixels with "
        f"EXIF make/model/date and a GPS position, {sizes['gps']:,} bytes -> {len(stripped.data):,} bytes",
        f"times: median of {runs} runs each, catalog and baseline interleaved, after one warm-up each; "
        f"24 MP spread catalog {ms(min(t_cat))}-{ms(max(t_cat))}, baseline {ms(min(t_base))}-{ms(max(t_base))}; "
        f"with max_edge catalog {ms(min(t_cat2))}-{ms(max(t_cat2))}, baseline {ms(min(t_base2))}-{ms(max(t_base2))}",
    ]
    print_report(table, details)
    if not args.quick and not args.no_doc:
        today = datetime.date.today().isoformat()
        load = load_average()
        section = f"""{SECTION}

Measured {today} by `bench/prepare.py`: `catalog.prepare.prepare_upload` (default settings,
`max_upload_bytes = 10,000,000`) on generated JPEGs, in-process, against what a plain Pillow script
does to make the same upload copy: `Image.open` -> `draft` -> `resize` to the output size (skipped when
the size is unchanged) -> `save` at the same quality (read back from prepare's output).

{table}

{bullets(details)}
- What prepare does on top of the baseline for the 24 MP file: reads the EXIF, walks the JPEG segments
  (the lossless path is tried first, and is too big), predicts the quality from a 512x512 mosaic of the
  image, then one full encode.
- Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, Pillow {info['pillow']} with
  {info['jpeg']}, {info['os']}; 1-minute load average {load_start:.1f} at the start, {load:.1f} at the end
  (other work on the machine; the spread above shows how much it moved the figures).
"""
        write_section(args.doc, SECTION, section, command, say)
    return exit_status(missed, args.strict, say)


if __name__ == "__main__":
    sys.exit(main())
