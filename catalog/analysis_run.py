"""One analysis run: pending rows -> prepared uploads -> the analyzer -> stored answers.

A small thread pool sends the photos; every answer is committed the moment it arrives, so
a killed run never pays twice for an analysis. Failures are recorded with their reason;
only a failure that is the photo's own spends one of its attempts. A refused API key, an
exhausted quota or a service that keeps failing stops the run with nothing marked failed;
SIGTERM/SIGINT stop it within seconds, keeping every answer already received. A copy of an
analysed photo takes its answer instead of a request (catalog.reuse).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

from catalog import db as catalog_db
from catalog.analysis_db import DEFAULT_TOKEN_GUESS, average_tokens, store_analysis, store_failure
from catalog.analyzers import Analysis
from catalog.analyzers.storable import clean_text, storable
from catalog.settings import Config
from catalog.enrichers.stage import EnricherQueue
from catalog.errors import (AnalysisFailed, AuthenticationFailed, CatalogError, FileUnreadable, Interrupted,
                            StageStopped)
from catalog.progress import progress_bar
from catalog.reuse import CopyReuse
from catalog.routing import Router
from catalog.sources import enricher_row, store_rows

log = logging.getLogger("catalog.analyze")
INTERRUPT_GRACE = 3.0  # seconds a stopped run waits for answers already on their way


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
    enriched: int = 0  # photos whose enricher rows were stored
    kept_local: int = 0  # photos a cloud back-end never saw: local_only, or rated adult (catalog.routing)
    reused: int = 0  # copies that took their analysed original's answer: requests saved (catalog.reuse)
    run_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _prepare_and_analyze(row: dict, analyzer, config: Config, rate=None) -> tuple[Analysis, int]:
    from catalog.prepare import prepare_upload

    if rate is not None:  # the local safety model decides whether this photo may leave the machine
        analyzer, row["safety"] = rate(row)
    row["source"] = analyzer.name
    a = config.analysis
    try:
        upload = prepare_upload(catalog_db.fs_path(row), max_upload_bytes=a.max_upload_bytes,
                                send_location=a.send_location, max_edge=a.max_edge or None,
                                max_image_pixels=config.scan.max_image_pixels)
    except FileUnreadable as exc:  # moved, renamed, EACCES, EIO on the NAS: not the file's fault
        raise AnalysisFailed(f"{exc}; tried again on a later run", spends_attempt=False) from exc
    facts = {"make": row["camera_make"], "model": row["camera_model"], "taken_at": row["taken_at"],
             "orientation": row["orientation"], "gps_lat": row["gps_lat"]}
    upload = dataclasses.replace(upload, exif={**upload.exif, **{k: v for k, v in facts.items() if v is not None}})
    return analyzer.analyze(upload), len(upload.data)  # thumbnails are their own stage (catalog.thumbnails)


class LocalSender:
    """Photos analysed in this process by a small thread pool (the default; catalog.spread sends
    them to a Dask cluster instead). `window`: photos kept in flight beyond the one waited for."""

    def __init__(self, config: Config):
        self.config = config
        self.pool = ThreadPoolExecutor(max_workers=config.analysis.concurrency)
        self.window = config.analysis.concurrency * 2 - 1

    def send(self, row: dict, analyzer, rate) -> Future:
        """A future of (Analysis, upload size) for one photo."""
        return self.pool.submit(_prepare_and_analyze, row, analyzer, self.config, rate)

    def flush(self) -> None:
        """Nothing waits in a batch here."""

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class AnalysisRun:
    """One run's worth of analysis: shared analyzer, budget, counters. Feed it rows in batches.

    The CLI feeds it every pending photo at once; the Prefect flow feeds it one batch per
    task, so the throttle, the budget and a stop (quota, outage) span the whole run.
    """

    def __init__(self, db, config: Config, analyzer, *, progress_total: int | None = None, reuse: bool = True,
                 sender=None):
        """`sender(run)`: what sends the photos (default: LocalSender, threads in this process)."""
        self.db, self.config, self.analyzer = db, config, analyzer
        self._open_sender = sender or (lambda run: LocalSender(run.config))
        self._sender = None
        self.reuse = CopyReuse(db, reuse and config.analysis.reuse_for_copies)
        self.summary = AnalyzeSummary(analyzer=analyzer.name)
        self.stats = getattr(analyzer, "stats", None)
        self.secrets = tuple(getattr(analyzer, "secrets", ()))
        self.answers = 0  # answers received from the service (paid for), kept or not
        self.halted: str | None = None  # the service can take no more this run (StageStopped)
        self._baseline = self.stats.snapshot() if self.stats else None
        self.token_guess = average_tokens(db, analyzer.name) or (
            0 if analyzer.name == "offline" else DEFAULT_TOKEN_GUESS)
        self.bar = (progress_bar(total=progress_total, unit=" photos", desc="analyse")
                    if progress_total is not None else None)
        self._in_flight: dict[Future, dict] = {}
        self.enrich = EnricherQueue(db, config)
        self.router = Router(config, analyzer, self.enrich)
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

    def _text(self, value: object) -> str:
        return clean_text(value, 500, self.secrets)

    def _fail(self, row: dict, message: str, *, permanent: bool, spends_attempt: bool = True,
              raw: str | None = None) -> None:
        self.summary.failed += 1
        store_failure(self.db, row["id"], self._text(message), permanent,
                      spends_attempt=spends_attempt, raw=raw)
        log.warning("%s: %s", row["path"], self._text(message))

    def _collect(self, future: Future) -> None:
        row = self._in_flight.pop(future)
        try:
            analysis, size = future.result()
        except AnalysisFailed as exc:
            if exc.status is not None and 200 <= exc.status < 300:
                self.answers += 1
            self._fail(row, str(exc), permanent=exc.permanent, spends_attempt=exc.spends_attempt)
        except AuthenticationFailed:
            raise
        except StageStopped as exc:  # quota, outage: nothing marked failed, no attempt spent
            self.halted = self.halted or self._text(exc)
        except CatalogError as exc:  # PreparationFailed: the file cannot become an upload
            self._fail(row, str(exc), permanent=True)
        except Exception as exc:  # a surprise in one photo never stops the run
            log.debug("unexpected error analysing %s", row["path"], exc_info=True)
            self._fail(row, f"unexpected {type(exc).__name__}: {exc}", permanent=False)
        else:
            self.answers += 1
            self._keep(row, analysis, size)
        self.reuse.finished(row["id"])
        if self.bar is not None:
            self.bar.update()

    def _keep(self, row: dict, analysis: Analysis, size: int) -> None:
        s = self.summary
        try:
            stored = store_analysis(self.db, row["id"], analysis, self.secrets, source=row["source"])
            if row.get("safety") is not None:  # rated before the upload: kept, not run again
                with self.db.atomic():
                    store_rows(self.db, [enricher_row(row["id"], row["safety"])])
        except Exception as exc:  # e.g. the disk is full: record it, keep the answer, keep going
            log.debug("storing the answer for %s failed", row["path"], exc_info=True)
            kept = storable(analysis, self.secrets).raw
            self._fail(row, f"the answer could not be stored: {type(exc).__name__}: {exc}", permanent=False,
                       raw=json.dumps(kept, ensure_ascii=True) if kept is not None else None)
            return
        s.analysed += 1
        s.kept_local += row["source"] != self.analyzer.name
        s.tokens_used += stored["tokens_used"]  # as stored: clamped, never a second cleaning pass
        s.upload_bytes += size
        if "enriched" in row:  # enriched where it was analysed (a Dask worker: catalog.spread)
            self.enrich.take(row, row.pop("enriched"))
        else:
            self.enrich.submit_missing(row)  # the workers read the file themselves: the API stage goes on

    def _reused(self, row: dict) -> None:
        self.summary.reused += 1
        self.enrich.submit_missing(row)
        if self.bar is not None:
            self.bar.update()

    def _drain(self, until: int) -> None:
        while len(self._in_flight) > until:
            self._sender.flush()  # a part-filled batch goes now: something waits for it
            for future in wait(list(self._in_flight), return_when=FIRST_COMPLETED).done:
                self._collect(future)
            self.enrich.poll()

    def _stop_reason(self) -> str | None:
        return self.halted or self.budget_reached()

    def _settle(self, grace: float) -> None:
        """After a stop: keep the answers that arrive within `grace` seconds; forget the rest."""
        done = wait(list(self._in_flight), timeout=grace).done
        for future in list(self._in_flight):
            if future in done and future.exception() is None:
                self._collect(future)
        self._in_flight.clear()

    def process(self, rows) -> bool:
        """Analyse these rows; False once a budget or the service stops the run (the rest stays pending)."""
        pool = self._sender = self._open_sender(self)
        rows = iter(rows)
        try:
            while (row := self.reuse.next_ready() or next(rows, None)) or self._in_flight:
                if row is None:  # copies may be waiting for these answers
                    self._drain(len(self._in_flight) - 1)
                    continue
                self.summary.stopped = self._stop_reason()
                while self.summary.stopped and self._in_flight:
                    self._drain(len(self._in_flight) - 1)
                    self.summary.stopped = self._stop_reason()
                if self.summary.stopped:
                    return False
                analyzer = self.router.choose(row)
                if self.reuse.take(row, analyzer.name):
                    self._reused(row)
                    continue
                if self.reuse.wait(row, analyzer.name, {r["id"] for r in self._in_flight.values()}):
                    continue
                rate = self.router.rate if self.router.destination(row) == "rated" else None
                self._in_flight[pool.send(row, analyzer, rate)] = row
                self._drain(pool.window)
            self.summary.stopped = self.halted
            return not self.halted
        except AuthenticationFailed as exc:
            self.summary.stopped = self._text(exc)
            pool.shutdown(wait=True, cancel_futures=True)
            self._settle(0)  # keep what was already paid for
            raise
        except BaseException as exc:  # SIGTERM, SIGINT (or Prefect's TerminationSignal): stop within seconds
            self.summary.stopped = "interrupted"
            self.enrich.stop()
            stop = getattr(self.analyzer, "stop", None)
            if stop:  # no new request starts, no 429 wait goes on
                stop(exc if isinstance(exc, Exception) else Interrupted("interrupted"))
            pool.shutdown(wait=False, cancel_futures=True)
            self._settle(INTERRUPT_GRACE)
            raise
        finally:
            pool.shutdown(wait=not self._in_flight and self.summary.stopped != "interrupted",
                          cancel_futures=True)

    def enrich_missing(self, paths=None, limit=None) -> None:
        """The analysed photos (under `paths`) still missing a configured enricher get it now;
        returns once every enricher of this run is done."""
        try:
            self.enrich.backfill(paths, limit)
            self.enrich.settle()
        except BaseException:
            self.summary.stopped = self.summary.stopped or "interrupted"
            raise

    def finish(self) -> AnalyzeSummary:
        s = self.summary
        self.enrich.close()
        s.enriched = self.enrich.stored
        if self.bar is not None:
            self.bar.close()
        if self.stats is not None:
            now = self.stats.snapshot()
            s.requests, s.rate_limited, s.retries = (
                int(now[k] - self._baseline[k]) for k in ("requests", "rate_limited", "retries"))
        s.seconds = round(time.perf_counter() - self._started, 3)
        if s.stopped and s.pending:
            s.skipped = max(0, s.pending - s.analysed - s.failed - s.reused)
        return s
