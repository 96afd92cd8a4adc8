"""A synthetic catalogue at any size, built cheaply through the real schema for the query benchmarks.

`build_catalogue` opens the database with `catalog.db.open_db` (every migration), then fills it
in one transaction with the build-only PRAGMAs (no journal, no fsync, a big cache; WAL again
afterwards, as the catalog leaves it): `photos` with facts, analysis results drawn Zipf-style
from a vocabulary of a few thousand words (about 92 % analysed, the rest pending or failed) and
their `analyses` rows, fingerprint columns (a few undecodable), `files` in folders like
`2019/Lisbon trip` (~5 % of photos with a second copy, ~1 % of files missing, some moved, a
few unreadable), the search text through the real `catalog.db.refresh_search_text` (whose
inserts fire the FTS5 triggers), the named colours (`photo_colors`) by the real colour rule,
near-duplicate groups and bursts in `photo_groups` as `refresh_groups` writes them (about 3 %
and 2 % of photos), and a year of nightly `runs`.
"""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path

from catalog import db as catalog_db

# Tag words a photo analyser really returns, most frequent first (rank drives the Zipf weight).
COMMON = """people outdoor sky nature tree water cloud person building city beach grass portrait
street ocean sea sunset landscape mountain architecture night light road travel summer blue green
family child smile food dog car flower garden river lake snow winter forest sand wave sunrise
house window indoor table friends group party evening cat animal bird field hill rock park boat
bridge church tower market cafe restaurant wedding birthday dress festival music concert museum
statue square harbour coast cliff island palm reflection shadow silhouette golden hour autumn leaves
spring blossom rain fog storm lighthouse pier dune sailing surf swimming pool hiking trail camping
tent fire bicycle train station airport plane holiday vacation baby toddler grandmother grandfather
couple kiss hug dancing game football playground school graduation christmas tree lights cake
candles gift dinner breakfast coffee wine beer pizza pasta bread fruit vegetables kitchen living
room bedroom sofa lamp bookshelf painting art graffiti wall door stairs alley village farm cow horse
sheep vineyard meadow waterfall canyon desert valley glacier volcano castle ruins temple mosque
monument fountain plaza skyline skyscraper neon traffic bus taxi crowd selfie close-up macro
texture pattern abstract minimal colorful vibrant dark bright warm cool calm dramatic moody""".split()
SCENES = ("outdoor", "indoor", "abstract")
MOODS = ("peaceful", "joyful", "calm", "dramatic", "playful", "romantic", "nostalgic", "energetic")
OBJECTS = ("tree", "person", "building", "cloud", "water", "grass", "window", "table", "road", "rock",
           "car", "dog", "boat", "chair", "bottle", "cup", "bicycle", "umbrella", "bench", "lamp")
CAMERAS = (("Apple", "iPhone 12"), ("Apple", "iPhone 8"), ("Apple", "iPhone 14 Pro"), ("Canon", "EOS R6"),
           ("Canon", "EOS 5D Mark IV"), ("NIKON CORPORATION", "NIKON D750"), ("SONY", "ILCE-7M3"),
           ("FUJIFILM", "X-T3"), ("samsung", "SM-G991B"), ("Google", "Pixel 6"), ("OLYMPUS", "E-M10"))
EVENTS = ("trip", "holiday", "weekend", "wedding", "birthday", "visit", "hike", "party", "summer",
          "christmas", "easter", "day out", "vacation", "photos", "walk")
PLACES = """Paris Lisbon Porto Rome Venice Florence Naples Barcelona Madrid Seville Valencia Berlin
Munich Hamburg Vienna Prague Budapest Krakow Warsaw Amsterdam Rotterdam Brussels Bruges Ghent London
Edinburgh Dublin Galway Cornwall Brittany Normandy Provence Nice Marseille Lyon Bordeaux Geneva
Zurich Lucerne Innsbruck Salzburg Dolomites Tuscany Sicily Sardinia Corsica Crete Athens Santorini
Istanbul Cappadocia Marrakech Cairo Lapland Oslo Bergen Stockholm Copenhagen Helsinki Tallinn Riga
Reykjavik Tokyo Kyoto Osaka Seoul Bangkok Bali Sydney Melbourne Auckland Queenstown Vancouver Toronto
Montreal Boston Chicago Seattle Yosemite Hawaii Mexico Havana Lima Cusco Patagonia""".split()
SYLLABLES = ("ka", "lo", "mi", "re", "ta", "su", "no", "vi", "be", "ra", "to", "pe", "ni", "go", "da",
             "fi", "sa", "mo", "le", "ku", "zo", "ha", "ri", "po", "de", "ma", "ti", "lu", "ne", "so")
NAMED_TONES = ("#f57c00", "#ff8f3a", "#e86a1c", "#d32f2f", "#fbc02d", "#1976d2", "#1a237e", "#388e3c",
               "#f5f5f5", "#111111", "#808080", "#6d4c41", "#e8d8b0", "#00897b", "#7b1fa2", "#ec407a")


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Real photo words first, then made-up words (never colliding) up to `size`."""
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_picker(words: list[str], rng: random.Random, exponent: float = 1.0):
    weights = [1 / (rank + 1) ** exponent for rank in range(len(words))]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)

    def pick(k: int) -> list[str]:
        return list(dict.fromkeys(rng.choices(words, cum_weights=cum, k=k)))

    return pick


def random_color(rng: random.Random) -> str:
    if rng.random() < 0.15:  # some palettes hold a named tone exactly, as a quantiser would
        return rng.choice(NAMED_TONES)
    # quantised to 4,096 colours, as a palette extractor's are (and the named-colour memo stays small)
    return "#%02x%02x%02x" % (rng.randrange(16) * 17, rng.randrange(16) * 17, rng.randrange(16) * 17)


def colour_names(palette: list[str], memo: dict) -> list[tuple[str, float]]:
    """catalog.colors.named_matches of a palette, from each colour's own (memoised): the nearest wins."""
    from catalog.colors import named_matches

    best: dict[str, float] = {}
    for colour in palette:
        if colour not in memo:
            memo[colour] = named_matches([colour])
        for name, d in memo[colour]:
            best[name] = min(d, best.get(name, d))
    return list(best.items())



def _run_rows(now: str, count: int) -> list[tuple]:
    """A year of nightly scans and analyses, as the runs table keeps them."""
    rows = []
    for i in range(count):
        command = ("scan", "analyze", "run")[i % 3]
        counts = {"new": 40, "unchanged": 999_000, "analysed": 38, "reused": 2, "failed": 0,
                  "tokens_used": 45_000, "requests": 38, "rate_limited": 0, "seconds": 12.5}
        rows.append((command, now, now, "ok", None, json.dumps(counts)))
    return rows


def _groups(ids: list[str], rng: random.Random) -> tuple[list[tuple], int, int]:
    """photo_groups rows: near groups of 2-4 over ~3 % of photos, bursts of 3-8 over ~2 %."""
    order = ids[:]
    rng.shuffle(order)
    rows, at, near, bursts = [], 0, 0, 0
    while at < len(order) * 0.03:
        size = rng.choice((2, 2, 2, 3, 4))
        near += 1
        rows += [("near", near, pos, pid, None if pos == 0 else rng.choice(("copy", "edit")))
                 for pos, pid in enumerate(order[at:at + size])]
        at += size
    stop = at + len(order) * 0.02
    while at < stop:
        size = rng.randint(3, 8)
        bursts += 1
        rows += [("burst", bursts, pos, pid, None) for pos, pid in enumerate(order[at:at + size])]
        at += size
    return rows, near, bursts


def build_catalogue(path: Path, photos: int, vocab_size: int, seed: int = 2024) -> dict:
    """A catalogue with `photos` photos and their files, groups and runs; returns facts about it."""
    rng = random.Random(seed)
    words = vocabulary(vocab_size, rng)
    pick = zipf_picker(words, rng)
    db = catalog_db.open_db(path)
    conn = db.conn
    for pragma in ("journal_mode=DELETE", "journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000",
                   "temp_store=MEMORY"):  # for the build only: a crash here just means building again
        conn.execute(f"PRAGMA {pragma}")
    now = catalog_db.now()
    root = "/volume1/photos"
    photo_rows, analysis_rows, file_rows, colour_rows = [], [], [], []
    grouped, memo, analysed, files_written = [], {}, 0, [0]
    # Identities in ascending order: every index keyed on photos.id grows at its end, so a build
    # far bigger than the page cache does not rewrite random pages (a million random ids took
    # over 20 minutes on a loaded machine; the catalogue the scan makes holds them in random order).
    ids = iter(sorted(rng.getrandbits(256) for _ in range(photos)))

    def flush() -> None:
        """Write the rows made so far (inside the build's one transaction) and start afresh."""
        conn.executemany(
            "INSERT INTO photos (id, format, width, height, orientation, taken_at, camera_make, camera_model, "
            "gps_lat, gps_lon, first_seen, phash, aspect, tone, detail, fingerprint_error, analysis_status, "
            "analysis_error, tags, description, objects, dominant_color, palette, scene, mood, provider, model, "
            "tokens_used, analysed_at, raw_response) VALUES (" + ",".join("?" * 30) + ")", photo_rows)
        conn.executemany(
            "INSERT INTO analyses (photo_id, source, kind, tags, description, objects, dominant_color, palette, "
            "scene, mood, provider, model, produced_at, tokens_used, raw) VALUES (" + ",".join("?" * 15) + ")",
            analysis_rows)
        conn.executemany(
            "INSERT INTO files (path, root, folder, name, photo_id, size, mtime_ns, status, error, error_kind, "
            "first_seen, last_seen, missing_since, moved_to) "
            "VALUES (?,?,?,?,?,?,1700000000000000000,?,?,?,?,?,?,?)",
            [(*r[:9], now, now, *r[9:]) for r in file_rows])
        catalog_db.refresh_search_text(db, [r[0] for r in photo_rows])
        conn.executemany("INSERT INTO photo_colors (name, photo_id, distance) VALUES (?, ?, ?)", colour_rows)
        files_written[0] += len(file_rows)
        for rows in (photo_rows, analysis_rows, file_rows, colour_rows):
            rows.clear()

    conn.execute("BEGIN")
    folder, in_folder, folder_size, n_folders = "", 0, 0, 0
    status_counts = {"ok": 0, "missing": 0, "moved": 0, "error": 0}
    for i in range(photos):
        if in_folder >= folder_size:
            year = rng.randint(2005, 2024)
            folder = f"{year}/{rng.choice(PLACES)} {rng.choice(EVENTS)}"
            if rng.random() < 0.2:
                folder += f" {rng.randint(1, 9)}"
            in_folder, folder_size, n_folders = 0, rng.randint(40, 400), n_folders + 1
        in_folder += 1
        year = int(folder[:4])
        taken = datetime.datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                  rng.randint(0, 59), rng.randint(0, 59)).isoformat()
        make, model = rng.choice(CAMERAS)
        width, height = rng.choice(((4032, 3024), (6000, 4000), (3024, 4032), (4000, 4000), (1920, 1080)))
        pid = "%064x" % next(ids)
        gps = rng.uniform(-60, 70) if rng.random() < 0.3 else None
        if rng.random() < 0.003:  # undecodable pixels behind a sound header
            fingerprint = (None, None, None, None, "cannot decode: truncated scan data")
        else:
            fingerprint = (rng.getrandbits(64) - (1 << 63), width / height, rng.getrandbits(24),
                           rng.randbytes(256), None)
        facts = (pid, "JPEG", width, height, rng.choice((1, 1, 1, 6)), taken, make, model, gps,
                 None if gps is None else rng.uniform(-120, 150), now, *fingerprint)
        state = rng.random()
        if state < 0.92:
            tags = pick(rng.randint(4, 10))
            objects = list(dict.fromkeys(rng.choice(OBJECTS) for _ in range(rng.randint(1, 4))))
            extra = pick(3)
            description = f"A {rng.choice(('photo', 'picture', 'shot', 'view'))} of {' and '.join(tags[:2])} " \
                          f"with {', '.join(extra)}"
            palette = list(dict.fromkeys(random_color(rng) for _ in range(rng.randint(3, 5))))
            scene, mood, tokens = rng.choice(SCENES), rng.choice(MOODS), rng.randint(900, 1500)
            raw = json.dumps({"success": True, "data": {  # the answer as analyze stores it (~0.7 KB)
                "tags": tags, "description": description, "objects": objects,
                "colors": {"dominant": palette[0], "palette": palette}, "scene": scene, "mood": mood,
                "safe_search": {"adult": "VERY_UNLIKELY", "violence": "VERY_UNLIKELY"},
                "dimensions": {"width": width, "height": height, "orientation": "landscape"}},
                "meta": {"tokens_used": tokens, "processing_time_ms": rng.randint(600, 2500),
                         "model": "imgtags-v1"}})
            analysis = ("done", None, json.dumps(tags), description, json.dumps(objects), palette[0],
                        json.dumps(palette), scene, mood, "imgtags", "imgtags-v1", tokens, now, raw)
            analysis_rows.append((pid, "imgtags", "backend", *analysis[2:9], "imgtags", "imgtags-v1", now,
                                  tokens, raw))
            analysed += 1
            colour_rows += [(name, pid, d) for name, d in colour_names(palette, memo)]
        elif state < 0.99:
            analysis = ("pending",) + (None,) * 13
        else:
            analysis = ("failed", "HTTP 422: unsupported image") + (None,) * 12
        photo_rows.append(facts + analysis)
        if fingerprint[0] is not None:
            grouped.append(pid)
        name = f"IMG_{i:06d}.jpg"
        status = "ok" if rng.random() > 0.012 else rng.choice(("missing", "missing", "moved"))
        status_counts[status] += 1
        place = f"{root}/{folder}/{name}"
        file_rows.append((place, root, f"{root}/{folder}", name, pid, rng.randint(1_500_000, 9_000_000), status,
                          None, None, now if status == "missing" else None,
                          f"{root}/sorted/{folder}/{name}" if status == "moved" else None))
        if status == "moved":
            status_counts["ok"] += 1
            file_rows.append((f"{root}/sorted/{folder}/{name}", root, f"{root}/sorted/{folder}", name, pid,
                              file_rows[-1][5], "ok", None, None, None, None))
        if rng.random() < 0.05:  # a second copy elsewhere
            status_counts["ok"] += 1
            file_rows.append((f"{root}/backup/{folder}/{name}", root, f"{root}/backup/{folder}", name, pid,
                              rng.randint(1_500_000, 9_000_000), "ok", None, None, None, None))
        if rng.random() < 0.002:  # a file the scan could not catalogue
            status_counts["error"] += 1
            file_rows.append((f"{root}/{folder}/broken_{i:06d}.jpg", root, f"{root}/{folder}", f"broken_{i:06d}.jpg",
                              None, rng.randint(0, 9000), "error", "truncated JPEG", "truncated", None, None))
        if len(photo_rows) >= 20_000:
            flush()
    flush()
    group_rows, near, bursts = _groups(grouped, rng)
    conn.executemany("INSERT INTO photo_groups (kind, group_no, position, photo_id, relation) "
                     "VALUES (?, ?, ?, ?, ?)", group_rows)
    conn.executemany("INSERT INTO runs (command, started_at, finished_at, status, message, counts) "
                     "VALUES (?, ?, ?, ?, ?, ?)", _run_rows(now, 1000))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    db.close()
    return {"photos": photos, "files": files_written[0], "folders": n_folders, "vocabulary": len(words),
            "analysed": analysed, "near_groups": near, "bursts": bursts, **status_counts}
