"""Undo a write-back run from its journal: the previous metadata back, byte for byte.

Every journalled write is judged by what the file holds now: the bytes that run wrote
(restored, even when the run was killed before it could mark the write done), the bytes it
had before (the write never landed: nothing to do), or anything else (someone changed it
since: left alone and reported; undo never overwrites work it does not know about).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from catalog import db as catalog_db
from catalog.errors import CatalogError
from catalog.identity import hash_buffer
from catalog.writeback import embed, journal
from catalog.writeback.atomic import atomic_write, fingerprint, read_file, remove, sweep

log = logging.getLogger("catalog.writeback")
KINDS = {"sidecar": ("sidecar",), "embed": ("embed",), "both": ("sidecar", "embed"), None: ("sidecar", "embed")}


@dataclass
class UndoSummary:
    run_id: int
    dry_run: bool = False
    restored: int = 0  # (dry run: would be restored)
    never_written: int = 0  # journalled, but the run was stopped before the file changed
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def undo(db, run_id: int, *, paths=None, mode: str | None = None, dry_run: bool = False) -> UndoSummary:
    """Restore what run `run_id` replaced (only under `paths`, only `mode`'s kind of file)."""
    if not db.execute("SELECT 1 FROM writeback_journal WHERE run_id = ?", [run_id]).fetchone():
        raise CatalogError(f"run {run_id} wrote nothing back (see `catalog runs`)")
    scope, params = catalog_db.path_scope_sql(paths, column="path")
    kinds = KINDS[mode]
    rows = [r for r in db.query(f"SELECT * FROM writeback_journal WHERE run_id = :run AND undone_at IS NULL "
                                f"{scope} ORDER BY id DESC", {**params, "run": run_id}) if r["kind"] in kinds]
    summary = UndoSummary(run_id, dry_run=dry_run)
    if not dry_run:  # temp files a kill left beside these files
        for folder in {os.path.dirname(os.path.abspath(journal.written_file(r))) for r in rows}:
            sweep(folder)
    for row in rows:
        try:
            if _undo_one(db, row, dry_run):
                summary.restored += 1
            else:
                summary.never_written += 1
        except (OSError, CatalogError) as exc:
            summary.skipped += 1
            message = f"{row['target']}: {exc.strerror if isinstance(exc, OSError) else exc}"
            summary.problems.append(message)
            log.warning("%s", message)
    return summary


def _undo_one(db, row: dict, dry_run: bool) -> bool:
    """Restore one write; False when it never reached the file. Raises when it must be left alone."""
    target = journal.written_file(row)
    if not journal.holds_the_write(row):
        landed_or_not = row["size_before"] is not None or not row["existed"]  # older rows cannot tell
        if row["status"] == "pending" and landed_or_not and journal.untouched(row):
            if not dry_run:
                journal.drop(db, row["id"])
            return False
        if row["status"] == "pending" and not landed_or_not:
            raise CatalogError("that write never finished (the run was interrupted); nothing to undo")
        if fingerprint(target) is None:
            raise CatalogError("the file is gone; nothing to undo")
        raise CatalogError("changed since that write-back; left alone")
    current, now = read_file(target)
    ledger = None
    if row["kind"] == "sidecar":
        if dry_run:
            return True
        if row["existed"]:
            atomic_write(target, row["snapshot"], mtime_ns=row["mtime_ns_before"], expect=now)
        else:
            remove(target, expect=now)
    else:
        original = embed.restore(current, row["format"], row["snapshot"])
        if hash_buffer(row["format"], original).digest != hash_buffer(row["format"], current).digest:
            raise CatalogError("the restored file would have other image data; left alone")
        if dry_run:
            return True
        ledger = atomic_write(target, original, mtime_ns=row["mtime_ns_before"], expect=now)
    journal.restored(db, row, ledger=ledger)
    return True
