"""The write-back stage: analysis tags from the database into sidecars and/or the photos.

For every present file of an analysed photo, unchanged since the scan: merge our keywords
and description into what is there (the user's own keywords are never dropped; only
keywords we wrote earlier and that are now stale are removed; a description the user gave
in any field keeps ours out of all of them), write only if something changes (idempotent),
verify the new bytes (payload identity unchanged, our keywords readable), journal the
write ahead of the rename (for --undo), replace the file atomically unless another program
changed it meanwhile, read it back, and only then count the keywords as ours and update
the ledger so the next scan does not re-read it. Sidecars that are links or too big or
deep to parse, and photos outside the library roots, are skipped with a message.
This module picks the files and records the run; catalog/writeback/writer.py does each file.
"""

from __future__ import annotations

import json
import time

from catalog import db as catalog_db
from catalog import sources
from catalog.settings import Config
from catalog.progress import progress_bar
from catalog.writeback import journal
from catalog.writeback.writer import Writer, WritebackSummary

PAGE = 500


def _targets(db, paths):
    """Present files of analysed photos, by path, a page at a time."""
    scope, params = catalog_db.path_scope_sql(paths, column="f.path")
    sql = (f"SELECT f.path, f.path_bytes, f.root, f.photo_id, f.size, f.mtime_ns, p.tags, p.description "
           f"FROM files f JOIN photos p ON p.id = f.photo_id WHERE f.status = 'ok' "
           f"AND p.analysis_status = 'done' AND f.path > :after {scope} "
           f"ORDER BY f.path LIMIT {PAGE}")
    after = ""
    while True:
        rows = list(db.query(sql, {**params, "after": after}))
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1]["path"]


def writeback(db, config: Config, *, paths=None, mode: str | None = None, dry_run: bool = False,
              progress: bool = True) -> WritebackSummary:
    """Write analysis tags for every present, analysed file (under `paths`, if given)."""
    started = time.perf_counter()
    mode = mode or config.writeback.mode
    summary = WritebackSummary(mode=mode, dry_run=dry_run)
    run_id = None if dry_run else catalog_db.start_run(db, "writeback")
    summary.run_id = run_id
    if not dry_run:  # a killed run's writes: claimed where they landed, forgotten where they did not
        journal.settle_interrupted(db)
    writer = Writer(db, config, summary, run_id, dry_run)
    bar = progress_bar(unit=" files", desc="write back") if progress else None
    status = "failed"
    try:
        for row in map(dict, _targets(db, paths)):
            summary.files += 1
            photo = catalog_db.fs_path(row)
            tags = [t for t in json.loads(row["tags"] or "[]") if isinstance(t, str) and t.strip()]
            description = row["description"] or None
            row["provenance"] = sources.provenance(db, row["photo_id"])  # catalog:Sources
            if mode in ("embed", "both"):
                writer.embed(row, photo, tags, description)
            if mode in ("sidecar", "both"):
                writer.sidecar(row, photo, tags, description)
            if bar is not None:
                bar.update()
        status = "partial" if summary.skipped else "ok"
    finally:
        if bar is not None:
            bar.close()
        summary.seconds = round(time.perf_counter() - started, 3)
        if run_id is not None:
            counts = {k: v for k, v in summary.as_dict().items() if k != "changes"}
            catalog_db.finish_run(db, run_id, status, counts)
    return summary
