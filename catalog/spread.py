"""Analysis spread over other processes (Dask workers): batches of plain rows out, answers back.

The worker side (`analyse_rows`) reads each file from the shared mount, prepares the upload,
asks the analyzer (routing included) and runs the photo's missing enrichers; it never opens
the database and returns plain data. The flow side (`BatchSender`) is an `AnalysisRun`
sender: it gathers photos into batches, hands each to `send_batch` (the flow submits it to
its task runner) and turns the answers back into each photo's future, so the run stores
them in this process, the single SQLite writer, exactly as it stores its own threads'.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from catalog import db as catalog_db
from catalog.analysis_run import _prepare_and_analyze
from catalog.analyzers import Analysis
from catalog.errors import AnalysisFailed, CatalogError, ServiceDown
from catalog.settings import Config

STATS = ("requests", "rate_limited", "retries", "gave_up", "waited_seconds", "bytes_read")


@dataclass
class Answer:
    """What became of one photo on a worker, as plain data."""

    analysis: Analysis | None = None
    size: int = 0
    error: CatalogError | None = None  # AnalysisFailed, StageStopped, AuthenticationFailed, ...
    unexpected: str = ""  # any other exception, as the one line the run records
    source: str = ""  # the analyzer that answered (routing may have kept the photo local)
    safety: Any = None  # the safety model's rating, when routing asked for one
    enriched: Any = None  # EnrichResult of the photo's missing enrichers, run after its answer


@dataclass
class Batch:
    answers: list[Answer]
    stats: dict[str, float] = field(default_factory=dict)  # the batch's share of the HTTP counters


def _facts(row: dict) -> dict:
    return {k: row.get(k) for k in ("gps_lat", "gps_lon", "taken_at")}


class InlineRating:
    """The routing's safety model on a worker: run here, in the worker's own process."""

    def __init__(self, config: Config):
        self.config = config

    def ensure_pool(self, *names: str) -> None:
        """Nothing to open: the model loads in this process on first use."""

    def rate(self, row: dict):
        from catalog.enrichers.run import run_enrichers

        return run_enrichers(catalog_db.fs_path(row), ["safety"], _facts(row),
                             max_image_pixels=self.config.scan.max_image_pixels)


def _analyse_one(row: dict, router, config: Config) -> Answer:
    analyzer = router.choose(row)
    rate = router.rate if router.destination(row) == "rated" else None
    try:
        analysis, size = _prepare_and_analyze(row, analyzer, config, rate)
    except CatalogError as exc:
        return Answer(error=exc, source=row.get("source", ""), safety=row.get("safety"))
    except Exception as exc:  # noqa: BLE001 - recorded against the photo, like the run's own threads do
        return Answer(unexpected=f"unexpected {type(exc).__name__}: {exc}", source=row.get("source", ""),
                      safety=row.get("safety"))
    enriched = None
    if row.get("enrich"):
        from catalog.enrichers.run import run_enrichers

        enriched = run_enrichers(catalog_db.fs_path(row), row["enrich"], _facts(row),
                                 max_image_pixels=config.scan.max_image_pixels)
    return Answer(analysis, size, source=row["source"], safety=row.get("safety"), enriched=enriched)


def _shared(gate: Callable[[], None]) -> None:
    """Pass the shared rate limit; if it cannot be asked (its server is away), analysis stops for
    this run with one line and nothing marked failed."""
    try:
        gate()
    except Exception as exc:  # noqa: BLE001 - whatever the orchestrator raises, the run says it once
        raise ServiceDown(f"the shared rate limit cannot be asked ({type(exc).__name__}: {exc}); "
                          "analysis stops for this run") from None


def analyse_rows(rows: list[dict], config: Config, gate: Callable[[], None] | None = None) -> Batch:
    """Worker side: analyse these photos (`config.for_workers()` settings; `gate` is passed before
    every request, the rate shared by all workers) with the analyzer's own thread pool and limiter."""
    from catalog.analyze import make_analyzer
    from catalog.http import transport_of
    from catalog.routing import Router

    analyzer = make_analyzer(config)
    transport = transport_of(analyzer.client) if hasattr(analyzer, "client") else None
    if transport is not None and gate is not None:
        transport.limiter.share(lambda: _shared(gate))
    stats = getattr(analyzer, "stats", None)
    before = stats.snapshot() if stats else {}
    router = Router(config, analyzer, InlineRating(config))
    try:
        with ThreadPoolExecutor(max_workers=config.analysis.concurrency) as pool:
            # Each thread runs in a copy of this context: the orchestrator's settings (the Prefect
            # API that `gate` asks) live in context variables, which new threads do not inherit.
            futures = [pool.submit(contextvars.copy_context().run, _analyse_one, dict(row), router, config)
                       for row in rows]
            answers = [future.result() for future in futures]
    finally:
        for done in (analyzer, router):
            close = getattr(done, "close", None)
            if close:
                close()
    after = stats.snapshot() if stats else {}
    return Batch(answers, {k: after[k] - before[k] for k in STATS if k in after})


class BatchSender:
    """An AnalysisRun sender that batches photos for workers elsewhere.

    `send_batch(rows) -> Future[Batch]` hands one batch over (rows are plain dicts, each with
    `enrich`: the enrichers it still needs); at most `batches` are out at once. A batch that
    fails as a whole (its worker died more often than the cluster allows, a bug) fails each of
    its photos with the reason, spending one attempt, so max_attempts bounds a photo that kills
    its workers; the run goes on.
    """

    def __init__(self, run, send_batch: Callable[[list[dict]], Future], *, batch_size: int, batches: int):
        self.run, self.send_batch, self.batch_size = run, send_batch, batch_size
        self.window = batch_size * batches - 1
        self._waiting: list[tuple[dict, Future]] = []
        self._out: list[Future] = []

    def send(self, row: dict, analyzer, rate) -> Future:
        """A future of (Analysis, upload size) for one photo; the routing is decided again on the worker."""
        future: Future = Future()
        future.set_running_or_notify_cancel()
        self._waiting.append((row, future))
        if len(self._waiting) >= self.batch_size:
            self.flush()
        return future

    def flush(self) -> None:
        """Send the photos gathered so far as one batch."""
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, []
        rows = [{**row, "enrich": self.run.enrich.missing_names(row)} for row, _ in waiting]
        batch = self.send_batch(rows)
        self._out = [b for b in self._out if not b.done()] + [batch]
        batch.add_done_callback(lambda done: self._answered(done, waiting))

    def _answered(self, batch: Future, waiting: list[tuple[dict, Future]]) -> None:
        try:
            result: Batch = batch.result()
        except BaseException as exc:  # noqa: BLE001 - the batch as a whole: each photo says why
            reason = AnalysisFailed(f"its batch failed on the cluster: {type(exc).__name__}: {exc}")
            for _, future in waiting:
                future.set_exception(reason)
            return
        stats = getattr(self.run, "stats", None)
        if stats is not None and result.stats:
            stats.add(**result.stats)
        for (row, future), answer in zip(waiting, result.answers):
            row["source"] = answer.source or row.get("source", "")
            if answer.safety is not None:
                row["safety"] = answer.safety
            if answer.enriched is not None:
                row["enriched"] = answer.enriched
            if answer.analysis is not None:
                future.set_result((answer.analysis, answer.size))
            else:
                future.set_exception(answer.error or AnalysisFailed(answer.unexpected, permanent=False))

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        """Photos not yet sent stay pending; batches still out finish on the workers, their
        answers not stored (a later run asks again), unless `wait`."""
        self._waiting.clear()
        for batch in self._out:
            if cancel_futures:
                batch.cancel()
            elif wait:
                try:
                    batch.result()
                except BaseException:  # noqa: BLE001 - already recorded per photo
                    pass
