"""The library scan: walk the roots, diff against the ledger, hash and read what is new or changed.

A file whose size and mtime match its ledger row is never opened again. New and
changed files are inspected (identity + header facts) in a small thread pool;
results are written in batches inside transactions, so a killed scan loses at
most one batch and a rerun simply continues. Files that vanished are marked
missing, never deleted, and a root that looks unmounted aborts before it can
mark anything missing.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

from catalog import db as catalog_db
from catalog.db import db_text, prefix_range
from catalog.config import Config
from catalog.containers import BrokenImage
from catalog.errors import FileChanged, NotRegularFile, RootUnavailable
from catalog.identity import Identity, describe_non_image, hash_buffer, load, sniff
from catalog.imagefacts import ImageFacts, read_facts
from catalog.libfile import identity_stat, open_library_file
from catalog.progress import progress_bar
from catalog.queries import library_counts
from catalog.similar.store import backfill_fingerprints, fingerprint_columns
from catalog.walk import WalkReport, too_long_message, walk

log = logging.getLogger("catalog.scan")
BATCH_ROWS = 500


@dataclass
class ScanSummary:
    files_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    missing: int = 0
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


@dataclass(frozen=True)
class Inspection:
    identity: Identity | None = None
    facts: ImageFacts | None = None
    error: str | None = None
    error_kind: str | None = None
    reread: bool = False  # the next scan must read the file again, whatever its stat says
    fingerprint: dict = field(default_factory=dict)  # photos columns (catalog.similar.store)


def inspect_file(path: str, max_image_pixels: int, *, follow_symlinks: bool = True) -> Inspection:
    """Identity and facts of one file, or a readable error. Never raises for bad input.

    The file must stay the same (size, mtime, inode) from open to the last read: one
    that changes underneath (truncated, still being copied in) is reported as changed,
    and its ledger row makes the next scan read it again.
    """
    try:
        with open_library_file(path, follow_symlinks=follow_symlinks) as f:
            before = identity_stat(f)
            size = before[0]
            if size == 0:
                return Inspection(error="empty file (0 bytes)", error_kind="empty")
            try:
                buf = load(f, size)
                head = bytes(buf[:32])
                fmt = sniff(head)
                if fmt is None:
                    return Inspection(error=f"not an image: {describe_non_image(head)}",
                                      error_kind="not_an_image")
                identity = hash_buffer(fmt, buf)
                del buf
                f.seek(0)
                facts = read_facts(f, max_image_pixels=max_image_pixels)
                fingerprint = fingerprint_columns(f, facts.orientation, max_image_pixels)
            except BrokenImage:
                if identity_stat(f) != before:
                    raise FileChanged(errno.EIO, "changed") from None
                raise
            if identity_stat(f) != before:
                raise FileChanged(errno.EIO, "changed")
        return Inspection(identity=identity, facts=facts, fingerprint=fingerprint)
    except BrokenImage as exc:
        return Inspection(error=str(exc), error_kind=exc.kind)
    except FileChanged:
        return Inspection(error="the file changed while it was read (still being written?); "
                                "it will be read again by the next scan",
                          error_kind="changed_while_reading", reread=True)
    except NotRegularFile as exc:
        return Inspection(error=exc.strerror, error_kind="not_a_file")
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return Inspection(error=too_long_message(path), error_kind="path_too_long")
        return Inspection(error=f"cannot read file: {exc.strerror or exc}", error_kind="unreadable")


def normalise_roots(roots) -> list[str]:
    """Absolute, de-duplicated roots; a root inside another root is covered by it."""
    absolute = sorted({os.path.abspath(os.path.expanduser(os.fsdecode(r))) for r in roots})
    kept: list[str] = []
    for root in absolute:
        if not any(root == k or root.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(root)
    return kept


UPSERT_PHOTO = """
INSERT INTO photos (id, format, width, height, orientation, taken_at, camera_make, camera_model,
                    gps_lat, gps_lon, exif_error, first_seen, phash, aspect, tone, detail, fingerprint_error)
VALUES (:id, :format, :width, :height, :orientation, :taken_at, :camera_make, :camera_model,
        :gps_lat, :gps_lon, :exif_error, :now, :phash, :aspect, :tone, :detail, :fingerprint_error)
ON CONFLICT(id) DO UPDATE SET format = excluded.format, width = excluded.width,
    height = excluded.height, orientation = excluded.orientation, taken_at = excluded.taken_at,
    camera_make = excluded.camera_make, camera_model = excluded.camera_model,
    gps_lat = excluded.gps_lat, gps_lon = excluded.gps_lon, exif_error = excluded.exif_error,
    phash = excluded.phash, aspect = excluded.aspect, tone = excluded.tone, detail = excluded.detail,
    fingerprint_error = excluded.fingerprint_error
"""
UPSERT_FILE = """
INSERT INTO files (path, path_bytes, root, folder, name, photo_id, size, mtime_ns, status, error,
                   error_kind, first_seen, last_seen)
VALUES (:path, :path_bytes, :root, :folder, :name, :photo_id, :size, :mtime_ns, :status, :error,
        :error_kind, :now, :now)
ON CONFLICT(path) DO UPDATE SET path_bytes = excluded.path_bytes, root = excluded.root,
    photo_id = excluded.photo_id, size = excluded.size, mtime_ns = excluded.mtime_ns,
    status = excluded.status, error = excluded.error, error_kind = excluded.error_kind,
    last_seen = excluded.last_seen, missing_since = NULL, moved_to = NULL
"""


class Scanner:
    """One scan run: owns the batch of pending writes and the counters."""

    def __init__(self, db, config: Config, *, progress: bool = True):
        self.db = db
        self.config = config
        self.now = catalog_db.now()
        self.summary = ScanSummary()
        self.report = WalkReport()
        self._photos: list[dict] = []
        self._files: list[dict] = []
        self._seen_folders: list[str] = []
        self._seen_paths: list[str] = []
        self._touched: set[str] = set()  # photos whose search text (their places) changed
        self._carried: list[tuple[str, str, str]] = []  # (old photo, new photo, path) re-identified
        self._bar = progress_bar(unit=" files", desc="scan") if progress else None

    # -- writes ---------------------------------------------------------------------------
    def flush(self) -> None:
        if not (self._photos or self._files or self._seen_folders or self._seen_paths):
            return
        with self.db.atomic():
            conn = self.db.conn
            conn.executemany(UPSERT_PHOTO, self._photos)
            conn.executemany(UPSERT_FILE, self._files)
            for old, new, path in self._carried:
                catalog_db.carry_analysis(self.db, old, new, path)
            # Unchanged files: one statement per folder marks them seen.
            conn.executemany(
                "UPDATE files SET last_seen = ? WHERE folder = ? AND status IN ('ok', 'error')",
                [(self.now, f) for f in self._seen_folders],
            )
            conn.executemany(
                "UPDATE files SET last_seen = ? WHERE path = ? AND status IN ('ok', 'error')",
                [(self.now, p) for p in self._seen_paths],
            )
            catalog_db.refresh_search_text(self.db, self._touched)
        self._touched, self._carried = set(), []
        self._photos, self._files, self._seen_folders, self._seen_paths = [], [], [], []

    def _record(self, root: str, folder: str, name: str, st, result: Inspection, old_photo) -> None:
        path_text, path_bytes = db_text(os.path.join(folder, name))
        photo_id = None
        self._touched.add(old_photo)
        if result.error is None:
            photo_id = result.identity.digest
            self.summary.bytes_hashed += result.identity.hashed_bytes
            self._photos.append({"id": photo_id, "now": self.now, **_photo_fields(result.facts),
                                 **result.fingerprint})
            self._touched.add(photo_id)
            if old_photo and old_photo == result.identity.previous:  # same content, better identity
                self._carried.append((old_photo, photo_id, path_text))
        else:
            self.summary.errors += 1
            log.info("%s: %s", path_text, result.error)
        self._files.append({
            "path": path_text, "path_bytes": path_bytes, "root": db_text(root)[0],
            "folder": db_text(folder)[0], "name": db_text(name)[0], "photo_id": photo_id,
            "size": st.st_size if st else 0,
            "mtime_ns": catalog_db.REREAD_MTIME_NS if result.reread or st is None else st.st_mtime_ns,
            "status": "ok" if result.error is None else "error",
            "error": result.error, "error_kind": result.error_kind, "now": self.now,
        })
        if len(self._files) >= BATCH_ROWS:
            self.flush()

    # -- the walk ---------------------------------------------------------------------------
    def scan_root(self, root: str, pool: ThreadPoolExecutor) -> None:
        low, high = prefix_range(db_text(root)[0])
        catalogued = self.db.execute(
            "SELECT COUNT(*) FROM files WHERE path >= ? AND path < ? AND status IN ('ok', 'error')",
            [low, high],
        ).fetchone()[0]
        if not os.path.isdir(root):
            state = "missing" if not os.path.lexists(root) else "not a folder"
            if catalogued:
                raise RootUnavailable(
                    f"library root {root} is {state} but the catalogue holds {catalogued} files "
                    "under it: is the NAS share mounted? Nothing was marked missing."
                )
            raise RootUnavailable(f"library root {root} is {state}")
        lib = self.config.library
        max_px = self.config.scan.max_image_pixels
        in_flight: collections.deque = collections.deque()
        window = max(4, self.config.scan.hash_workers * 4)
        found = 0
        unreadable_before = len(self.report.unreadable)
        for folder in walk(root, extensions=lib.include_extensions, exclude=lib.exclude,
                           follow_symlinks=lib.follow_symlinks, report=self.report):
            if not folder.files and not folder.too_long:
                continue
            folder_text = db_text(folder.path)[0]
            ledger = {
                row[0]: row[1:]
                for row in self.db.execute(
                    "SELECT name, size, mtime_ns, status, error, photo_id FROM files WHERE folder = ?",
                    [folder_text],
                )
            }
            unchanged: list[str] = []
            for name in folder.too_long:  # cannot even be stat'ed: an error row says so
                self.summary.files_seen += 1
                self.summary.paths_too_long += 1
                if ledger.pop(db_text(name)[0], None) is None:
                    self.summary.new += 1
                else:
                    self.summary.unchanged += 1
                path = os.path.join(folder.path, name)
                self._record(root, folder.path, name, None, Inspection(
                    error=too_long_message(path), error_kind="path_too_long"), None)
            for name, st in folder.files:
                found += 1
                self.summary.files_seen += 1
                name_text = db_text(name)[0]
                row = ledger.pop(name_text, None)
                if row and row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2] != "moved":
                    self.summary.unchanged += 1
                    if row[3] is not None:
                        self.summary.errors += 1
                    if row[2] == "missing":  # back again, untouched: no need to read it
                        self._revive(os.path.join(folder.path, name), row[3])
                    unchanged.append(name_text)
                    if self._bar is not None:
                        self._bar.update()
                    continue
                if row and row[2] in ("ok", "error"):
                    self.summary.changed += 1
                else:
                    self.summary.new += 1
                future = pool.submit(inspect_file, os.path.join(folder.path, name), max_px,
                                     follow_symlinks=lib.follow_symlinks)
                in_flight.append((folder.path, name, st, future, row[4] if row else None))
                while len(in_flight) > window:
                    self._complete(root, in_flight.popleft())
            if unchanged:
                # Whatever is left in `ledger` was not found on disk: if none of it is
                # present, one statement marks the whole folder seen; else file by file.
                if any(row[2] in ("ok", "error") for row in ledger.values()):
                    self._seen_paths.extend(db_text(os.path.join(folder.path, n))[0] for n in unchanged)
                else:
                    self._seen_folders.append(folder_text)
        while in_flight:
            self._complete(root, in_flight.popleft())
        self.flush()
        if len(self.report.unreadable) > unreadable_before and self.report.unreadable[unreadable_before] == root:
            raise RootUnavailable(f"library root {root} cannot be read; nothing was marked missing")
        if found == 0 and catalogued:
            raise RootUnavailable(
                f"library root {root} is suddenly empty but the catalogue holds {catalogued} files "
                "under it: is the NAS share mounted? Nothing was marked missing."
            )
        self._sweep_missing(low, high, self.report.unreadable[unreadable_before:])

    def _complete(self, root: str, item) -> None:
        folder, name, st, future, old_photo = item
        self._record(root, folder, name, st, future.result(), old_photo)
        if self._bar is not None:
            self._bar.update()

    def _revive(self, path: str, error: str | None) -> None:
        self.db.execute(
            "UPDATE files SET status = ?, missing_since = NULL, last_seen = ? WHERE path = ?",
            ["error" if error else "ok", self.now, db_text(path)[0]],
        )

    def _sweep_missing(self, low: str, high: str, unreadable: list[str]) -> None:
        with self.db.atomic():
            # Files under folders we could not list are not gone: keep them as they were.
            for folder in unreadable:
                f_low, f_high = prefix_range(db_text(folder)[0])
                self.db.execute(
                    "UPDATE files SET last_seen = ? WHERE path >= ? AND path < ? "
                    "AND status IN ('ok', 'error')",
                    [self.now, f_low, f_high],
                )
            for path, _reason in self.report.skipped:
                self.db.execute("UPDATE files SET last_seen = ? WHERE path = ? AND status IN ('ok', 'error')",
                                [self.now, db_text(path)[0]])
            cursor = self.db.execute(
                "UPDATE files SET status = 'missing', missing_since = ? WHERE path >= ? AND path < ? "
                "AND status IN ('ok', 'error') AND last_seen < ?",
                [self.now, low, high, self.now],
            )
            self.summary.missing += cursor.rowcount
            if cursor.rowcount:
                gone = self.db.execute(
                    "SELECT DISTINCT photo_id FROM files WHERE status = 'missing' AND missing_since = ?",
                    [self.now]).fetchall()
                catalog_db.refresh_search_text(self.db, [r[0] for r in gone])

    def detect_moves(self) -> None:
        """A new path whose identity belongs to a missing file is that file, moved or renamed."""
        if not self.summary.new:
            return  # only paths first seen in this run (all counted new) can be moves: skip the scan
        rows = self.db.execute(
            """
            SELECT n.path, o.path, o.missing_since, n.photo_id FROM files n
            JOIN files o ON o.photo_id = n.photo_id AND o.status = 'missing'
            WHERE n.first_seen = ? AND n.status = 'ok'
            ORDER BY n.photo_id, n.path, o.path
            """,
            [self.now],
        ).fetchall()
        used_new, used_old = set(), set()
        with self.db.atomic():
            for new_path, old_path, missing_since, _photo in rows:
                if new_path in used_new or old_path in used_old:
                    continue
                used_new.add(new_path)
                used_old.add(old_path)
                self.db.execute(
                    "UPDATE files SET status = 'moved', moved_to = ? WHERE path = ?",
                    [new_path, old_path],
                )
                self.summary.moved += 1
                self.summary.new -= 1
                if missing_since == self.now:
                    self.summary.missing -= 1
            catalog_db.refresh_search_text(self.db, [r[3] for r in rows])


_PHOTO_FIELDS = tuple(f.name for f in fields(ImageFacts) if f.name != "frames")


def _photo_fields(facts: ImageFacts) -> dict:
    # Not asdict(): its recursive deep copy cost more than the row's insert (the facts are flat).
    return {name: getattr(facts, name) for name in _PHOTO_FIELDS}


def scan(db, config: Config, roots=None, *, progress: bool = True) -> ScanSummary:
    """Scan `roots` (default: the configured ones) into the catalogue and return the summary."""
    started = time.perf_counter()
    roots = normalise_roots(roots if roots else config.library.roots)
    run_id = catalog_db.start_run(db, "scan")
    scanner = Scanner(db, config, progress=progress)
    scanner.summary.run_id = run_id
    status, message = "failed", None
    try:
        with ThreadPoolExecutor(max_workers=config.scan.hash_workers) as pool:
            for root in roots:
                try:
                    scanner.scan_root(root, pool)
                except RootUnavailable as exc:
                    scanner.flush()
                    scanner.summary.failed_roots.append(root)
                    log.error("%s", exc)
                    message = str(exc) if message is None else f"{message}; {exc}"
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
