"""Search: a user's query -> an FTS5 MATCH expression + filters + bm25 ranking.

The query language is small and forgiving: words are AND-ed, "quoted phrases"
stay together, `-word` excludes, `OR` between two terms offers a choice,
`sun*` matches prefixes, and `place:rome` (or `place:"new york"`) looks only at
the place names the sources found (the CLI's `--place` adds that term). Everything
else a user types is quoted before it reaches FTS5, so `NEAR(`, `"` or SQL
fragments are just text. Imports stay light (sqlite3 and the colour maths), so
`catalog search` starts fast.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import re
import sqlite3
from dataclasses import dataclass

from catalog.colors import COLOR_MATCH, HEX, canonical_name, delta_e, hex_to_rgb, parse_color, rgb_to_lab
from catalog.errors import CatalogError, DatabaseUnusable, SearchError
from catalog.shape import SHAPES, shape_sql

# bm25() weights in photo_text_fts column order (catalog.db.SEARCH_COLUMNS: tags, description,
# objects, scene, mood, places = folder and file names, place = place names, text = recognised
# text): tags count most.
SEARCH_WEIGHTS = (10.0, 4.0, 5.0, 2.0, 2.0, 3.0, 6.0, 3.0)
FIELDS = ("place",)  # `field:term` looks in that column only
TOKEN = re.compile(r'-?(?:(?:' + "|".join(FIELDS) + r'):)?"[^"]*"?|\S+')
WORDISH = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class Filters:
    color: str | None = None
    scene: str | None = None
    mood: str | None = None
    orientation: str | None = None
    camera: str | None = None
    after: str | None = None
    before: str | None = None
    place: str | None = None  # a `place:"..."` term of the query (see to_match)

    def any(self) -> bool:
        return any(getattr(self, f) for f in self.__dataclass_fields__)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def to_match(query: str) -> str | None:
    """Translate the user's query into a safe FTS5 expression (None for an empty query)."""
    groups: list[list[str]] = []  # AND of (OR of terms)
    negatives: list[str] = []
    pending_or = False
    # NUL ends a string inside SQLite's FTS5 parser, so it separates words like a space does.
    for raw in TOKEN.findall((query or "").replace("\0", " ")):
        if raw == "OR":
            pending_or = bool(groups)
            continue
        negative = raw.startswith("-") and len(raw) > 1
        text = raw[1:] if negative else raw
        field, colon, rest = text.partition(":")
        column = f"{field} : " if colon and field in FIELDS and rest else ""
        text = rest if column else text
        if text.startswith('"'):
            inner = text.strip('"')
            if not WORDISH.search(inner):
                continue
            term = _quote(inner)
        else:
            prefix = text.endswith("*")
            word = text.rstrip("*")
            if not WORDISH.search(word):
                continue
            term = _quote(word) + ("*" if prefix else "")
        term = column + term
        if negative:
            negatives.append(term)
        elif pending_or:
            groups[-1].append(term)
        else:
            groups.append([term])
        pending_or = False
    if not groups:
        if negatives:
            raise SearchError("a search cannot only exclude: add a word to look for, e.g. `beach -night`")
        return None
    expr = " AND ".join(g[0] if len(g) == 1 else "(" + " OR ".join(g) + ")" for g in groups)
    if negatives:
        expr = f"({expr})" + "".join(f" NOT {n}" for n in negatives)
    return expr


def _date_bound(text: str, option: str) -> str:
    """'2019', '2019-07' or '2019-07-04' -> the ISO start of that period."""
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            return datetime.datetime.strptime(text.strip(), fmt).isoformat()
        except ValueError:
            continue
    raise SearchError(f"{option} takes a date like 2019, 2019-07 or 2019-07-04, not {text!r}")


def _filter_sql(filters: Filters) -> tuple[list[str], dict]:
    where, params = [], {}
    if filters.scene:
        where.append("lower(p.scene) = lower(:scene)")
        params["scene"] = filters.scene.strip()
    if filters.mood:
        where.append("lower(p.mood) = lower(:mood)")
        params["mood"] = filters.mood.strip()
    if filters.orientation:
        shape = filters.orientation.strip().lower()
        if shape not in SHAPES:
            raise SearchError(f"--orientation takes one of {', '.join(SHAPES)}, not {filters.orientation!r}")
        where.append(f"{shape_sql()} = :shape")
        params["shape"] = shape
    if filters.camera:
        escaped = re.sub(r"([\\%_])", r"\\\1", filters.camera.strip())
        where.append("(COALESCE(p.camera_make, '') || ' ' || COALESCE(p.camera_model, '')) "
                     "LIKE '%' || :camera || '%' ESCAPE '\\'")
        params["camera"] = escaped
    if filters.after:
        where.append("p.taken_at >= :after")
        params["after"] = _date_bound(filters.after, "--after")
    if filters.before:
        where.append("p.taken_at < :before")
        params["before"] = _date_bound(filters.before, "--before")
    if filters.color and canonical_name(filters.color):
        # A named colour was matched against every palette when the photo was analysed.
        where.append("EXISTS (SELECT 1 FROM photo_colors c WHERE c.photo_id = p.id AND c.name = :color_name)")
        params["color_name"] = canonical_name(filters.color)
    elif filters.color:
        try:
            params["color"] = parse_color(filters.color)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        where.append("color_distance(p.palette, p.dominant_color, :color) < :color_match")
        params["color_match"] = COLOR_MATCH
    return where, params


@functools.lru_cache(maxsize=64)
def _lab(target: str) -> tuple[float, float, float]:
    return rgb_to_lab(hex_to_rgb(target))


@functools.lru_cache(maxsize=1 << 16)
def _swatch_distance(value: str, target: str) -> float | None:
    """CIEDE2000 from one palette entry to the target (None if it is not a hex colour).

    The same computation as `colors.nearest_distance` does per entry, memoised: palettes
    repeat colours (the dominant colour is usually also the first palette entry), and the
    target's Lab value is computed once per search instead of once per photo.
    """
    if not HEX.match(value):
        return None
    return delta_e(rgb_to_lab(hex_to_rgb(parse_color(value))), _lab(target))


@functools.lru_cache(maxsize=256)  # the ORDER BY asks again for the row the WHERE just tested
def _color_distance(palette_json, dominant, target):
    try:
        palette = json.loads(palette_json) if palette_json else []
    except ValueError:
        palette = []
    if dominant:
        palette = [dominant, *palette]
    best = None
    for value in palette:
        if isinstance(value, str):
            d = _swatch_distance(value, target)
            if d is not None and (best is None or d < best):
                best = d
    return 1e9 if best is None else best


def _color_passes(palette_json, dominant, target) -> bool:
    """The colour filter's test, as `color_distance(...) < COLOR_MATCH` is in SQL."""
    try:
        return _color_distance(palette_json, dominant, target) < COLOR_MATCH
    except Exception:  # what SQLite reports when a user-defined function raises
        raise sqlite3.OperationalError("user-defined function raised exception") from None


def connect(path) -> sqlite3.Connection:
    """Open the catalogue for reading without running migrations (fast start)."""
    from catalog.reading import connect as read_only

    conn = read_only(path)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT 1 FROM photo_text_fts LIMIT 1")
    except sqlite3.DatabaseError as exc:
        if "no such table" not in str(exc):  # locked, damaged, a folder: say which
            raise DatabaseUnusable.explain(path, exc) from None
        raise CatalogError(f"cannot search {path}: {exc} (run `catalog scan` to create or upgrade it)") from None
    conn.create_function("color_distance", 3, _color_distance, deterministic=True)
    return conn


RESULT_COLUMNS = """
    p.id, p.format, p.width, p.height, p.taken_at, p.camera_make, p.camera_model, p.gps_lat,
    p.gps_lon, p.tags, p.description, p.objects, p.dominant_color, p.palette, p.scene, p.mood,
    {shape} AS shape, p.place, p.provider, p.analysis_status,
    (SELECT COUNT(*) FROM files f WHERE f.photo_id = p.id AND f.status = 'ok') AS copies,
    (SELECT json_group_array(path) FROM (SELECT path FROM files f WHERE f.photo_id = p.id
        AND f.status = 'ok' ORDER BY path)) AS paths
"""


def search(conn: sqlite3.Connection, query: str, filters: Filters = Filters(), *, limit: int = 20) -> list[dict]:
    """Best matches first; each result a dict with parsed JSON fields."""
    if filters.place and filters.place.strip():
        query = f'{query or ""} place:"{filters.place.replace(chr(34), " ").strip()}"'
    match = to_match(query)
    if match is None and not filters.any():
        raise SearchError("nothing to search for: give words or a filter such as --color blue")
    # The colour test is pure Python (~50 us a photo): with words, it runs on the matches in
    # rank order only until `limit` photos pass, instead of on every match before ranking.
    named = bool(filters.color) and canonical_name(filters.color) is not None
    late_color = match is not None and bool(filters.color) and not named
    where, params = _filter_sql(dataclasses.replace(filters, color=None) if late_color else filters)
    if late_color:
        try:
            params["color"] = parse_color(filters.color)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
    where.append("EXISTS (SELECT 1 FROM files f WHERE f.photo_id = p.id AND f.status = 'ok')")
    if match is not None:
        weights = ", ".join(str(w) for w in SEARCH_WEIGHTS)
        ranked = (f"SELECT p.id, bm25(photo_text_fts, {weights}) AS score, p.palette, p.dominant_color "
                  "FROM photo_text_fts JOIN photo_text t ON t.id = photo_text_fts.rowid "
                  "JOIN photos p ON p.id = t.photo_id "
                  f"WHERE photo_text_fts MATCH :match AND {' AND '.join(where)} ORDER BY score"
                  + ("" if late_color else " LIMIT :limit"))
        params["match"] = match
    elif named:  # closest first, straight from the colour index
        ranked = (f"SELECT p.id, NULL AS score FROM photo_colors c JOIN photos p ON p.id = c.photo_id "
                  f"WHERE c.name = :color_name AND {' AND '.join(where)} ORDER BY c.distance, c.photo_id LIMIT :limit")
    else:
        order = "color_distance(p.palette, p.dominant_color, :color)" if filters.color else "p.taken_at DESC"
        ranked = f"SELECT p.id, NULL AS score FROM photos p WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit"
    params["limit"] = limit
    # Rank first, then build the wide result columns (copies, paths, shape) for the chosen
    # photos only: computed for every match, they cost more than the ranking itself. Both
    # queries read one snapshot, as a single statement would.
    snapshot = not conn.in_transaction
    try:
        if snapshot:
            conn.execute("BEGIN")
        best: list[tuple[str, float | None]] = []
        for row in conn.execute(ranked, params):
            if len(best) >= limit:
                break
            if late_color and not _color_passes(row["palette"], row["dominant_color"], params["color"]):
                continue
            best.append((row["id"], row["score"]))
        columns = RESULT_COLUMNS.format(shape=shape_sql())
        found = {row["id"]: row for row in conn.execute(
            f"SELECT {columns} FROM photos p WHERE p.id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps([photo_id for photo_id, _ in best])})} if best else {}
    except sqlite3.OperationalError as exc:  # should not happen: every word is quoted
        if DatabaseUnusable.explain(None, exc).about_the_file:
            raise  # locked or damaged, not the query: the CLI says so in one line
        raise SearchError(f"cannot run that search ({exc}); try simpler words") from None
    finally:
        if snapshot and conn.in_transaction:
            conn.rollback()  # nothing was written: this only lets go of the snapshot
    results = []
    for photo_id, score in best:
        record = dict(found[photo_id])
        record["score"] = score
        for key in ("tags", "objects", "palette", "paths"):
            record[key] = json.loads(record[key]) if record[key] else []
        record["path"] = record["paths"][0] if record["paths"] else None
        results.append(record)
    return results
