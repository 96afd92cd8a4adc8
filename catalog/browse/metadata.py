"""Datasette metadata for the catalogue: titles, descriptions, facets, search and canned queries.

Everything a person sees in the browser is described here (what each column holds is in
catalog/browse/columns.py); the schema itself lives in catalog/schema.py (the `gallery`
and `similar_groups` views and the `thumbnails` table come from its migrations).
"""

from __future__ import annotations

from catalog.browse.columns import (ANALYSES_COLUMNS, FILES_COLUMNS, FOLDERS_COLUMNS, GALLERY_COLUMNS,
                                    PHOTO_GROUPS_COLUMNS, PHOTOS_COLUMNS, RUNS_COLUMNS, SIMILAR_GROUPS_COLUMNS,
                                    THUMBNAIL_COLUMNS)
from catalog.queries import DUPLICATE_ORDER, DUPLICATE_PATHS, LAST_SEEN

DATABASE = "catalog"  # the name (and URL) the catalogue always has in Datasette

BEST_PATH = ("(SELECT f.path FROM files f WHERE f.photo_id = p.id AND f.status = 'ok' "
             "ORDER BY f.path LIMIT 1)")
THUMB = "(SELECT th.photo_id FROM thumbnails th WHERE th.photo_id = p.id)"

QUERIES = {
    "duplicates": {
        "title": "Duplicates",
        "description": "Photos present at more than one path (same image content), most "
                       "wasted space first.",
        "sql": f"""SELECT {THUMB} AS thumbnail, d.copies, d.size AS bytes_each,
       (d.copies - 1) * d.size AS wasted_bytes, {DUPLICATE_PATHS} AS paths, p.id AS photo_id
FROM duplicate_sets d
JOIN photos p ON p.id = d.photo_id
ORDER BY {DUPLICATE_ORDER}""",
    },
    "failed_analyses": {
        "title": "Failed analyses",
        "description": "Photos whose analysis failed, with the error. Permanent failures are "
                       "not retried; the others are, on later runs, up to max_attempts.",
        "sql": f"""SELECT {THUMB} AS thumbnail, {BEST_PATH} AS path, p.analysis_error AS error,
       p.attempts, p.analysis_permanent AS permanent, p.last_attempt_at, p.id AS photo_id
FROM photos p
WHERE p.analysis_status = 'failed'
ORDER BY p.last_attempt_at DESC""",
    },
    "file_errors": {
        "title": "Unreadable files",
        "description": "Files the scan could not catalogue (empty, truncated, not an image, ...).",
        "sql": f"""SELECT path, error_kind, error, size, {LAST_SEEN} AS last_seen
FROM files f WHERE status = 'error' ORDER BY error_kind, path""",
    },
    "not_analysed": {
        "title": "Photos without analysis",
        "description": "Photos in the library that have no analysis yet (pending or failed).",
        "sql": f"""SELECT {BEST_PATH} AS path, COALESCE(p.analysis_status, 'pending') AS status,
       p.attempts, p.analysis_error AS error, p.first_seen AS added, p.id AS photo_id
FROM photos p
WHERE COALESCE(p.analysis_status, 'pending') <> 'done'
  AND EXISTS (SELECT 1 FROM files f WHERE f.photo_id = p.id AND f.status = 'ok')
ORDER BY p.first_seen, p.id""",
    },
    "spend_per_run": {
        "title": "Spend per run",
        "description": "What each run cost: analyses, tokens, API requests and 429 waits, from "
                       "the runs' summaries (scans spend nothing); reused: copies that took their "
                       "analysed original's answer instead of a request.",
        "sql": """SELECT id AS run, command, started_at, status,
       json_extract(counts, '$.analysed') AS analysed,
       json_extract(counts, '$.reused') AS reused,
       json_extract(counts, '$.failed') AS failed,
       json_extract(counts, '$.tokens_used') AS tokens,
       json_extract(counts, '$.requests') AS requests,
       json_extract(counts, '$.rate_limited') AS rate_limited,
       json_extract(counts, '$.seconds') AS seconds
FROM runs
WHERE command IN ('analyze', 'run')
ORDER BY id DESC""",
    },
    "near_duplicates": {
        "title": "Near-duplicates",
        "description": "Copies (resized, re-encoded, converted, rotated) and edits (cropped, colour-edited) "
                       "of one picture, side by side: the suggested keeper first (largest resolution, "
                       "original format, earliest date, most metadata). As of the last scan.",
        "sql": """SELECT group_no AS "group", photos, thumbnails, relations, paths, photo_ids
FROM similar_groups WHERE kind = 'near' ORDER BY listed""",
    },
    "bursts": {
        "title": "Bursts",
        "description": "Shots of one camera taken within seconds that look alike, side by side, "
                       "first shot first. As of the last scan.",
        "sql": """SELECT group_no AS burst, photos, thumbnails, paths, photo_ids
FROM similar_groups WHERE kind = 'burst' ORDER BY listed""",
    },
    "recently_added": {
        "title": "Recently added",
        "description": "The 100 photos the catalogue saw most recently.",
        "sql": """SELECT thumbnail, path, added, taken, camera, tags, status, photo_id
FROM gallery ORDER BY added DESC, photo_id LIMIT 100""",
    },
}


def build_metadata() -> dict:
    """The metadata Datasette is started with (`datasette --metadata` in dict form)."""
    return {
        "title": "Photo catalogue",
        "description": "Every photo in the library, once per unique image: browse, facet, "
                       "search and map them. Read-only: nothing here changes the catalogue.",
        "databases": {
            DATABASE: {
                "title": "Photo catalogue",
                "description": "Start with the gallery. The search box understands the same "
                               "words as `catalog search`: words are AND-ed, \"quoted phrases\", "
                               "-word excludes, OR, sun* for prefixes.",
                "tables": {
                    "gallery": {
                        "title": "Gallery",
                        "description": "One row per photo present in the library, newest first. "
                                       "Search finds words in tags, descriptions, objects, scene, "
                                       "mood, places, text seen in the photo and folder or file "
                                       "names; place:rome looks in place names only.",
                        "columns": GALLERY_COLUMNS,
                        "fts_table": "photo_text_fts",
                        "fts_pk": "rowid",
                        "sort_desc": "taken",
                        "size": 50,
                        "facets": [{"array": "tags"}, "place", "scene", "mood", "orientation", "camera",
                                   "year", "status"],
                    },
                    "photos": {
                        "title": "Photos (all fields)",
                        "description": "One row per unique image, with every fact and analysis "
                                       "field; the gallery shows the same photos more readably.",
                        "columns": PHOTOS_COLUMNS,
                        "sort_desc": "first_seen",
                        "facets": ["analysis_status", "format", "shape", "provider"],
                    },
                    "analyses": {
                        "title": "Analyses by source",
                        "description": "One row per photo and source: what each back-end and enricher "
                                       "said, with its model and date. The photos' own fields merge them.",
                        "columns": ANALYSES_COLUMNS,
                        "sort_desc": "produced_at",
                        "facets": ["source", "kind", "model"],
                    },
                    "files": {
                        "title": "Files",
                        "description": "One row per path ever seen: where each photo lives, "
                                       "and files that are unreadable, missing or moved.",
                        "columns": FILES_COLUMNS,
                        "facets": ["status", "error_kind", "root"],
                    },
                    "folders": {
                        "title": "Folders",
                        "description": "When each folder was last listed by a scan.",
                        "columns": FOLDERS_COLUMNS,
                        "sort": "path",
                    },
                    "runs": {
                        "title": "Runs",
                        "description": "Each scan, analysis and nightly run, and what it did.",
                        "columns": RUNS_COLUMNS,
                        "sort_desc": "id",
                        "facets": ["command", "status"],
                    },
                    "thumbnails": {
                        "title": "Thumbnails",
                        "description": "The small copies shown in the gallery, kept in the "
                                       "catalogue so browsing works while the NAS sleeps.",
                        "columns": THUMBNAIL_COLUMNS,
                    },
                    "similar_groups": {
                        "title": "Similar photos",
                        "description": "One row per group of copies and edits (near) or burst, its "
                                       "photos side by side, the keeper first. Kept up to date by each "
                                       "scan; the Near-duplicates and Bursts queries show one kind.",
                        "columns": SIMILAR_GROUPS_COLUMNS,
                        "facets": ["kind"],
                    },
                    "photo_groups": {
                        "title": "Photo groups",
                        "description": "One row per photo of a near-duplicate group or burst, as of the "
                                       "last scan (the Similar photos view shows them grouped).",
                        "columns": PHOTO_GROUPS_COLUMNS,
                        "facets": ["kind", "relation"],
                    },
                    "photo_text": {"hidden": True},
                    "_sqlite_migrations": {"hidden": True},
                },
                "queries": QUERIES,
            }
        },
    }
