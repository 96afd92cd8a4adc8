"""Read-only questions asked of the catalogue: totals, one file's record, recent runs, duplicate groups.

The commands print the answers and the browser shows them; the SQL lives here, once.
"""

from __future__ import annotations

import json
import os

from catalog.db import db_text
from catalog.errors import CatalogError

# One row per photo held at more than one present path: copies, the largest size, the paths
# in path order. The `duplicates` command and the browser's canned query both build on it.
DUPLICATE_GROUPS = """SELECT photo_id, COUNT(*) AS copies, MAX(size) AS size,
       json_group_array(path) AS paths
FROM (SELECT photo_id, path, size FROM files WHERE status = 'ok' ORDER BY path)
GROUP BY photo_id HAVING COUNT(*) > 1"""

# When a scan last found a file (`f`): its row's own last write or, while it is present, the
# last listing of its folder, whichever is later (a no-change rescan writes only folders).
LAST_SEEN = ("CASE WHEN f.status IN ('ok', 'error') THEN MAX(f.last_seen, COALESCE("
             "(SELECT d.last_seen FROM folders d WHERE d.path = f.folder), '')) ELSE f.last_seen END")


def duplicate_groups(db):
    """Photos present at more than one path, biggest waste first (streamed)."""
    for row in db.query(f"{DUPLICATE_GROUPS} ORDER BY (COUNT(*) - 1) * MAX(size) DESC, photo_id"):
        yield {**row, "paths": json.loads(row["paths"])}


def library_counts(db) -> dict:
    """Totals over the present library: distinct photos and the extra copies of them."""
    # GROUP BY walks the (status, photo_id) index in order; COUNT(DISTINCT) sorts it all again
    row = next(db.query("SELECT COUNT(photo_id) AS photos, COALESCE(SUM(n), 0) AS files FROM "
                        "(SELECT photo_id, COUNT(*) AS n FROM files WHERE status = 'ok' GROUP BY photo_id)"))
    return {"photos": row["photos"], "duplicate_files": row["files"] - row["photos"]}


def catalogue_stats(db) -> dict:
    """What `catalog stats` reports: files, bytes and photos present, by format, errors by kind."""

    def pairs(sql):
        return {row[0] or "unknown": row[1] for row in db.execute(sql).fetchall()}

    files_ok, bytes_ok = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE status = 'ok'").fetchone()
    photos = library_counts(db)["photos"]
    return {
        "files": files_ok,
        "bytes": bytes_ok,
        "photos": photos,
        "duplicate_files": files_ok - photos,
        "by_format": pairs(
            "SELECT p.format, COUNT(DISTINCT p.id) FROM photos p JOIN files f ON f.photo_id = p.id "
            "WHERE f.status = 'ok' GROUP BY p.format ORDER BY 2 DESC, 1"),
        "files_by_status": pairs("SELECT status, COUNT(*) FROM files GROUP BY status ORDER BY 1"),
        "errors_by_kind": pairs(
            "SELECT error_kind, COUNT(*) FROM files WHERE status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1"),
        "metadata_warnings": db.execute(
            "SELECT COUNT(*) FROM photos WHERE exif_error IS NOT NULL").fetchone()[0],
        "missing": db.execute("SELECT COUNT(*) FROM files WHERE status = 'missing'").fetchone()[0],
        "errors": [
            {"path": r[0], "kind": r[1], "error": r[2]}
            for r in db.execute(
                "SELECT path, error_kind, error FROM files WHERE status = 'error' ORDER BY path LIMIT 50")
        ],
    }


def file_row(db, path: str) -> dict:
    """The ledger row of the file at `path`, as the user typed it (relative to the current folder).

    Raises CatalogError when the path is not in the catalogue.
    """
    text = db_text(os.path.abspath(os.fsdecode(path)))[0]
    rows = list(db.query(f"SELECT f.*, {LAST_SEEN} AS found FROM files f WHERE path = ?", [text]))
    if not rows:
        raise CatalogError(f"{path} is not in the catalogue (scan its folder first)")
    row = rows[0]
    row["last_seen"] = row.pop("found")
    return row


def first_paths(db, photo_ids) -> dict[str, str]:
    """Each photo's first present path, in path order (photos with none are left out)."""
    return {row["photo_id"]: row["path"] for row in db.query(
        "SELECT photo_id, MIN(path) AS path FROM files WHERE status = 'ok' "
        "AND photo_id IN (SELECT value FROM json_each(?)) GROUP BY photo_id", [json.dumps(sorted(set(photo_ids)))])}


def file_record(db, path: str) -> dict:
    """Everything known about the file at `path`: its ledger row, its photo, sources and other copies.

    Raises CatalogError when the path is not in the catalogue.
    """
    ledger = file_row(db, path)
    ledger.pop("path_bytes", None)
    result = {"file": ledger, "photo": None, "copies": [], "sources": []}
    if ledger["photo_id"]:
        from catalog.sources import sources_of

        result["sources"] = sources_of(db, ledger["photo_id"])
        result["photo"] = next(db.query("SELECT * FROM photos WHERE id = ?", [ledger["photo_id"]]), None)
        result["copies"] = [
            r["path"] for r in db.query(
                "SELECT path FROM files WHERE photo_id = ? AND status = 'ok' AND path != ? ORDER BY path",
                [ledger["photo_id"], ledger["path"]])
        ]
    return result


def recent_runs(db, limit: int = 20) -> list[dict]:
    """The last `limit` runs, newest first, each with its counts parsed ({} when none)."""
    rows = list(db.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit]))
    for row in rows:
        row["counts"] = json.loads(row["counts"]) if row["counts"] else {}
    return rows
