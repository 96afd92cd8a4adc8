"""Read-only questions asked of the catalogue: totals, one file's record, recent runs, duplicate groups.

The commands print the answers and the browser shows them; the SQL lives here, once. The
whole-library ones (stats, duplicates) take any connection with `execute`, a plain read-only
sqlite3 one included (catalog.reading), so those commands start without sqlite-utils.
"""

from __future__ import annotations

import json
import os

from catalog.errors import CatalogError

# The present paths of the duplicate set `d` (a duplicate_sets row), in path order (a JSON array).
DUPLICATE_PATHS = """(SELECT json_group_array(path) FROM (SELECT path FROM files f
    WHERE f.photo_id = d.photo_id AND f.status = 'ok' ORDER BY path))"""
# The sets that waste most space first: the order of m014's duplicate_sets_waste index, so a
# page (here, or the browser's canned query) costs its rows, never a sort of every set.
DUPLICATE_ORDER = "(d.copies - 1) * d.size DESC, d.photo_id"
# The photos held at more than one present path (copies, largest size), as the writes keep them
# in m014's duplicate_sets: never counted over the files table.
DUPLICATE_PAGE = f"""SELECT d.photo_id, d.copies, d.size, {DUPLICATE_PATHS} AS paths
FROM duplicate_sets d ORDER BY {DUPLICATE_ORDER} LIMIT :limit"""
DUPLICATE_TOTALS = "SELECT COUNT(*), COALESCE(SUM(copies), 0), COALESCE(SUM((copies - 1) * size), 0) FROM duplicate_sets"


def duplicate_page(db, limit: int | None) -> tuple[list[dict], dict]:
    """The `limit` duplicate sets (all when None) that waste most space, biggest first, and the
    totals over every set: {"sets", "files", "wasted"} (bytes beyond one copy of each)."""
    groups = [{"photo_id": photo_id, "copies": copies, "size": size, "paths": json.loads(paths)}
              for photo_id, copies, size, paths
              in db.execute(DUPLICATE_PAGE, {"limit": -1 if limit is None else limit}).fetchall()]
    sets, files, wasted = db.execute(DUPLICATE_TOTALS).fetchone()
    return groups, {"sets": sets, "files": files, "wasted": wasted}

# When a scan last found a file (`f`): its row's own last write or, while it is present, the
# last listing of its folder, whichever is later (a no-change rescan writes only folders).
LAST_SEEN = ("CASE WHEN f.status IN ('ok', 'error') THEN MAX(f.last_seen, COALESCE("
             "(SELECT d.last_seen FROM folders d WHERE d.path = f.folder), '')) ELSE f.last_seen END")


def duplicate_groups(db):
    """Photos present at more than one path, biggest waste first."""
    return iter(duplicate_page(db, None)[0])


def _counters(db) -> dict[str, dict[str, tuple[int, int]]]:
    """The maintained counters (m014's library_counts): {kind: {name: (n, bytes)}}, zeros left out."""
    found: dict[str, dict[str, tuple[int, int]]] = {"status": {}, "format": {}}
    for kind, name, n, size in db.execute("SELECT kind, name, n, bytes FROM library_counts WHERE n != 0 "
                                          "ORDER BY kind, name"):
        found[kind][name] = (n, size)
    return found


def library_counts(db) -> dict:
    """Totals over the present library: distinct photos and the extra copies of them."""
    counters = _counters(db)
    photos = sum(n for n, _ in counters["format"].values())
    return {"photos": photos, "duplicate_files": counters["status"].get("ok", (0, 0))[0] - photos}


def catalogue_stats(db) -> dict:
    """What `catalog stats` reports: files, bytes and photos present, by format, errors by kind.

    The totals are the counters the writes keep (m014), so the report reads a few rows even at
    a million photos; only the unreadable files and the EXIF warnings are counted (small indexes).
    """
    counters = _counters(db)
    files_ok, bytes_ok = counters["status"].get("ok", (0, 0))
    photos = sum(n for n, _ in counters["format"].values())
    return {
        "files": files_ok,
        "bytes": bytes_ok,
        "photos": photos,
        "duplicate_files": files_ok - photos,
        "by_format": {name or "unknown": n for name, (n, _) in
                      sorted(counters["format"].items(), key=lambda item: (-item[1][0], item[0] or "unknown"))},
        "files_by_status": {name: n for name, (n, _) in counters["status"].items()},
        "errors_by_kind": {kind or "unknown": n for kind, n in db.execute(
            "SELECT error_kind, COUNT(*) FROM files WHERE status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1")},
        "metadata_warnings": db.execute(
            "SELECT COUNT(*) FROM photos WHERE exif_error IS NOT NULL").fetchone()[0],
        "missing": counters["status"].get("missing", (0, 0))[0],
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
    from catalog.db import db_text

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
