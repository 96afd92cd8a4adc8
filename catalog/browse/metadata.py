"""Datasette metadata for the catalogue: titles, descriptions, facets, search and canned queries.

Everything a person sees in the browser is described here; the schema itself
lives in catalog/db.py (the `gallery` view and the `thumbnails` table come from
its migrations).
"""

from __future__ import annotations

from catalog.queries import DUPLICATE_GROUPS

DATABASE = "catalog"  # the name (and URL) the catalogue always has in Datasette

GALLERY_COLUMNS = {
    "thumbnail": "A small copy of the photo kept in the catalogue (made from the original, no API call); "
                 "click it for everything known about the photo.",
    "path": "Where the photo is: the first of its paths, in path order.",
    "taken": "When it was taken (EXIF date, the camera's local time).",
    "year": "The year it was taken.",
    "camera": "Camera make and model from EXIF.",
    "tags": "Tags from the analysis (a JSON list; filter by one with the tags facet).",
    "place": "Where it was taken: city, region and country, from its GPS position (the places enricher).",
    "description": "A sentence describing the photo, from the analysis.",
    "scene": "Scene as analysed (indoor, outdoor, ...; unknown when the analyzer cannot tell).",
    "mood": "Mood as analysed (unknown when the analyzer cannot tell).",
    "orientation": "landscape, portrait or square, as the photo is seen upright.",
    "color": "Dominant colour (#rrggbb).",
    "latitude": "Where it was taken: GPS latitude from EXIF (photos with GPS are on the map).",
    "longitude": "Where it was taken: GPS longitude from EXIF.",
    "status": "Analysis status: done, failed or pending.",
    "copies": "How many paths hold this same image (duplicates share one row).",
    "format": "Image format of the original (JPEG, PNG, HEIF, ...).",
    "width": "Width of the original in pixels, as stored (before EXIF rotation).",
    "height": "Height of the original in pixels, as stored (before EXIF rotation).",
    "added": "When the catalogue first saw this photo.",
    "photo_id": "The photo's identity: a BLAKE3 hash of its image content.",
    "rowid": "The photo's row in the search index (used by the search box).",
}

PHOTOS_COLUMNS = {
    "id": "The photo's identity: a BLAKE3 hash of its image content, not of its metadata.",
    "format": "Image format (JPEG, PNG, HEIF, ...).",
    "width": "Width in pixels, as stored.",
    "height": "Height in pixels, as stored.",
    "orientation": "EXIF orientation, 1-8 (1 is upright).",
    "taken_at": "When it was taken (EXIF, the camera's local time).",
    "camera_make": "Camera make from EXIF.",
    "camera_model": "Camera model from EXIF.",
    "gps_lat": "GPS latitude from EXIF.",
    "gps_lon": "GPS longitude from EXIF.",
    "exif_error": "Metadata that could not be read (the photo itself is fine).",
    "first_seen": "When the catalogue first saw this photo.",
    "analysis_status": "pending (empty), done or failed.",
    "analysis_error": "Why the last analysis failed.",
    "analysis_permanent": "1: the failure is permanent and will not be retried.",
    "attempts": "How many times analysis was tried.",
    "last_attempt_at": "When analysis was last tried.",
    "tags": "Tags of every source merged (JSON list): the back-end's first, then the enrichers'.",
    "place": "City, region and country from the GPS position (the places enricher).",
    "description": "Description from the analysis.",
    "objects": "Objects seen in the photo (JSON list).",
    "dominant_color": "Dominant colour (#rrggbb).",
    "palette": "Main colours (JSON list of #rrggbb).",
    "scene": "Scene as analysed.",
    "mood": "Mood as analysed.",
    "safe_adult": "Safe-search likelihood of adult content (the safety enricher's where the back-end "
                  "said UNKNOWN).",
    "safe_violence": "Safe-search likelihood of violence.",
    "shape": "landscape, portrait or square, as analysed.",
    "provider": "Which back-end produced the analysis (offline, imgtags, openai); every source is in "
                "the analyses table.",
    "model": "The analyzer's model.",
    "tokens_used": "Tokens the analysis cost.",
    "processing_time_ms": "How long the analyzer took, in milliseconds.",
    "analysed_at": "When the analysis was stored.",
    "raw_response": "The analyzer's full answer (JSON).",
    "phash": "Perceptual fingerprint of the upright picture: a 64-bit difference hash, stored signed "
             "(copies, edits and bursts are found by it).",
    "aspect": "Upright width / height, part of the fingerprint.",
    "tone": "Mean colour (R << 16 | G << 8 | B), part of the fingerprint: tells a colour edit from a copy.",
    "detail": "16x16 grey cells, part of the fingerprint: tells a copy from a small crop.",
    "fingerprint_error": "Why the picture could not be fingerprinted (not tried again until the file changes).",
}

FILES_COLUMNS = {
    "path": "The file's path.",
    "path_bytes": "The exact name bytes, when the name is not valid UTF-8.",
    "root": "The library folder it was found under.",
    "folder": "Its folder.",
    "name": "Its file name.",
    "photo_id": "The photo (image content) this file holds.",
    "size": "Size in bytes.",
    "mtime_ns": "Modification time (nanoseconds since 1970) at the last read.",
    "status": "ok, error (unreadable or not a photo), missing (gone since) or moved.",
    "error": "What was wrong with the file.",
    "error_kind": "The kind of error (empty, truncated, not an image, ...).",
    "first_seen": "When a scan first found this path.",
    "last_seen": "When a scan last found this path.",
    "missing_since": "When the file was found gone.",
    "moved_to": "Where it went, when it was moved or renamed.",
}

RUNS_COLUMNS = {
    "id": "Run number.",
    "command": "What ran: scan, analyze or run (the nightly job).",
    "started_at": "When it started (UTC).",
    "finished_at": "When it finished (UTC).",
    "status": "running, ok, partial (some files failed), failed or interrupted.",
    "message": "What went wrong or why it stopped early.",
    "counts": "The run's summary (JSON): files seen, new, moved, analysed, tokens, requests, ...",
}

ANALYSES_COLUMNS = {
    "photo_id": "The photo analysed.",
    "source": "Who said it: a back-end (imgtags, openai, offline) or an enricher (places, text, safety, faces).",
    "kind": "backend or enricher.",
    "tags": "The tags this source gave (JSON list).",
    "description": "Its description (back-ends).",
    "objects": "Objects it saw (JSON list).",
    "dominant_color": "Dominant colour (#rrggbb).",
    "palette": "Main colours (JSON list).",
    "scene": "Scene.",
    "mood": "Mood.",
    "safe_adult": "Likelihood of adult content, as this source rated it.",
    "safe_violence": "Likelihood of violence.",
    "shape": "landscape, portrait or square.",
    "place": "City, region and country (places).",
    "city": "City (places).",
    "region": "Region: the first-level division (places).",
    "country": "Country (places).",
    "text": "Text read in the photo, one line per line (text).",
    "faces": "How many faces (faces).",
    "error": "Why this enricher could not read the photo (not tried again).",
    "provider": "The service, or the package (and version) that shipped the model or data set.",
    "model": "The model or data set.",
    "produced_at": "When this source's answer was stored (UTC).",
    "tokens_used": "Tokens it cost.",
    "processing_time_ms": "How long it took, in milliseconds.",
    "raw": "The answer as received (JSON).",
    "copied_from": "For a copy of an analysed photo: the photo whose answer this is (no request was made, "
                   "0 tokens); empty for a source's own answer.",
}

THUMBNAIL_COLUMNS = {
    "photo_id": "The photo this is a thumbnail of.",
    "jpeg": "The thumbnail: a JPEG about 256 px on its long edge.",
    "width": "Thumbnail width in pixels.",
    "height": "Thumbnail height in pixels.",
}

PHOTO_GROUPS_COLUMNS = {
    "kind": "near (copies and edits of one picture) or burst (shots of one camera within seconds).",
    "group_no": "The group's number within its kind, in the order `catalog duplicates --near/--bursts` lists them.",
    "position": "The photo's place in its group: 0 is the suggested keeper (near) or the first shot (burst).",
    "photo_id": "The photo.",
    "relation": "What it is to the keeper: copy (resized, re-encoded, converted, rotated) or edit (cropped, "
                "colour-edited); empty for the keeper and for burst shots.",
}

SIMILAR_GROUPS_COLUMNS = {
    "kind": "near (copies and edits of one picture) or burst (shots of one camera within seconds).",
    "group_no": "The group's number within its kind.",
    "photos": "How many photos the group holds.",
    "thumbnails": "The group's photos side by side, the suggested keeper (or first shot) first; click one "
                  "for everything known about it.",
    "paths": "Each photo's first path, in the same order (JSON list).",
    "relations": "Each photo's relation to the keeper, in the same order: null (the keeper), copy or edit.",
    "photo_ids": "Each photo's identity, in the same order (JSON list).",
}

BEST_PATH = ("(SELECT f.path FROM files f WHERE f.photo_id = p.id AND f.status = 'ok' "
             "ORDER BY f.path LIMIT 1)")
THUMB = "(SELECT th.photo_id FROM thumbnails th WHERE th.photo_id = p.id)"

QUERIES = {
    "duplicates": {
        "title": "Duplicates",
        "description": "Photos present at more than one path (same image content), most "
                       "wasted space first.",
        "sql": f"""SELECT {THUMB} AS thumbnail, d.copies, d.size AS bytes_each,
       (d.copies - 1) * d.size AS wasted_bytes, d.paths, p.id AS photo_id
FROM ({DUPLICATE_GROUPS}) d
JOIN photos p ON p.id = d.photo_id
ORDER BY wasted_bytes DESC, p.id""",
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
        "sql": """SELECT path, error_kind, error, size, last_seen
FROM files WHERE status = 'error' ORDER BY error_kind, path""",
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
FROM similar_groups WHERE kind = 'near' ORDER BY group_no""",
    },
    "bursts": {
        "title": "Bursts",
        "description": "Shots of one camera taken within seconds that look alike, side by side, "
                       "first shot first. As of the last scan.",
        "sql": """SELECT group_no AS burst, photos, thumbnails, paths, photo_ids
FROM similar_groups WHERE kind = 'burst' ORDER BY group_no""",
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
