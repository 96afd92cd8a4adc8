"""Undo a write-back run from its journal: the previous metadata back, byte for byte.

A file changed since that run (by someone else, or a later write-back) is left
alone and reported: undo never overwrites work it does not know about.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from catalog import db as catalog_db
from catalog.errors import CatalogError
from catalog.identity import hash_buffer
from catalog.writeback import embed
from catalog.writeback.atomic import atomic_write

log = logging.getLogger("catalog.writeback")


@dataclass
class UndoSummary:
    run_id: int
    restored: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def undo(db, run_id: int) -> UndoSummary:
    rows = list(db.query("SELECT * FROM writeback_journal WHERE run_id = ? AND undone_at IS NULL "
                         "ORDER BY id DESC", [run_id]))
    if not rows and not db.execute("SELECT 1 FROM writeback_journal WHERE run_id = ?", [run_id]).fetchone():
        raise CatalogError(f"run {run_id} wrote nothing back (see `catalog runs`)")
    summary = UndoSummary(run_id)
    for row in rows:
        target = os.fsdecode(row["target_bytes"]) if row["target_bytes"] else row["target"]
        try:
            _undo_one(db, row, target)
            summary.restored += 1
        except (OSError, CatalogError) as exc:
            summary.skipped += 1
            message = f"{row['target']}: {exc.strerror if isinstance(exc, OSError) else exc}"
            summary.problems.append(message)
            log.warning("%s", message)
    return summary


def _undo_one(db, row: dict, target: str) -> None:
    if row["size_after"] is None:
        raise CatalogError("that write never finished (the run was interrupted); nothing to undo")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise CatalogError("the file is gone; nothing to undo") from None
    if (st.st_size, st.st_mtime_ns) != (row["size_after"], row["mtime_ns_after"]):
        raise CatalogError("changed since that write-back; left alone")
    ledger = None
    if row["kind"] == "sidecar":
        if row["existed"]:
            atomic_write(target, row["snapshot"], mtime_ns=row["mtime_ns_before"])
        else:
            os.unlink(target)
    else:
        with open(target, "rb") as f:
            current = f.read()
        original = embed.restore(current, row["format"], row["snapshot"])
        if hash_buffer(row["format"], original).digest != hash_buffer(row["format"], current).digest:
            raise CatalogError("the restored file would have other image data; left alone")
        ledger = atomic_write(target, original, mtime_ns=row["mtime_ns_before"])
    with db.atomic():
        if ledger is not None:
            db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                       [ledger.st_size, ledger.st_mtime_ns, row["path"]])
        previous = json.loads(row["previous_state"]) if row["previous_state"] else None
        if previous:
            db.execute("INSERT OR REPLACE INTO writeback_state (target, path, kind, photo_id, keywords, "
                       "description, written_at, run_id) VALUES (:target, :path, :kind, :photo_id, :keywords, "
                       ":description, :written_at, :run_id)", previous)
        else:
            db.execute("DELETE FROM writeback_state WHERE target = ?", [row["target"]])
        db.execute("UPDATE writeback_journal SET undone_at = ? WHERE id = ?", [catalog_db.now(), row["id"]])
