"""The library scan: walk the roots, diff against the ledger, hash and read what is new or changed.

A file whose size and mtime match its ledger row is never opened again. New and
changed files are inspected (identity, header facts, fingerprint) in batches by an
inspector (catalog.inspectors: worker processes, or threads); results are written
here, the single writer, in batches inside transactions, so a killed scan loses at
most one batch and a rerun simply continues. Files that vanished are marked
missing, never deleted, and a root that looks unmounted aborts before it can
mark anything missing.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from catalog import db as catalog_db
from catalog.db import db_text, db_texts, prefix_range
from catalog.settings import Config
from catalog.errors import RootUnavailable
from catalog.ledger import (BATCH_ROWS, LedgerBatch, catalogued_count, folder_last_seen, folder_ledger,
                            mark_moves, photo_fields, revive, sweep_missing)
from catalog.progress import progress_bar
from catalog.queries import library_counts
from catalog.similar.store import backfill_fingerprints
from catalog.walk import WalkReport, too_long_message, walk

if TYPE_CHECKING:
    from catalog.inspection import Inspection
    from catalog.inspectors import Inspector
log = logging.getLogger("catalog.scan")
# Files sent to the inspector at a time: enough to amortise a process round trip, few
# enough (in bytes too) that a stop waits for little more than one batch per worker.
INSPECT_BATCH_FILES = 32
INSPECT_BATCH_BYTES = 64 << 20


@dataclass
class ScanSummary:
    files_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    missing: int = 0
    revived: int = 0  # missing files back again, untouched (not read)
    errors: int = 0
    paths_too_long: int = 0  # files (recorded as errors) and folders the system refuses to open
    fingerprinted: int = 0  # photos catalogued before fingerprints existed, fingerprinted now
    photos: int = 0
    duplicate_files: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    failed_roots: list[str] = field(default_factory=list)
    unreadable_folders: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def normalise_roots(roots) -> list[str]:
    """Absolute, de-duplicated roots; a root inside another root is covered by it."""
    absolute = sorted({os.path.abspath(os.path.expanduser(os.fsdecode(r))) for r in roots})
    kept: list[str] = []
    for root in absolute:
        if not any(root == k or root.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(root)
    return kept


class Scanner:
    """One scan run: owns the batch of pending writes and the counters."""

    def __init__(self, db, config: Config, inspector: Inspector | None = None, *, progress: bool = True):
        self.db = db
        self.config = config
        self.inspector = inspector  # made at the first new file when None (see _submit), then ours to close
        self.own_inspector = inspector is None
        self._pending: list[tuple] = []  # (root, folder, name, st, old photo) for the next batch
        self._pending_bytes = 0
        self._in_flight: collections.deque = collections.deque()  # (pending list, future)
        self._window = max(2, config.scan.hash_workers * 2)  # batches submitted, not yet recorded
        self.now = catalog_db.now()
        self.summary = ScanSummary()
        self.report = WalkReport()
        self.batch = LedgerBatch(db, self.now)
        self._bar = progress_bar(unit=" files", desc="scan") if progress else None

    # -- writes ---------------------------------------------------------------------------
    def flush(self) -> None:
        self.batch.flush()

    def _record(self, root: str, folder: str, name: str, st, result: Inspection, old_photo) -> None:
        path_text, path_bytes = db_text(os.path.join(folder, name))
        photo_id = None
        batch = self.batch
        batch.touched.add(old_photo)
        if result.error is None:
            photo_id = result.identity.digest
            self.summary.bytes_hashed += result.identity.hashed_bytes
            batch.photos.append({"id": photo_id, "now": self.now, **photo_fields(result.facts),
                                 **result.fingerprint})
            batch.touched.add(photo_id)
            if old_photo and old_photo == result.identity.previous:  # same content, better identity
                batch.carried.append((old_photo, photo_id, path_text))
        else:
            self.summary.errors += 1
            log.info("%s: %s", path_text, result.error)
        batch.files.append({
            "path": path_text, "path_bytes": path_bytes, "root": db_text(root)[0],
            "folder": db_text(folder)[0], "name": db_text(name)[0], "photo_id": photo_id,
            "size": st.st_size if st else 0,
            "mtime_ns": catalog_db.REREAD_MTIME_NS if result.reread or st is None else st.st_mtime_ns,
            "status": "ok" if result.error is None else "error",
            "error": result.error, "error_kind": result.error_kind, "now": self.now,
        })
        if len(batch.files) >= BATCH_ROWS:
            self.flush()

    # -- the walk ---------------------------------------------------------------------------
    def scan_root(self, root: str) -> None:
        root_text = db_text(root)[0]
        if not os.path.isdir(root):
            state = "missing" if not os.path.lexists(root) else "not a folder"
            if catalogued := catalogued_count(self.db, *prefix_range(root_text)):
                raise RootUnavailable(
                    f"library root {root} is {state} but the catalogue holds {catalogued} files "
                    "under it: is the NAS share mounted? Nothing was marked missing."
                )
            raise RootUnavailable(f"library root {root} is {state}")
        lib = self.config.library
        found = 0
        gone: list[tuple[str, str]] = []  # (path, its folder's last listing) of files not found
        unreadable_before = len(self.report.unreadable)
        for folder in walk(root, extensions=lib.include_extensions, exclude=lib.exclude,
                           follow_symlinks=lib.follow_symlinks, report=self.report):
            folder_text = db_text(folder.path)[0]
            ledger = folder_ledger(self.db, folder_text)
            if not (folder.files or folder.too_long or ledger):
                continue
            for name in folder.too_long:  # cannot even be stat'ed: an error row says so
                from catalog.inspection import Inspection  # what reads files: not needed when none changed
                self.summary.files_seen += 1
                self.summary.paths_too_long += 1
                if ledger.pop(db_text(name)[0], None) is None:
                    self.summary.new += 1
                else:
                    self.summary.unchanged += 1
                path = os.path.join(folder.path, name)
                self._record(root, folder.path, name, None, Inspection(
                    error=too_long_message(path), error_kind="path_too_long"), None)
            unchanged = 0
            for (name, st), name_text in zip(folder.files, db_texts([name for name, _ in folder.files])):
                row = ledger.pop(name_text, None)
                if row and row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2] != "moved":
                    unchanged += 1
                    if row[3] is not None:
                        self.summary.errors += 1
                    if row[2] == "missing":  # back again, untouched: no need to read it
                        self.summary.revived += 1
                        revive(self.db, os.path.join(folder.path, name), row[3], self.now)
                    continue
                if row and row[2] in ("ok", "error"):
                    self.summary.changed += 1
                else:
                    self.summary.new += 1
                self._inspect(root, folder.path, name, st, row[4] if row else None)
            found += len(folder.files)
            self.summary.files_seen += len(folder.files)
            self.summary.unchanged += unchanged
            if self._bar is not None and unchanged:
                self._bar.update(unchanged)
            # Whatever present file is left in `ledger` was not found here: gone, unless the
            # root turns out to be unavailable (the sweep decides, after the whole walk).
            if left := [name for name, row in ledger.items() if row[2] in ("ok", "error")]:
                seen_before = folder_last_seen(self.db, folder_text)
                gone += [(os.path.join(folder_text, name), seen_before) for name in left]
            self.batch.seen_folders.append(folder_text)
        self._drain()
        self.flush()
        if len(self.report.unreadable) > unreadable_before and self.report.unreadable[unreadable_before] == root:
            raise RootUnavailable(f"library root {root} cannot be read; nothing was marked missing")
        if found == 0 and (catalogued := catalogued_count(self.db, *prefix_range(root_text))):
            raise RootUnavailable(
                f"library root {root} is suddenly empty but the catalogue holds {catalogued} files "
                "under it: is the NAS share mounted? Nothing was marked missing."
            )
        self.summary.missing += sweep_missing(self.db, self.now, root_text, gone,
                                              self.report.unreadable[unreadable_before:], self.report.skipped)

    # -- inspection: batches out to the inspector, results back in order ---------------------
    def _inspect(self, root: str, folder: str, name: str, st, old_photo) -> None:
        self._pending.append((root, folder, name, st, old_photo))
        self._pending_bytes += st.st_size
        if len(self._pending) >= INSPECT_BATCH_FILES or self._pending_bytes >= INSPECT_BATCH_BYTES:
            self._submit()

    def _submit(self) -> None:
        if not self._pending:
            return
        if self.inspector is None:  # what reads files: not even imported by a scan with nothing new
            from catalog.inspectors import make_inspector
            self.inspector = make_inspector(self.config.scan.inspector, self.config.scan.hash_workers)
        max_px, follow = self.config.scan.max_image_pixels, self.config.library.follow_symlinks
        items = [(os.path.join(folder, name), max_px, follow) for _, folder, name, _, _ in self._pending]
        self._in_flight.append((self._pending, self.inspector.submit(items)))
        self._pending, self._pending_bytes = [], 0
        while len(self._in_flight) > self._window:
            self._complete(*self._in_flight.popleft())

    def _drain(self) -> None:
        self._submit()
        while self._in_flight:
            self._complete(*self._in_flight.popleft())

    def _complete(self, batch: list[tuple], future) -> None:
        for (root, folder, name, st, old_photo), result in zip(batch, future.result(), strict=True):
            self._record(root, folder, name, st, result, old_photo)
        if self._bar is not None:
            self._bar.update(len(batch))

    def detect_moves(self) -> None:
        """A new path whose identity belongs to a missing file is that file, moved or renamed."""
        if not self.summary.new:
            return  # only paths first seen in this run (all counted new) can be moves: skip the scan
        for missing_since in mark_moves(self.db, self.now):
            self.summary.moved += 1
            self.summary.new -= 1
            if missing_since == self.now:
                self.summary.missing -= 1


def scan(db, config: Config, roots=None, *, progress: bool = True,
         inspector: Inspector | None = None) -> ScanSummary:
    """Scan `roots` (default: the configured ones) into the catalogue and return the summary.

    New and changed files are inspected by `inspector` (default: the one scan.inspector
    names, made at the first new file and closed here; one passed in is the caller's to close).
    """
    started = time.perf_counter()
    roots = normalise_roots(roots if roots else config.library.roots)
    run_id = catalog_db.start_run(db, "scan")
    scanner = Scanner(db, config, inspector, progress=progress)
    scanner.summary.run_id = run_id
    status, message = "failed", None
    try:
        try:
            for root in roots:
                try:
                    scanner.scan_root(root)
                except RootUnavailable as exc:
                    scanner.flush()
                    scanner.summary.failed_roots.append(root)
                    log.error("%s", exc)
                    message = str(exc) if message is None else f"{message}; {exc}"
        finally:
            if scanner.own_inspector and scanner.inspector is not None:
                scanner.inspector.close()
        scanner.detect_moves()
        scanner.summary.fingerprinted = backfill_fingerprints(db, config, progress=progress).made
        summary = scanner.summary
        summary.photos, summary.duplicate_files = library_counts(db).values()
        summary.unreadable_folders = list(scanner.report.unreadable)
        summary.paths_too_long += scanner.report.too_long
        summary.errors += scanner.report.too_long
        status = "partial" if (summary.errors or summary.failed_roots or summary.unreadable_folders) else "ok"
    finally:
        if scanner._bar is not None:
            scanner._bar.close()
        scanner.summary.seconds = round(time.perf_counter() - started, 3)
        catalog_db.finish_run(db, run_id, status, scanner.summary.as_dict(), message)
    return scanner.summary
