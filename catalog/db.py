r"""The database: opens it (applying catalog/schema.py's migrations) and the shared queries.

Nobody but catalog/schema.py issues CREATE TABLE. Identity (the payload hash) is the key of
`photos`; `files` is the ledger of paths, each pointing at a photo. A file's
path is stored as text that names exactly one path (`db_text`): a byte that is
not valid UTF-8 is written `\xNN` and a literal backslash `\\`; such a row also
keeps its exact bytes in `path_bytes` so it can always be found again on disk.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sqlite3
import sys
from pathlib import Path


def _import_sqlite_utils():
    """sqlite-utils imports numpy and pandas when they are installed, only so that its insert()
    can store their number types, which the catalogue never passes it (all our writes are SQL).
    numpy alone is ~0.15 s of every command's start-up (a no-change rescan of 100k files has
    ~1 s in all), so it is imported with them hidden, unless this process loaded them already."""
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # None: `import numpy` raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

from catalog import private  # noqa: E402
from catalog.errors import CatalogError, DatabaseUnusable  # noqa: E402
from catalog.schema import migrations  # noqa: E402

# Every column of `analyses` but photo_id, in table order (carry_analysis copies rows with them).
ANALYSES_COPY = ("source", "kind", "tags", "description", "objects", "dominant_color", "palette", "scene",
                 "mood", "safe_adult", "safe_violence", "shape", "place", "city", "region", "country", "text",
                 "faces", "error", "provider", "model", "produced_at", "tokens_used", "processing_time_ms", "raw",
                 "copied_from")
# A ledger mtime no file has: the next scan reads the file again whatever its stat says.
REREAD_MTIME_NS = -1
# Facts read from the file (its header, its picture's fingerprint); every other column of `photos`
# is what analysis made.
FACT_COLUMNS = frozenset({"id", "format", "width", "height", "orientation", "taken_at", "camera_make",
                          "camera_model", "gps_lat", "gps_lon", "exif_error", "first_seen",
                          "phash", "aspect", "tone", "detail", "fingerprint_error"})


def carry_analysis(db: sqlite_utils.Database, old_id: str, new_id: str, path: str) -> None:
    """The same content under a better identity keeps what was paid for (inside a transaction).

    Copied, not moved: when one old photo turns out to be two (two TIFFs that shared an
    identity), each keeps the analysis, thumbnail and colours that were made for it. A new
    identity that already has an analysis of its own keeps it.
    """
    columns = [r[1] for r in db.execute("PRAGMA table_info(photos)") if r[1] not in FACT_COLUMNS]
    names = ", ".join(columns)
    db.execute(
        f"""
        UPDATE photos SET ({names}) = (SELECT {names} FROM photos WHERE id = :old)
        WHERE id = :new AND COALESCE(analysis_status, 'pending') = 'pending'
          AND (SELECT analysis_status FROM photos WHERE id = :old) IS NOT NULL
        """,
        {"old": old_id, "new": new_id},
    )
    columns = ", ".join(ANALYSES_COPY)
    db.execute(f"INSERT INTO analyses (photo_id, {columns}) SELECT :new, {columns} FROM analyses "
               "WHERE photo_id = :old AND NOT EXISTS (SELECT 1 FROM analyses WHERE photo_id = :new)",
               {"old": old_id, "new": new_id})
    db.execute("INSERT OR IGNORE INTO thumbnails (photo_id, jpeg, width, height) "
               "SELECT ?, jpeg, width, height FROM thumbnails WHERE photo_id = ?", [new_id, old_id])
    db.execute("INSERT OR IGNORE INTO photo_colors (name, photo_id, distance) "
               "SELECT name, ?, distance FROM photo_colors WHERE photo_id = ?", [new_id, old_id])
    db.execute("UPDATE writeback_state SET photo_id = ? WHERE photo_id = ? AND path = ?",
               [new_id, old_id, path])


SEARCH_COLUMNS = ("tags", "description", "objects", "scene", "mood", "places", "place", "text")


def store_photo_colors(db: sqlite_utils.Database, photo_id: str, dominant, palette) -> None:
    """Refresh a photo's named colours (call inside the writer's transaction)."""
    from catalog.colors import named_matches

    db.execute("DELETE FROM photo_colors WHERE photo_id = ?", [photo_id])
    swatches = [dominant, *palette] if dominant else list(palette)
    db.conn.executemany("INSERT INTO photo_colors (name, photo_id, distance) VALUES (?, ?, ?)",
                        [(name, photo_id, d) for name, d in named_matches(swatches)])


def fill_photo_colors(db: sqlite_utils.Database) -> None:
    """Named colours for every analysed photo, by today's rule (after m006 made the table)."""
    for row in db.query("SELECT id, dominant_color, palette FROM photos WHERE palette IS NOT NULL"):
        store_photo_colors(db, row["id"], row["dominant_color"], json.loads(row["palette"] or "[]"))


# Data a schema-only migration leaves to today's code, derived in the transaction that applies it.
DERIVED = {"m006_photo_colors": fill_photo_colors}


REFRESH_TEXT = """
INSERT INTO photo_text (photo_id, tags, description, objects, scene, mood, places, place, text)
SELECT p.id,
       (SELECT group_concat(value, ' ') FROM json_each(COALESCE(p.tags, '[]'))),
       p.description,
       (SELECT group_concat(value, ' ') FROM json_each(COALESCE(p.objects, '[]'))),
       NULLIF(p.scene, 'unknown'), NULLIF(p.mood, 'unknown'),
       (SELECT group_concat(substr(f.path, length(f.root) + 2), ' ')
          FROM files f WHERE f.photo_id = p.id AND f.status = 'ok'),
       (SELECT group_concat(a.place, ' ') FROM analyses a
         WHERE a.photo_id = p.id AND a.error IS NULL AND a.place != ''),
       (SELECT group_concat(a.text, ' ') FROM analyses a
         WHERE a.photo_id = p.id AND a.error IS NULL AND a.text != '')
FROM photos p WHERE p.id IN (SELECT value FROM json_each(:ids))
ON CONFLICT(photo_id) DO UPDATE SET tags = excluded.tags, description = excluded.description,
    objects = excluded.objects, scene = excluded.scene, mood = excluded.mood,
    places = excluded.places, place = excluded.place, text = excluded.text
"""


def refresh_search_text(db: sqlite_utils.Database, photo_ids) -> None:
    """Rebuild the search text of these photos (call inside the writer's transaction)."""
    ids = sorted({i for i in photo_ids if i})
    for start in range(0, len(ids), 500):
        db.conn.execute(REFRESH_TEXT, {"ids": json.dumps(ids[start : start + 500])})


def now() -> str:
    """UTC timestamp with microseconds: also serves as the marker of one scan."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def open_db(path: str | os.PathLike, *, create: bool = True) -> sqlite_utils.Database:
    """Open (and migrate) the catalogue, readable by its owner only. WAL so readers never block the writer."""
    path = Path(path)
    if not create and not path.exists():
        raise CatalogError(f"no catalogue at {path} yet: run `catalog scan` first")
    try:
        private.make_dirs(path.parent)
        try:
            created = private.create_file(path)  # SQLite gives -wal and -shm the database's mode
        except OSError:
            created = True  # a place we cannot create in: SQLite's own error below says what is wrong
        if not created:
            for suffix in ("", "-wal", "-shm", "-journal"):
                private.tighten(f"{path}{suffix}", "the catalogue")
        conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        db = sqlite_utils.Database(conn, execute_plugins=False)  # none of ours; finding them scans every package
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB: upserts keyed on random hashes need it
        pending = {m.name for m in migrations.pending(db)}
        if pending & DERIVED.keys():  # only then one transaction: a migration may need to run outside
            with db.atomic():
                migrations.apply(db)
                for name, derive in DERIVED.items():
                    if name in pending:
                        derive(db)
        else:
            migrations.apply(db)
    except sqlite3.DatabaseError as exc:
        raise DatabaseUnusable.explain(path, exc) from None
    except OSError as exc:
        raise CatalogError(f"cannot open the catalogue at {path}: {exc}") from None
    return db


def start_run(db: sqlite_utils.Database, command: str) -> int:
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO runs (command, started_at, status) VALUES (?, ?, 'running')",
            [command, now()],
        )
    return cursor.lastrowid


def close_interrupted_runs(db: sqlite_utils.Database) -> int:
    """Runs still marked running when we hold the lock were killed: say so."""
    with db.atomic():
        cursor = db.execute(
            "UPDATE runs SET status = 'interrupted', message = COALESCE(message, "
            "'the process was stopped before it finished') WHERE status = 'running'")
    return cursor.rowcount


def finish_run(db, run_id: int, status: str, counts: dict, message: str | None = None) -> None:
    with db.atomic():
        db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, counts = ?, message = ? WHERE id = ?",
            [now(), status, json.dumps(counts), message, run_id],
        )


def fs_path(row: dict) -> str:
    """The path to open on disk for a `files` row (exact bytes for non-UTF-8 names)."""
    raw = row.get("path_bytes")
    return os.fsdecode(raw) if raw else text_path(row["path"])


def db_text(path: str) -> tuple[str, bytes | None]:
    r"""Text for the database plus the exact bytes when the text is not the path itself.

    One text per path, one path per text: a byte that is not valid UTF-8 becomes `\xNN`
    and a literal backslash `\\`, so the name `x\xff.jpg` (with a backslash) and the
    bytes `x<FF>.jpg` never share a key. Paths without either are stored as they are.
    """
    if "\\" not in path:
        try:
            path.encode("utf-8")
            return path, None
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(path)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace"), raw


def db_texts(names: list[str]) -> list[str]:
    """`db_text(name)[0]` of each name; one check for a whole folder of plain names."""
    joined = "/".join(names)
    if "\\" not in joined:
        try:
            joined.encode("utf-8")
            return names
        except UnicodeEncodeError:
            pass
    return [db_text(name)[0] for name in names]


_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def text_path(text: str) -> str:
    """The path a database text names: the inverse of `db_text`."""
    if "\\" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1][1:], 16)]), text.encode())
    return os.fsdecode(raw)


def prefix_range(root_text: str) -> tuple[str, str]:
    """[low, high) bounds covering every path under a folder, for index range scans."""
    low = root_text.rstrip("/") + "/"
    return low, low[:-1] + "0"  # "0" sorts right after "/"


def path_scope_sql(paths, column: str = "path") -> tuple[str, dict]:
    """`AND (...)` restricting `column` to these files or folders (index range scans)."""
    if not paths:
        return "", {}
    clauses, params = [], {}
    for i, raw in enumerate(paths):
        text = db_text(os.path.abspath(os.fsdecode(raw)))[0]
        low, high = prefix_range(text)
        clauses.append(f"({column} = :p{i} OR ({column} >= :lo{i} AND {column} < :hi{i}))")
        params.update({f"p{i}": text, f"lo{i}": low, f"hi{i}": high})
    return "AND (" + " OR ".join(clauses) + ")", params

