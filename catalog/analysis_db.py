"""Where the analysis stage meets the database: which photos are pending, and storing outcomes.

Pending photos are read in pages, oldest first (memory stays flat); an answer is stored
whatever it contains (made storable first), a failure with its reason; only a failure
that is the photo's own spends one of its attempts.
"""

from __future__ import annotations

import json
from catalog import db as catalog_db
from catalog import sources
from catalog.analyzers import Analysis
from catalog.analyzers.storable import clean_text
from catalog.config import Config

PAGE = 200
DEFAULT_TOKEN_GUESS = 1250  # the contract's example answer, until we have our own history


SELECT_PENDING = """
SELECT p.id, p.first_seen, p.taken_at, p.camera_make, p.camera_model, p.gps_lat, p.gps_lon, p.orientation,
       f.path, f.path_bytes, f.size,
       (SELECT json_group_array(json_array(c.path, c.root)) FROM files c
         WHERE c.photo_id = p.id AND c.status = 'ok') AS copies
FROM photos p
JOIN files f ON f.path = (SELECT path FROM files WHERE photo_id = p.id AND status = 'ok'
                          {scope} ORDER BY path LIMIT 1)
WHERE ({reanalyze} OR p.analysis_status IS NULL OR p.analysis_status = 'pending'
       OR (p.analysis_status = 'failed' AND ({retry_failed}
           OR (p.analysis_permanent = 0 AND p.attempts < :max_attempts))))
  AND {window}
ORDER BY p.first_seen, p.id
LIMIT :page
"""


def pending_photos(db, config: Config, *, reanalyze=False, paths=None, limit=None, retry_failed=False):
    """Photos to analyse, oldest first, streamed a page at a time.

    `retry_failed` also gives every failed photo one more try, even a permanent failure or
    one out of attempts; photos already done are never sent again (unless `reanalyze`).
    """
    scope, params = catalog_db.path_scope_sql(paths)
    sql = SELECT_PENDING.format(scope=scope, reanalyze="1" if reanalyze else "0",
                                retry_failed="1" if retry_failed else "0",
                                window="(p.first_seen, p.id) > (:after_seen, :after_id)")
    after, given = ("", ""), 0
    while True:
        rows = list(db.query(sql, {**params, "max_attempts": config.analysis.max_attempts,
                                   "after_seen": after[0], "after_id": after[1], "page": PAGE}))
        for row in rows:
            if limit is not None and given >= limit:
                return
            given += 1
            yield row
        if len(rows) < PAGE:
            return
        after = (rows[-1]["first_seen"], rows[-1]["id"])


def rows_by_id(db, config: Config, photo_ids, *, reanalyze=False) -> list[dict]:
    """The rows `pending_photos` would yield, among these photos (the flow hands ids to tasks);
    photos done meanwhile (a retried batch) are left out."""
    sql = SELECT_PENDING.format(scope="", reanalyze="1" if reanalyze else "0", retry_failed="0",
                                window="p.id IN (SELECT value FROM json_each(:ids))")
    ids = list(photo_ids)
    return list(db.query(sql, {"ids": json.dumps(ids), "max_attempts": config.analysis.max_attempts,
                               "page": len(ids)}))


def count_pending(db, config, *, reanalyze=False, paths=None, limit=None, retry_failed=False) -> tuple[int, int]:
    """How many photos would be sent, and an upper bound of their upload bytes."""
    count = size = 0
    cap = config.analysis.max_upload_bytes
    for row in pending_photos(db, config, reanalyze=reanalyze, paths=paths, limit=limit,
                              retry_failed=retry_failed):
        count += 1
        size += min(row["size"], cap)
    return count, size


def average_tokens(db, source: str) -> float | None:
    row = db.execute("SELECT AVG(tokens_used), COUNT(*) FROM analyses WHERE source = ? AND kind = 'backend' "
                     "AND copied_from IS NULL", [source]).fetchone()  # a copy's analysis cost nothing
    return row[0] if row[1] else None


STORE_DONE = """
UPDATE photos SET analysis_status = 'done', analysis_error = NULL, analysis_permanent = 0,
    attempts = attempts + :attempt, last_attempt_at = :now
WHERE id = :id
"""
# A back-end's answer about a photo, fit to be copied to a copy of it (not an enricher's:
# those run on the copy itself, e.g. its GPS may differ).
COPYABLE = "SELECT * FROM analyses WHERE photo_id = ? AND source = ? AND kind = 'backend' AND error IS NULL"


def _store_backend_row(db, row: dict, *, attempt: int, now: str) -> None:
    with db.atomic():
        db.execute(STORE_DONE, {"id": row["photo_id"], "now": now, "attempt": attempt})
        sources.store_rows(db, [row])
        catalog_db.store_photo_colors(db, row["photo_id"], row["dominant_color"], json.loads(row["palette"] or "[]"))


def store_analysis(db, photo_id: str, analysis: Analysis, secrets=(), *, source: str | None = None) -> dict:
    """Keep an answer, whatever it contains (made storable first, see analyzers.storable), as the
    row of its source (the back-end's name); the photo's other sources stay. Returns that row."""
    row = sources.backend_row(photo_id, source or analysis.provider or "unknown", analysis, secrets)
    _store_backend_row(db, row, attempt=1, now=row["produced_at"])
    return row


def can_copy(db, source_photo: str, source: str) -> bool:
    """Whether `source_photo` has an answer of `source` (a back-end) that a copy of it may take."""
    return db.execute(COPYABLE, [source_photo, source]).fetchone() is not None


def store_copy(db, photo_id: str, source_photo: str, source: str) -> dict | None:
    """Give `photo_id` the answer `source` gave about `source_photo`, of which it is a copy: no
    request, no token (its row's copied_from names the photo whose answer was paid for).
    Returns the stored row, or None when `source_photo` has no such answer."""
    found = next(db.query(COPYABLE, [source_photo, source]), None)
    if found is None:
        return None
    row = {**found, "photo_id": photo_id, "copied_from": found["copied_from"] or source_photo,
           "tokens_used": 0, "processing_time_ms": 0}
    _store_backend_row(db, row, attempt=0, now=catalog_db.now())
    return row


def store_failure(db, photo_id: str, message: str, permanent: bool, *, spends_attempt: bool = True,
                  raw: str | None = None) -> None:
    """Record why a photo failed; only a failure that is the photo's own spends an attempt.
    `raw`: an answer that was paid for but could not be stored as an analysis is kept here."""
    with db.atomic():
        db.execute(
            "UPDATE photos SET analysis_status = 'failed', analysis_error = ?, analysis_permanent = ?, "
            "attempts = attempts + ?, last_attempt_at = ?, raw_response = COALESCE(?, raw_response) "
            "WHERE id = ?",
            [clean_text(message, 500), 1 if permanent else 0, 1 if spends_attempt or permanent else 0,
             catalog_db.now(), raw, photo_id],
        )
