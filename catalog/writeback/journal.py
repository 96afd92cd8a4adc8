"""The write-back journal and state: written ahead of every rename, settled from what the file holds.

A row is inserted (status 'pending') with the snapshot to restore and the exact size, mtime
and SHA-256 the file will have once replaced, before the rename; so a kill at any moment
leaves a row `--undo` can judge. Only when the file on disk is found to hold those bytes is
the row marked 'done' and its keywords claimed as ours in writeback_state (and the ledger
moved on for a photo). A write that did not happen leaves no row and claims nothing.
"""

from __future__ import annotations

import hashlib
import json
import os

from catalog import db as catalog_db
from catalog.db import db_text
from catalog.writeback.atomic import Fingerprint, fingerprint, read_file
from catalog.errors import WriteBackError


def state(db, key: str) -> dict | None:
    """What we wrote into a target (the keywords and description we count as ours)."""
    return next(db.query("SELECT * FROM writeback_state WHERE target = ?", [key]), None)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def begin(db, *, run_id, target: str, real: str, path: str, kind: str, fmt: str,
          before: Fingerprint | None, snapshot: bytes | None, previous: dict | None,
          written: os.stat_result, sha256: str, claim: dict) -> int:
    """Journal a write before its rename: what to restore and what the file is about to be."""
    text, raw = db_text(target)
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO writeback_journal (run_id, target, target_bytes, path, kind, format, existed, snapshot, "
            "previous_state, mtime_ns_before, size_before, size_after, mtime_ns_after, sha256_after, claim, "
            "real_target, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            [run_id, text, raw, path, kind, fmt, int(before is not None), snapshot,
             json.dumps(previous) if previous else None, before.mtime_ns if before else None,
             before.size if before else None, written.st_size, written.st_mtime_ns, sha256,
             json.dumps(claim, ensure_ascii=False), os.fsencode(real) if real != target else None])
    return cursor.lastrowid


def drop(db, journal_id: int) -> None:
    """The rename did not happen: the row goes, nothing is claimed."""
    with db.atomic():
        db.execute("DELETE FROM writeback_journal WHERE id = ? AND status = 'pending'", [journal_id])


def written_file(row: dict) -> str:
    """The file a journal row wrote (for a symlinked photo: the link's target)."""
    if row.get("real_target"):
        return os.fsdecode(row["real_target"])
    return os.fsdecode(row["target_bytes"]) if row["target_bytes"] else row["target"]


def holds_the_write(row: dict) -> bool:
    """Whether the file is, byte for byte, what the row's write made of it."""
    path = written_file(row)
    found = fingerprint(path)
    if found is None or (found.size, found.mtime_ns) != (row["size_after"], row["mtime_ns_after"]):
        return False
    if not row.get("sha256_after"):
        return True  # an older row: size and mtime are all it recorded
    try:
        return digest(read_file(path)[0]) == row["sha256_after"]
    except (OSError, WriteBackError):
        return False


def untouched(row: dict) -> bool:
    """Whether the file is still as it was before the row's write (so the rename never happened)."""
    found = fingerprint(written_file(row))
    if not row["existed"]:
        return found is None
    return found is not None and (found.size, found.mtime_ns) == (row["size_before"], row["mtime_ns_before"])


def settle(db, journal_id: int) -> str:
    """Decide a pending row from the file: 'done' (claimed), 'dropped' (never written), 'pending'."""
    row = next(db.query("SELECT * FROM writeback_journal WHERE id = ?", [journal_id]), None)
    if row is None or row["status"] != "pending":
        return row["status"] if row else "dropped"
    if holds_the_write(row):
        confirm(db, row)
        return "done"
    if row["size_before"] is not None or not row["existed"]:
        if untouched(row):
            drop(db, journal_id)
            return "dropped"
    return "pending"  # changed by someone else since: --undo will leave it alone and say so


def settle_interrupted(db) -> dict[str, int]:
    """Rows a killed run left pending: claimed when the write landed, dropped when it never did."""
    counts: dict[str, int] = {}
    ids = [r["id"] for r in db.query(
        "SELECT j.id FROM writeback_journal j JOIN runs r ON r.id = j.run_id "
        "WHERE j.status = 'pending' AND j.undone_at IS NULL AND r.status != 'running'")]
    for journal_id in ids:
        outcome = settle(db, journal_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def confirm(db, row: dict) -> None:
    """The file holds our write: the row is done, the keywords are ours, the ledger moves on."""
    claim = json.loads(row["claim"]) if row.get("claim") else None
    with db.atomic():
        db.execute("UPDATE writeback_journal SET status = 'done' WHERE id = ?", [row["id"]])
        if claim:
            db.execute("INSERT OR REPLACE INTO writeback_state (target, path, kind, photo_id, keywords, description, "
                       "written_at, run_id) VALUES (:target, :path, :kind, :photo_id, :keywords, :description, "
                       ":written_at, :run_id)", claim)
        if row["kind"] == "embed":  # the photo changed on purpose: the next scan must not re-read it
            _move_ledger(db, row, row["size_after"], row["mtime_ns_after"])


def claim_of(*, key: str, row: dict, kind: str, keywords, description: str | None, run_id) -> dict:
    """The writeback_state row a write will claim once it is confirmed."""
    return {"target": key, "path": row["path"], "kind": kind, "photo_id": row["photo_id"],
            "keywords": json.dumps(list(keywords), ensure_ascii=False), "description": description,
            "written_at": catalog_db.now(), "run_id": run_id}


def restored(db, row: dict, *, ledger: os.stat_result | None) -> None:
    """After an undo: the previous state back, the row marked undone, the ledger on the old file."""
    claim = json.loads(row["claim"]) if row.get("claim") else None
    key = claim["target"] if claim else row["target"]
    previous = json.loads(row["previous_state"]) if row["previous_state"] else None
    with db.atomic():
        if ledger is not None:
            _move_ledger(db, row, ledger.st_size, ledger.st_mtime_ns)
        if previous:
            db.execute("INSERT OR REPLACE INTO writeback_state (target, path, kind, photo_id, keywords, "
                       "description, written_at, run_id) VALUES (:target, :path, :kind, :photo_id, :keywords, "
                       ":description, :written_at, :run_id)", previous)
        else:
            db.execute("DELETE FROM writeback_state WHERE target = ?", [key])
        db.execute("UPDATE writeback_journal SET undone_at = ?, status = 'done' WHERE id = ?",
                   [catalog_db.now(), row["id"]])


def _move_ledger(db, row: dict, size: int, mtime_ns: int) -> None:
    """The photo's ledger entries follow our write: by the path written and by a link's target."""
    for path in {row["path"], db_text(written_file(row))[0]}:
        db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", [size, mtime_ns, path])
