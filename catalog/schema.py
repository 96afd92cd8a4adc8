"""The schema: numbered migrations, each with its commented DDL, applied by `db.open_db`.

Nobody else issues CREATE TABLE. A migration is history: once released it is never edited,
only followed by a new one (sqlite-utils records which ones a database has had). So it never
calls application code, which may change later: it carries a frozen copy of the rule it needs
(m007), or it only shapes the schema and today's code derives the data (m006, see
`db.DERIVED`). Nothing here imports from catalog.
"""

from __future__ import annotations

import os

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("catalog")


@migrations()
def m001_ledger(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE photos (
            id TEXT PRIMARY KEY,            -- blake3 of the image payload (not its metadata)
            format TEXT,
            width INTEGER,
            height INTEGER,
            orientation INTEGER,            -- EXIF 1-8
            taken_at TEXT,                  -- ISO 8601, camera local time
            camera_make TEXT,
            camera_model TEXT,
            gps_lat REAL,
            gps_lon REAL,
            exif_error TEXT,                -- metadata we could not read; the photo is still fine
            first_seen TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            path_bytes BLOB,                -- exact name bytes when not valid UTF-8
            root TEXT NOT NULL,
            folder TEXT NOT NULL,
            name TEXT NOT NULL,
            photo_id TEXT REFERENCES photos(id),
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'missing', 'moved')),
            error TEXT,
            error_kind TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            missing_since TEXT,
            moved_to TEXT
        )
        """
    )
    db.execute("CREATE INDEX files_folder ON files(folder)")
    db.execute("CREATE INDEX files_photo ON files(photo_id)")
    db.execute("CREATE INDEX files_root_status ON files(root, status)")
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,           -- running / ok / partial / failed
            message TEXT,
            counts TEXT                     -- JSON summary
        )
        """
    )


@migrations()
def m002_analysis_and_search(db: sqlite_utils.Database) -> None:
    """Analysis results live on the photo (one per identity); search text in its own table."""
    for column, kind in [
        ("analysis_status", "TEXT"),      # NULL/pending, done, failed
        ("analysis_error", "TEXT"),
        ("analysis_permanent", "INTEGER DEFAULT 0"),  # 1: never retried (e.g. HTTP 422)
        ("attempts", "INTEGER DEFAULT 0"),
        ("last_attempt_at", "TEXT"),
        ("tags", "TEXT"),                 # JSON array
        ("description", "TEXT"),
        ("objects", "TEXT"),              # JSON array
        ("dominant_color", "TEXT"),
        ("palette", "TEXT"),              # JSON array of #rrggbb
        ("scene", "TEXT"),
        ("mood", "TEXT"),
        ("safe_adult", "TEXT"),
        ("safe_violence", "TEXT"),
        ("shape", "TEXT"),                # landscape / portrait / square, as analysed
        ("provider", "TEXT"),
        ("model", "TEXT"),
        ("tokens_used", "INTEGER"),
        ("processing_time_ms", "INTEGER"),
        ("analysed_at", "TEXT"),
        ("raw_response", "TEXT"),         # the provider's answer, JSON
    ]:
        db.execute(f"ALTER TABLE photos ADD COLUMN {column} {kind}")
    db.execute("CREATE INDEX photos_analysis_status ON photos(analysis_status)")
    db.execute("CREATE INDEX photos_first_seen ON photos(first_seen, id)")  # paging pending work
    db.execute("CREATE INDEX files_status_photo ON files(status, photo_id)")  # library counts
    # An INTEGER PRIMARY KEY keeps FTS rowids stable across VACUUM (photos.id is text).
    db.execute(
        """
        CREATE TABLE photo_text (
            id INTEGER PRIMARY KEY,
            photo_id TEXT NOT NULL UNIQUE REFERENCES photos(id),
            tags TEXT, description TEXT, objects TEXT, scene TEXT, mood TEXT,
            places TEXT                     -- folder and file names, relative to their root
        )
        """
    )
    db["photo_text"].enable_fts(
        ["tags", "description", "objects", "scene", "mood", "places"],
        fts_version="FTS5",
        create_triggers=True,
        tokenize="porter unicode61 remove_diacritics 2",
    )


# There is no m003, and no catalogue misses one: the write-back groundwork (c4b2e22) named its
# migration m004 directly after m002, and no m003 was ever released. sqlite-utils records
# migrations by name, so the gap stays: renumbering would make every catalogue apply m004 again.


@migrations()
def m004_writeback(db: sqlite_utils.Database) -> None:
    """What we wrote into which file (so only our own stale tags are ever removed), and a
    journal of every change (so `writeback --undo RUN` restores the previous metadata)."""
    db.execute(
        """
        CREATE TABLE writeback_state (
            target TEXT PRIMARY KEY,        -- the file written: the photo (embed) or its sidecar
            path TEXT NOT NULL,             -- the photo (files.path)
            kind TEXT NOT NULL CHECK (kind IN ('embed', 'sidecar')),
            photo_id TEXT,
            keywords TEXT NOT NULL,         -- JSON array: the keywords we wrote
            description TEXT,               -- the description we wrote (NULL: we kept the user's)
            written_at TEXT NOT NULL,
            run_id INTEGER
        )
        """
    )
    db.execute(
        """
        CREATE TABLE writeback_journal (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            target TEXT NOT NULL,
            target_bytes BLOB,              -- exact name bytes when not valid UTF-8
            path TEXT NOT NULL,
            kind TEXT NOT NULL,
            format TEXT,
            existed INTEGER NOT NULL,       -- was there a file (sidecar) before?
            snapshot BLOB,                  -- embed: the metadata to restore; sidecar: its old bytes
            previous_state TEXT,            -- JSON of the writeback_state row before
            mtime_ns_before INTEGER,
            size_after INTEGER,
            mtime_ns_after INTEGER,
            undone_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX writeback_journal_run ON writeback_journal(run_id)")


@migrations()
def m005_thumbnails_and_gallery(db: sqlite_utils.Database) -> None:
    """Thumbnails kept in the database (browsing works while the NAS sleeps) and `gallery`,
    the view Datasette shows: one readable row per photo present in the library."""
    db.execute(
        """
        CREATE TABLE thumbnails (
            photo_id TEXT PRIMARY KEY,      -- a photos.id
            jpeg BLOB NOT NULL,             -- about 256 px on the long edge, upright
            width INTEGER NOT NULL,
            height INTEGER NOT NULL
        )
        """
    )
    # `rowid` is photo_text.id, so Datasette's search box can use photo_text_fts (fts_pk).
    # Its `orientation` is the shape rule as of this migration, frozen history: the live rule
    # is catalog/shape.py, and tests/test_shape.py holds the two to the same answers.
    db.execute(
        """
        CREATE VIEW gallery AS
        SELECT
            CASE WHEN EXISTS (SELECT 1 FROM thumbnails th WHERE th.photo_id = p.id)
                 THEN p.id END AS thumbnail,
            (SELECT f.path FROM files f WHERE f.photo_id = p.id AND f.status = 'ok'
              ORDER BY f.path LIMIT 1) AS path,
            p.taken_at AS taken,
            substr(p.taken_at, 1, 4) AS year,
            CASE WHEN NULLIF(trim(p.camera_model), '') IS NULL THEN NULLIF(trim(p.camera_make), '')
                 WHEN NULLIF(trim(p.camera_make), '') IS NULL
                      OR instr(lower(trim(p.camera_model)), lower(substr(trim(p.camera_make), 1,
                               instr(trim(p.camera_make) || ' ', ' ') - 1))) = 1
                 THEN trim(p.camera_model)
                 ELSE trim(p.camera_make) || ' ' || trim(p.camera_model) END AS camera,
            p.tags,
            p.description,
            p.scene,
            p.mood,
            COALESCE(NULLIF(p.shape, 'unknown'), CASE
                WHEN (CASE WHEN p.orientation BETWEEN 5 AND 8 THEN p.height ELSE p.width END) * 100
                     > (CASE WHEN p.orientation BETWEEN 5 AND 8 THEN p.width ELSE p.height END) * 105
                THEN 'landscape'
                WHEN (CASE WHEN p.orientation BETWEEN 5 AND 8 THEN p.height ELSE p.width END) * 105
                     < (CASE WHEN p.orientation BETWEEN 5 AND 8 THEN p.width ELSE p.height END) * 100
                THEN 'portrait'
                WHEN p.width IS NOT NULL THEN 'square' END) AS orientation,
            NULLIF(p.dominant_color, 'unknown') AS color,
            p.gps_lat AS latitude,
            p.gps_lon AS longitude,
            COALESCE(p.analysis_status, 'pending') AS status,
            (SELECT COUNT(*) FROM files f WHERE f.photo_id = p.id AND f.status = 'ok') AS copies,
            p.format,
            p.width,
            p.height,
            p.first_seen AS added,
            p.id AS photo_id,
            t.id AS rowid
        FROM photos p
        LEFT JOIN photo_text t ON t.photo_id = p.id
        WHERE EXISTS (SELECT 1 FROM files f WHERE f.photo_id = p.id AND f.status = 'ok')
        """
    )


@migrations()
def m006_photo_colors(db: sqlite_utils.Database) -> None:
    """Named colours near each photo's palette, so a colour search is an index look-up.

    Schema only: the rows are derived from the palettes by today's colour rule, which
    `db.open_db` runs in the same transaction (`db.DERIVED`), as analysis does for new photos.
    """
    db.execute(
        """
        CREATE TABLE photo_colors (
            name TEXT NOT NULL,             -- a colour of the search vocabulary (catalog.colors)
            photo_id TEXT NOT NULL REFERENCES photos(id),
            distance REAL NOT NULL,         -- CIEDE2000 from the nearest palette colour
            PRIMARY KEY (name, photo_id)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX photo_colors_rank ON photo_colors(name, distance)")
    db.execute("CREATE INDEX photo_colors_photo ON photo_colors(photo_id)")


def _m007_text(path: str) -> tuple[str, bytes | None]:
    """`db.db_text` as m007 shipped it (frozen: the encoding this migration converts to)."""
    if "\\" not in path:
        try:
            path.encode("utf-8")
            return path, None
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(path)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace"), raw


@migrations()
def m007_unambiguous_paths(db: sqlite_utils.Database) -> None:
    """Path text names one path: a literal backslash is now stored doubled (see db_text).

    Before, the name `x\\xff.jpg` (a real backslash) and the bytes `x<FF>.jpg` had the same
    text and so one `files` row. Only rows holding a backslash change; each one's true path
    is its `path_bytes` (not UTF-8) or else its text, which was the path itself.
    """
    # SELECT rowid, path, path_bytes, root FROM files WHERE instr(path, '\') > 0;
    # then per row, in two passes so no new key meets an old one on the way:
    #   UPDATE files SET path = char(0) || rowid WHERE rowid = :rowid;    -- every row first
    #   UPDATE files SET path = :path, path_bytes = :raw, root = :root, folder = :folder,
    #                    name = :name WHERE rowid = :rowid;               -- then every row
    #   UPDATE files SET moved_to = :new WHERE rowid = :rowid;            -- row by row
    # and the same re-encoding for writeback_state (target, path) and writeback_journal
    # (target, target_bytes, path).
    renamed: dict[str, str] = {}
    rows = db.execute("SELECT rowid, path, path_bytes, root FROM files WHERE instr(path, '\\') > 0").fetchall()
    updates = []
    for rowid, text, raw, root in rows:
        true = os.fsencode(os.fsdecode(raw) if raw else text)
        depth = root.count("/") + 1  # escaping never adds a "/": the root is that many parts
        parts = {"path": true, "root": b"/".join(true.split(b"/")[:depth]) if root != "/" else b"/",
                 "folder": os.path.dirname(true), "name": os.path.basename(true)}
        new = {k: _m007_text(os.fsdecode(v))[0] for k, v in parts.items()}
        renamed[text] = new["path"]
        updates.append({**new, "raw": _m007_text(os.fsdecode(true))[1], "rowid": rowid})
        db.execute("UPDATE files SET path = char(0) || rowid WHERE rowid = ?", [rowid])
    db.conn.executemany("UPDATE files SET path = :path, path_bytes = :raw, root = :root, folder = :folder, "
                        "name = :name WHERE rowid = :rowid", updates)

    def moved(text: str, raw: bytes | None = None) -> str:
        return renamed.get(text) or _m007_text(os.fsdecode(raw) if raw else text)[0]

    for rowid, target in db.execute("SELECT rowid, moved_to FROM files WHERE instr(moved_to, '\\') > 0").fetchall():
        db.execute("UPDATE files SET moved_to = ? WHERE rowid = ?", [moved(target), rowid])

    journal = db.execute("SELECT rowid, target, target_bytes, path FROM writeback_journal "
                         "WHERE instr(target, '\\') > 0 OR instr(path, '\\') > 0").fetchall()
    exact = {target: raw for _, target, raw, _ in journal if raw}
    for rowid, target, raw, path in journal:
        new_target, new_raw = _m007_text(os.fsdecode(raw) if raw else target)
        db.execute("UPDATE writeback_journal SET target = ?, target_bytes = ?, path = ? WHERE rowid = ?",
                   [new_target, new_raw, moved(path), rowid])
    state = db.execute("SELECT rowid, target, path FROM writeback_state "
                       "WHERE instr(target, '\\') > 0 OR instr(path, '\\') > 0").fetchall()
    for rowid, _, _ in state:
        db.execute("UPDATE writeback_state SET target = char(0) || rowid WHERE rowid = ?", [rowid])
    for rowid, target, path in state:
        db.execute("UPDATE writeback_state SET target = ?, path = ? WHERE rowid = ?",
                   [moved(target, exact.get(target)), moved(path), rowid])


@migrations()
def m008_tiff_layout_identity(db: sqlite_utils.Database) -> None:
    """TIFF identity now covers the image's geometry and pixel layout, not only its strips.

    No file is read here (the share may be asleep): every ledger row of a TIFF photo gets
    the mtime no file has, so the next scan reads it again. The scan then finds that the
    file's identity under the old scheme (`Identity.previous`) is the photo it pointed at
    and copies what was paid for onto the new identity (`carry_analysis`).
    """
    db.execute(
        """
        UPDATE files SET mtime_ns = -1   -- no file has it (db.REREAD_MTIME_NS): read again by the next scan
        WHERE status != 'moved'
          AND photo_id IN (SELECT id FROM photos WHERE format = 'TIFF')
        """
    )


@migrations()
def m009_writeback_write_ahead(db: sqlite_utils.Database) -> None:
    """The write-back journal is written ahead of the rename: a row says what the file will be
    once replaced, so a kill at any moment leaves something `--undo` can judge and restore."""
    for ddl in (
        # pending: journalled, the rename may or may not have happened; done: written and
        # verified (only then are the keywords claimed in writeback_state)
        "ALTER TABLE writeback_journal ADD COLUMN status TEXT NOT NULL DEFAULT 'done'",
        "ALTER TABLE writeback_journal ADD COLUMN size_before INTEGER",  # NULL: no file before
        "ALTER TABLE writeback_journal ADD COLUMN sha256_after TEXT",  # the new bytes' digest
        "ALTER TABLE writeback_journal ADD COLUMN claim TEXT",  # JSON writeback_state row, once done
        "ALTER TABLE writeback_journal ADD COLUMN real_target BLOB",  # the file written for a symlink
    ):
        db.execute(ddl)
    db.execute("UPDATE writeback_journal SET status = 'pending' WHERE size_after IS NULL")
    db.execute("CREATE INDEX writeback_journal_pending ON writeback_journal(status) WHERE status = 'pending'")


@migrations()
def m010_analysis_sources(db: sqlite_utils.Database) -> None:
    """One row per (photo, source) in `analyses`: what each back-end and enricher said, with its
    provenance. The analysis columns of `photos` stay, as the merge of a photo's rows (see
    catalog.sources), so search, Datasette and write-back read one row per photo as before."""
    db.execute(
        """
        CREATE TABLE analyses (
            photo_id TEXT NOT NULL REFERENCES photos(id),
            source TEXT NOT NULL,           -- back-end (imgtags, openai, offline) or enricher
                                            -- (places, text, safety, faces)
            kind TEXT NOT NULL CHECK (kind IN ('backend', 'enricher')),
            tags TEXT NOT NULL DEFAULT '[]',  -- JSON array, as this source said them
            description TEXT,
            objects TEXT,                   -- JSON array
            dominant_color TEXT,
            palette TEXT,                   -- JSON array of #rrggbb
            scene TEXT,
            mood TEXT,
            safe_adult TEXT,                -- the contract's scale; safety's own where it ran
            safe_violence TEXT,
            shape TEXT,
            place TEXT,                     -- places: "Rome, Lazio, Italy"
            city TEXT,
            region TEXT,
            country TEXT,
            text TEXT,                      -- text: the recognised lines
            faces INTEGER,                  -- faces: how many
            error TEXT,                     -- an enricher that cannot read the photo (not retried)
            provider TEXT,                  -- the service, or the wheel that shipped the model
            model TEXT,
            produced_at TEXT NOT NULL,
            tokens_used INTEGER NOT NULL DEFAULT 0,
            processing_time_ms INTEGER NOT NULL DEFAULT 0,
            raw TEXT,                       -- the answer as received (JSON)
            PRIMARY KEY (photo_id, source)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX analyses_source ON analyses(source)")
    # Today's results: every done analysis becomes its back-end's row, unchanged.
    db.execute(
        """
        INSERT INTO analyses (photo_id, source, kind, tags, description, objects, dominant_color, palette,
                              scene, mood, safe_adult, safe_violence, shape, provider, model, produced_at,
                              tokens_used, processing_time_ms, raw)
        SELECT id, COALESCE(NULLIF(provider, ''), 'imgtags'), 'backend', COALESCE(tags, '[]'), description,
               objects, dominant_color, palette, scene, mood, safe_adult, safe_violence, shape, provider,
               model, COALESCE(analysed_at, last_attempt_at, first_seen), COALESCE(tokens_used, 0),
               COALESCE(processing_time_ms, 0), raw_response
        FROM photos WHERE analysis_status = 'done'
        """
    )
    db.execute("ALTER TABLE photos ADD COLUMN place TEXT")  # merged: the first source's place
    # The search text gains the place names and the recognised text: the FTS table is rebuilt.
    db.execute("ALTER TABLE photo_text ADD COLUMN place TEXT")
    db.execute("ALTER TABLE photo_text ADD COLUMN text TEXT")
    db["photo_text"].disable_fts()
    db["photo_text"].enable_fts(  # db.SEARCH_COLUMNS as of this migration
        ["tags", "description", "objects", "scene", "mood", "places", "place", "text"],
        fts_version="FTS5", create_triggers=True, tokenize="porter unicode61 remove_diacritics 2")
    # The gallery gains a place column (for its facet): m005's view with `p.place` after the tags.
    (view,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'gallery'").fetchone()
    assert "p.tags,\n" in view, "the gallery view is not m005's"
    db.execute("DROP VIEW gallery")
    db.execute(view.replace("p.tags,\n", "p.tags,\n            p.place,\n", 1))


@migrations()
def m011_fingerprints(db: sqlite_utils.Database) -> None:
    """Perceptual fingerprints (catalog.similar) on each photo, for copies, edits, bursts and
    look-alikes. All NULL until computed: the scan fingerprints new and changed files from the
    decode it makes, and its backfill the photos catalogued before this migration."""
    for ddl in (
        "ALTER TABLE photos ADD COLUMN phash INTEGER",  # 64-bit dHash of the upright picture, stored
                                                        # signed (catalog.similar.fingerprint.to_db)
        "ALTER TABLE photos ADD COLUMN aspect REAL",  # upright width / height
        "ALTER TABLE photos ADD COLUMN tone INTEGER",  # mean colour, R << 16 | G << 8 | B
        "ALTER TABLE photos ADD COLUMN detail BLOB",  # 16x16 grey cells: tells a copy from a small crop
        "ALTER TABLE photos ADD COLUMN fingerprint_error TEXT",  # the picture cannot be decoded: not
                                                                 # tried again until its file changes
    ):
        db.execute(ddl)
    db.execute("CREATE INDEX photos_phash ON photos(phash)")


@migrations()
def m012_copied_analyses_and_photo_groups(db: sqlite_utils.Database) -> None:
    """Never pay twice (issue 13): an analysis copied from a photo this one is a copy of says so,
    and the near-duplicate groups and bursts are kept for browsing, keeper first."""
    # NULL: the source's own answer; else the photo whose paid answer this row copies (no request).
    db.execute("ALTER TABLE analyses ADD COLUMN copied_from TEXT")
    db.execute(
        """
        CREATE TABLE photo_groups (
            kind TEXT NOT NULL CHECK (kind IN ('near', 'burst')),  -- copies and edits, or a burst
            group_no INTEGER NOT NULL,      -- 1, 2, ... within its kind, as `catalog duplicates` lists them
            position INTEGER NOT NULL,      -- 0 is the suggested keeper (near) or the first shot
            photo_id TEXT NOT NULL REFERENCES photos(id),
            relation TEXT,                  -- to the keeper: copy or edit; NULL for the keeper
                                            -- and for burst shots
            PRIMARY KEY (kind, group_no, position)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX photo_groups_photo ON photo_groups(photo_id)")
    # One row per group: its photos' thumbnails side by side (a JSON list of photo ids, keeper
    # first; null where a photo has no thumbnail yet), their paths and relations in that order.
    db.execute(
        """
        CREATE VIEW similar_groups AS
        SELECT g.kind, g.group_no, COUNT(*) AS photos,
               json_group_array(g.thumbnail) AS thumbnails,
               json_group_array(g.path) AS paths,
               json_group_array(g.relation) AS relations,
               json_group_array(g.photo_id) AS photo_ids
        FROM (SELECT pg.kind, pg.group_no, pg.position, pg.photo_id, pg.relation,
                     (SELECT th.photo_id FROM thumbnails th WHERE th.photo_id = pg.photo_id) AS thumbnail,
                     (SELECT f.path FROM files f WHERE f.photo_id = pg.photo_id AND f.status = 'ok'
                       ORDER BY f.path LIMIT 1) AS path
              FROM photo_groups pg ORDER BY pg.kind, pg.group_no, pg.position) g
        GROUP BY g.kind, g.group_no
        """
    )


@migrations()
def m013_folders_seen(db: sqlite_utils.Database) -> None:
    """A rescan that finds nothing changed writes one row per folder, not one per file (issue 14).

    From now on `files.last_seen` is when a scan last wrote the file's row (found it new,
    changed, back, or gone); a present file was last found when its folder was last listed,
    the later of the two (what `catalog.ledger.LAST_SEEN` computes)."""
    db.execute(
        """
        CREATE TABLE folders (
            path TEXT PRIMARY KEY,          -- files.folder
            last_seen TEXT NOT NULL         -- when a scan last listed it; its present files were there
        ) WITHOUT ROWID
        """
    )
    db.execute("INSERT INTO folders (path, last_seen) SELECT folder, MAX(last_seen) FROM files GROUP BY folder")

@migrations()
def m014_library_counts(db: sqlite_utils.Database) -> None:
    """Whole-library figures (`catalog stats`, the scan's totals) and the duplicate sets kept up to
    date by the writes instead of counted over every row each time they are asked for: at a
    million photos that costs seconds (issue 14)."""
    db.execute(
        """
        CREATE TABLE library_counts (
            kind TEXT NOT NULL CHECK (kind IN ('status', 'format')),
            name TEXT NOT NULL,             -- status: a files.status; format: a photos.format ('' if NULL)
            n INTEGER NOT NULL DEFAULT 0,   -- status: files with it; format: present photos (a file 'ok')
            bytes INTEGER NOT NULL DEFAULT 0,  -- status: those files' sizes summed
            PRIMARY KEY (kind, name)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE duplicate_sets (
            photo_id TEXT PRIMARY KEY,      -- a photos.id
            copies INTEGER NOT NULL,        -- its files 'ok': 2 or more (a photo with fewer has no row)
            size INTEGER NOT NULL           -- the largest of them, in bytes
        ) WITHOUT ROWID
        """
    )
    # The sets that waste most space first, for `catalog duplicates` (a page of them, no sort).
    db.execute("CREATE INDEX duplicate_sets_waste ON duplicate_sets((copies - 1) * size DESC, photo_id)")
    # Both kept by triggers, so every writer (scan, identity changes, write-back) keeps them right.
    # A file counts under its status; its photo counts under its format while the photo has at
    # least one file 'ok', and is a duplicate set while it has two or more. An UPDATE fires only
    # when status, size or photo_id really change (a rescan's last_seen costs nothing here).
    add_file = """
        INSERT INTO library_counts (kind, name, n, bytes) VALUES ('status', NEW.status, 1, NEW.size)
            ON CONFLICT (kind, name) DO UPDATE SET n = n + 1, bytes = bytes + excluded.bytes;
        INSERT INTO library_counts (kind, name, n)
            SELECT 'format', COALESCE((SELECT format FROM photos WHERE id = NEW.photo_id), ''), 1
            WHERE NEW.status = 'ok' AND NEW.photo_id IS NOT NULL {same}
              AND NOT EXISTS (SELECT 1 FROM files f WHERE f.status = 'ok' AND f.photo_id = NEW.photo_id
                              AND f.rowid != NEW.rowid)
            ON CONFLICT (kind, name) DO UPDATE SET n = n + 1;
        INSERT INTO duplicate_sets (photo_id, copies, size)
            SELECT NEW.photo_id, c, m FROM (SELECT COUNT(*) AS c, MAX(f.size) AS m FROM files f
                                            WHERE f.status = 'ok' AND f.photo_id = NEW.photo_id)
            WHERE c >= 2 AND NEW.status = 'ok'
            ON CONFLICT (photo_id) DO UPDATE SET copies = excluded.copies, size = excluded.size;"""
    drop_file = """
        UPDATE library_counts SET n = n - 1, bytes = bytes - OLD.size WHERE kind = 'status' AND name = OLD.status;
        UPDATE library_counts SET n = n - 1
            WHERE kind = 'format' AND name = COALESCE((SELECT format FROM photos WHERE id = OLD.photo_id), '')
              AND OLD.status = 'ok' AND OLD.photo_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM files f WHERE f.status = 'ok' AND f.photo_id = OLD.photo_id);
        DELETE FROM duplicate_sets WHERE photo_id = OLD.photo_id
            AND (SELECT COUNT(*) FROM files f WHERE f.status = 'ok' AND f.photo_id = OLD.photo_id) < 2;
        UPDATE duplicate_sets SET (copies, size) = (SELECT COUNT(*), MAX(f.size) FROM files f
                                                    WHERE f.status = 'ok' AND f.photo_id = OLD.photo_id)
            WHERE photo_id = OLD.photo_id;"""
    db.execute(f"CREATE TRIGGER library_counts_file_insert AFTER INSERT ON files BEGIN "
               f"{add_file.format(same='')} END")
    db.execute(f"CREATE TRIGGER library_counts_file_delete AFTER DELETE ON files BEGIN {drop_file} END")
    # An update is the old row leaving and the new one arriving; a photo that stays present
    # through it (the same photo, 'ok' before and after) is not counted again.
    stays = "AND NOT (OLD.status = 'ok' AND OLD.photo_id IS NEW.photo_id)"
    db.execute(
        "CREATE TRIGGER library_counts_file_update AFTER UPDATE OF status, size, photo_id ON files "
        "WHEN OLD.status IS NOT NEW.status OR OLD.size IS NOT NEW.size OR OLD.photo_id IS NOT NEW.photo_id "
        f"BEGIN {drop_file} "
        f"{add_file.format(same=stays)} END")
    db.execute(
        """
        CREATE TRIGGER library_counts_photo_format AFTER UPDATE OF format ON photos
        WHEN OLD.format IS NOT NEW.format
             AND EXISTS (SELECT 1 FROM files f WHERE f.status = 'ok' AND f.photo_id = NEW.id)
        BEGIN
            UPDATE library_counts SET n = n - 1 WHERE kind = 'format' AND name = COALESCE(OLD.format, '');
            INSERT INTO library_counts (kind, name, n) VALUES ('format', COALESCE(NEW.format, ''), 1)
                ON CONFLICT (kind, name) DO UPDATE SET n = n + 1;
        END
        """
    )
    # The present files of each photo with their sizes: the triggers count a photo's files and
    # find its largest in this index, not the table. It starts with m002's
    # files_status_photo, which it replaces. Then today's figures, counted once.
    db.execute("CREATE INDEX files_status_photo_size ON files(status, photo_id, size)")
    db.execute("DROP INDEX files_status_photo")
    db.execute("INSERT INTO duplicate_sets (photo_id, copies, size) SELECT photo_id, COUNT(*), MAX(size) FROM files "
               "WHERE status = 'ok' AND photo_id IS NOT NULL GROUP BY photo_id HAVING COUNT(*) > 1")
    db.execute("INSERT INTO library_counts (kind, name, n, bytes) "
               "SELECT 'status', status, COUNT(*), COALESCE(SUM(size), 0) FROM files GROUP BY status")
    db.execute("INSERT INTO library_counts (kind, name, n) "
               "SELECT 'format', COALESCE(p.format, ''), COUNT(*) FROM photos p "
               "WHERE EXISTS (SELECT 1 FROM files f WHERE f.photo_id = p.id AND f.status = 'ok') GROUP BY 2")
    # The few photos whose EXIF could not be read (stats' warning count): a partial index.
    db.execute("CREATE INDEX photos_exif_error ON photos(exif_error) WHERE exif_error IS NOT NULL")


# photo_text_fts column order (catalog.search weighs them in this order); `places` holds the
# folder and file names, `place` the place names the sources found, `text` the recognised text.


@migrations()
def m015_lean_ledger(db: sqlite_utils.Database) -> None:
    """Issue 14: a file costs fewer database bytes (~140 fewer of ~1,800), two indexes that served
    no query are dropped."""
    # files_root_status (m001): every file's root text and status, ~55 bytes a file, and no query
    # leads with `root`: the scan bounds a root by its path range, counts lead with status.
    db.execute("DROP INDEX IF EXISTS files_root_status")
    # files_photo (m001): the 64-character photo id again, ~85 bytes a file. Every lookup of a
    # photo's files also names their status (`photo_id = ? AND status = 'ok'`, a move's
    # `status = 'missing'`), which files_status_photo_size (m014) answers; no photo is ever deleted, so
    # the foreign key needs no child index either.
    db.execute("DROP INDEX IF EXISTS files_photo")


# What can change the similar groups (catalog.similar.regroup): a photo whose files come, go or
# change status, or whose fingerprint or facts change. Triggers note it, whoever writes.
_GROUP_FACTS = ("phash", "aspect", "tone", "detail", "width", "height", "taken_at", "camera_make",
                "camera_model", "format", "gps_lat")


@migrations()
def m016_incremental_groups(db: sqlite_utils.Database) -> None:
    """Groups kept up to date a few photos at a time (issue 14): every change that can move a
    photo into or out of a group is noted in `group_changes` by a trigger; the next refresh
    regroups only what those photos touch, then empties it. `photo_groups.group_no` becomes the
    group's id; the `similar_groups` view numbers groups as `catalog duplicates` lists them."""
    db.execute(
        """
        CREATE TABLE group_changes (
            photo_id TEXT NOT NULL,
            taken_at TEXT                   -- the photo's capture time when noted (a burst it left)
        )
        """
    )
    note = ("INSERT INTO group_changes (photo_id, taken_at) "
            "SELECT {id}, (SELECT taken_at FROM photos WHERE id = {id}) WHERE {id} IS NOT NULL")
    db.execute(f"""
        CREATE TRIGGER group_changes_file_added AFTER INSERT ON files
        BEGIN {note.format(id="new.photo_id")}; END""")
    db.execute(f"""
        CREATE TRIGGER group_changes_file_removed AFTER DELETE ON files
        BEGIN {note.format(id="old.photo_id")}; END""")
    db.execute(f"""
        CREATE TRIGGER group_changes_file_changed AFTER UPDATE OF status, photo_id ON files
        WHEN old.status IS NOT new.status OR old.photo_id IS NOT new.photo_id
        BEGIN {note.format(id="old.photo_id")}; {note.format(id="new.photo_id")}; END""")
    differs = " OR ".join(f"old.{c} IS NOT new.{c}" for c in _GROUP_FACTS)
    db.execute(f"""
        CREATE TRIGGER group_changes_photo_changed AFTER UPDATE OF {", ".join(_GROUP_FACTS)} ON photos
        WHEN {differs}
        BEGIN INSERT INTO group_changes (photo_id, taken_at) VALUES (old.id, old.taken_at); END""")
    db.execute("""
        CREATE TRIGGER group_changes_photo_removed AFTER DELETE ON photos
        BEGIN INSERT INTO group_changes (photo_id, taken_at) VALUES (old.id, old.taken_at); END""")
    db.execute("CREATE INDEX photos_taken_at ON photos(taken_at)")  # bursts near a changed photo
    # The near neighbours of a changed photo without reading every hash: the 64 bits in three
    # chunks (of 22, 21 and 21 bits), each indexed; two hashes within r bits share one chunk
    # within r // 3 bits (catalog.similar.incremental.PHASH_CHUNKS, frozen here).
    for shift, width in ((0, 22), (22, 21), (43, 21)):
        db.execute(f"CREATE INDEX photos_phash_{shift} ON photos(((phash >> {shift}) & {(1 << width) - 1}))")
    # A group's place in the listing, on its first row: kept by a key, not by numbers that every
    # new group would shift (catalog.similar.browsing.listed).
    db.execute("ALTER TABLE photo_groups ADD COLUMN listed TEXT")
    db.execute("CREATE INDEX photo_groups_listed ON photo_groups(kind, listed) WHERE position = 0")
    # The groups already stored take their key by the rule as this migration shipped it.
    db.execute("""
        UPDATE photo_groups SET listed =
            printf('%09d', 999999999 - (SELECT COUNT(*) FROM photo_groups m
                                        WHERE m.kind = photo_groups.kind AND m.group_no = photo_groups.group_no))
            || char(9) || CASE WHEN kind = 'burst'
                               THEN COALESCE((SELECT taken_at FROM photos WHERE id = photo_id), '') || char(9)
                               ELSE '' END
            || photo_id
        WHERE position = 0""")
    db.execute("DROP VIEW similar_groups")
    # One row per group as m012's, read from its first row and its members, so a page of the
    # listing (ORDER BY kind, listed) reads only the groups it shows.
    member = "FROM photo_groups m WHERE m.kind = h.kind AND m.group_no = h.group_no ORDER BY m.position"
    db.execute(
        f"""
        CREATE VIEW similar_groups AS
        SELECT h.kind, h.group_no, h.listed,
               (SELECT COUNT(*) FROM photo_groups m WHERE m.kind = h.kind AND m.group_no = h.group_no) AS photos,
               (SELECT json_group_array(t) FROM (SELECT (SELECT th.photo_id FROM thumbnails th
                                                          WHERE th.photo_id = m.photo_id) AS t {member})) AS thumbnails,
               (SELECT json_group_array(t) FROM (SELECT (SELECT f.path FROM files f WHERE f.photo_id = m.photo_id
                                                          AND f.status = 'ok' ORDER BY f.path LIMIT 1) AS t {member}))
                   AS paths,
               (SELECT json_group_array(t) FROM (SELECT m.relation AS t {member})) AS relations,
               (SELECT json_group_array(t) FROM (SELECT m.photo_id AS t {member})) AS photo_ids
        FROM photo_groups h
        WHERE h.position = 0
        """
    )
