"""The analysis stage: every unique photo analysed once, at the rate the service allows.

Pending photos are read from the database in pages (memory stays flat), each is
prepared (catalog.prepare) and sent through the configured analyzer by a small
thread pool, and every answer is committed the moment it arrives, so a killed
run never pays twice for an analysis. Failures are recorded with their reason
and attempt count; a refused API key stops the run with nothing marked failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

from catalog import db as catalog_db
from catalog.analyzers import REGISTRY, Analysis
from catalog.config import Config
from catalog.errors import AnalysisFailed, AuthenticationFailed, CatalogError, ConfigError
from catalog.progress import progress_bar
from catalog.thumbnails import Thumbnail, make_thumbnail, store_thumbnail

log = logging.getLogger("catalog.analyze")
PAGE = 200
DEFAULT_TOKEN_GUESS = 1250  # the contract's example answer, until we have our own history


@dataclass
class AnalyzeSummary:
    analyzer: str = ""
    pending: int = 0
    analysed: int = 0
    failed: int = 0
    skipped: int = 0  # left for a later run by the budget
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    tokens_used: int = 0
    upload_bytes: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped early, if it did
    run_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def make_analyzer(config: Config):
    """The configured back-end, built from the registry (the one seam for analyzers)."""
    import catalog.analyzers.offline  # noqa: F401  (registers "offline")

    name = config.analyzer_name()
    if name == "imgtags":
        import catalog.analyzers.imgtags  # noqa: F401

        key = config.api_key()
        if not key:
            raise ConfigError(f"analyzer imgtags needs an API key in ${config.imgtags.api_key_env}")
        a = config.analysis
        return REGISTRY["imgtags"](
            api_key=key, base_url=config.imgtags_base_url(), timeout=a.timeout_seconds,
            requests_per_minute=a.requests_per_minute, max_retries=a.max_retries,
            max_answer_bytes=a.max_answer_bytes, max_rate_limit_wait=a.max_rate_limit_wait_seconds,
            breaker_failures=a.breaker_failures,
        )
    if name not in REGISTRY:
        raise ConfigError(f"unknown analyzer {name!r}: choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()


SELECT_PENDING = """
SELECT p.id, p.first_seen, p.taken_at, p.camera_make, p.camera_model, p.gps_lat, p.orientation,
       f.path, f.path_bytes, f.size
FROM photos p
JOIN files f ON f.path = (SELECT path FROM files WHERE photo_id = p.id AND status = 'ok'
                          {scope} ORDER BY path LIMIT 1)
WHERE ({reanalyze} OR p.analysis_status IS NULL OR p.analysis_status = 'pending'
       OR (p.analysis_status = 'failed' AND p.analysis_permanent = 0 AND p.attempts < :max_attempts))
  AND {window}
ORDER BY p.first_seen, p.id
LIMIT :page
"""


def pending_photos(db, config: Config, *, reanalyze=False, paths=None, limit=None):
    """Photos to analyse, oldest first, streamed a page at a time."""
    scope, params = catalog_db.path_scope_sql(paths)
    sql = SELECT_PENDING.format(scope=scope, reanalyze="1" if reanalyze else "0",
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
    sql = SELECT_PENDING.format(scope="", reanalyze="1" if reanalyze else "0",
                                window="p.id IN (SELECT value FROM json_each(:ids))")
    ids = list(photo_ids)
    return list(db.query(sql, {"ids": json.dumps(ids), "max_attempts": config.analysis.max_attempts,
                               "page": len(ids)}))


def count_pending(db, config, *, reanalyze=False, paths=None, limit=None) -> tuple[int, int]:
    """How many photos would be sent, and an upper bound of their upload bytes."""
    count = size = 0
    cap = config.analysis.max_upload_bytes
    for row in pending_photos(db, config, reanalyze=reanalyze, paths=paths, limit=limit):
        count += 1
        size += min(row["size"], cap)
    return count, size


def average_tokens(db, provider: str) -> float | None:
    row = db.execute("SELECT AVG(tokens_used), COUNT(*) FROM photos WHERE provider = ? AND "
                     "analysis_status = 'done'", [provider]).fetchone()
    return row[0] if row[1] else None


def _prepare_and_analyze(row: dict, analyzer, config: Config) -> tuple[Analysis, int, Thumbnail | None]:
    from catalog.prepare import prepare_upload

    a = config.analysis
    upload = prepare_upload(catalog_db.fs_path(row), max_upload_bytes=a.max_upload_bytes,
                            send_location=a.send_location, max_edge=a.max_edge or None,
                            max_image_pixels=config.scan.max_image_pixels)
    facts = {"make": row["camera_make"], "model": row["camera_model"], "taken_at": row["taken_at"],
             "orientation": row["orientation"], "gps_lat": row["gps_lat"]}
    upload = dataclasses.replace(upload, exif={**upload.exif, **{k: v for k, v in facts.items() if v is not None}})
    thumbnail = make_thumbnail(upload.data)  # from the upright, GPS-free upload: cheap
    try:
        return analyzer.analyze(upload), len(upload.data), thumbnail
    except AnalysisFailed as exc:
        exc.thumbnail = thumbnail  # stored with the failure: the photo can still be browsed
        raise


STORE_DONE = """
UPDATE photos SET analysis_status = 'done', analysis_error = NULL, analysis_permanent = 0,
    attempts = attempts + 1, last_attempt_at = :now, analysed_at = :now,
    tags = :tags, description = :description, objects = :objects, dominant_color = :dominant_color,
    palette = :palette, scene = :scene, mood = :mood, safe_adult = :safe_adult,
    safe_violence = :safe_violence, shape = :orientation, provider = :provider, model = :model,
    tokens_used = :tokens_used, processing_time_ms = :processing_time_ms, raw_response = :raw
WHERE id = :id
"""


def store_analysis(db, photo_id: str, analysis: Analysis, thumbnail: Thumbnail | None = None) -> None:
    values = asdict(analysis)
    for key in ("tags", "objects", "palette"):
        values[key] = json.dumps(list(values[key]), ensure_ascii=False)
    values["raw"] = json.dumps(values["raw"], ensure_ascii=False) if values["raw"] is not None else None
    with db.atomic():
        db.execute(STORE_DONE, {**values, "id": photo_id, "now": catalog_db.now()})
        catalog_db.refresh_search_text(db, [photo_id])
        catalog_db.store_photo_colors(db, photo_id, analysis.dominant_color, analysis.palette)
        store_thumbnail(db, photo_id, thumbnail)


def store_failure(db, photo_id: str, message: str, permanent: bool,
                  thumbnail: Thumbnail | None = None) -> None:
    with db.atomic():
        db.execute(
            "UPDATE photos SET analysis_status = 'failed', analysis_error = ?, analysis_permanent = ?, "
            "attempts = attempts + 1, last_attempt_at = ? WHERE id = ?",
            [message[:500], 1 if permanent else 0, catalog_db.now(), photo_id],
        )
        store_thumbnail(db, photo_id, thumbnail)


class AnalysisRun:
    """One run's worth of analysis: shared analyzer, budget, counters. Feed it rows in batches.

    The CLI feeds it every pending photo at once; the Prefect flow feeds it one batch per
    task, so the throttle and the budget span the whole run.
    """

    def __init__(self, db, config: Config, analyzer, *, progress_total: int | None = None):
        self.db, self.config, self.analyzer = db, config, analyzer
        self.summary = AnalyzeSummary(analyzer=analyzer.name)
        self.stats = getattr(analyzer, "stats", None)
        self._baseline = self.stats.snapshot() if self.stats else None
        self.token_guess = average_tokens(db, analyzer.name) or (
            0 if analyzer.name == "offline" else DEFAULT_TOKEN_GUESS)
        self.bar = (progress_bar(total=progress_total, unit=" photos", desc="analyse")
                    if progress_total is not None else None)
        self._in_flight: dict[Future, dict] = {}
        self._started = time.perf_counter()

    def _requests_sent(self) -> int:
        if self.stats is None:
            return self.summary.analysed + self.summary.failed
        return int(self.stats.snapshot()["requests"] - self._baseline["requests"])

    def budget_reached(self) -> str | None:
        a, s = self.config.analysis, self.summary
        if a.max_requests and self._requests_sent() + len(self._in_flight) >= a.max_requests:
            return f"request budget of {a.max_requests} reached"
        if a.max_tokens and s.tokens_used + len(self._in_flight) * self.token_guess >= a.max_tokens:
            return f"token budget of {a.max_tokens} reached"
        return None

    def _collect(self, future: Future) -> None:
        row = self._in_flight.pop(future)
        s = self.summary
        try:
            analysis, size, thumbnail = future.result()
        except AnalysisFailed as exc:
            s.failed += 1
            store_failure(self.db, row["id"], str(exc), exc.permanent, getattr(exc, "thumbnail", None))
            log.warning("%s: %s", row["path"], exc)
        except AuthenticationFailed:
            raise
        except CatalogError as exc:  # PreparationFailed: the file cannot become an upload
            s.failed += 1
            store_failure(self.db, row["id"], str(exc), True)
            log.warning("%s: %s", row["path"], exc)
        else:
            store_analysis(self.db, row["id"], analysis, thumbnail)
            s.analysed += 1
            s.tokens_used += analysis.tokens_used
            s.upload_bytes += size
        if self.bar is not None:
            self.bar.update()

    def _drain(self, until: int) -> None:
        while len(self._in_flight) > until:
            for future in wait(list(self._in_flight), return_when=FIRST_COMPLETED).done:
                self._collect(future)

    def process(self, rows) -> bool:
        """Analyse these rows; False once the budget stops the run (the rest stays pending)."""
        a = self.config.analysis
        pool = ThreadPoolExecutor(max_workers=a.concurrency)
        try:
            for row in rows:
                self.summary.stopped = self.budget_reached()
                while self.summary.stopped and self._in_flight:
                    self._drain(len(self._in_flight) - 1)
                    self.summary.stopped = self.budget_reached()
                if self.summary.stopped:
                    return False
                self._in_flight[pool.submit(_prepare_and_analyze, row, self.analyzer, self.config)] = row
                self._drain(a.concurrency * 2 - 1)
            self._drain(0)
            return True
        except AuthenticationFailed as exc:
            self.summary.stopped = str(exc)
            pool.shutdown(wait=True, cancel_futures=True)
            for future in list(self._in_flight):  # keep what was already paid for
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._collect(future)
            self._in_flight.clear()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> AnalyzeSummary:
        s = self.summary
        if self.bar is not None:
            self.bar.close()
        if self.stats is not None:
            now = self.stats.snapshot()
            s.requests, s.rate_limited, s.retries = (
                int(now[k] - self._baseline[k]) for k in ("requests", "rate_limited", "retries"))
        s.seconds = round(time.perf_counter() - self._started, 3)
        if s.stopped and s.pending:
            s.skipped = max(0, s.pending - s.analysed - s.failed)
        return s


def analyze(db, config: Config, *, limit=None, reanalyze=False, paths=None, analyzer=None,
            progress=True) -> AnalyzeSummary:
    """Analyse pending photos; returns the summary. Raises AuthenticationFailed on a refused key."""
    own_analyzer = analyzer is None
    analyzer = analyzer or make_analyzer(config)
    pending = count_pending(db, config, reanalyze=reanalyze, paths=paths, limit=limit)[0]
    run = AnalysisRun(db, config, analyzer, progress_total=pending if progress else None)
    run.summary.pending = pending
    run.summary.run_id = catalog_db.start_run(db, "analyze")
    status, message = "failed", None
    try:
        run.process(pending_photos(db, config, reanalyze=reanalyze, paths=paths, limit=limit))
        status = "partial" if run.summary.failed or run.summary.stopped else "ok"
    except AuthenticationFailed as exc:
        message = str(exc)
        raise
    finally:
        summary = run.finish()
        catalog_db.finish_run(db, summary.run_id, status, summary.as_dict(), message or summary.stopped)
        close = getattr(analyzer, "close", None)
        if own_analyzer and close:
            close()
    return summary
