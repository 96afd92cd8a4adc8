"""The analysis stage: every unique photo analysed once, at the rate the service allows.

Pending photos are read from the database in pages (memory stays flat) and fed to one
analysis run (catalog.analysis_run): prepared, sent through the configured analyzer by a
small thread pool, each answer committed the moment it arrives. `--analyzer NAME` with an
enricher's name runs only that enricher (`enrich_only`).
"""

from __future__ import annotations

import time

from catalog import db as catalog_db
from catalog.analysis_db import count_pending, pending_photos
from catalog.analysis_run import AnalysisRun, AnalyzeSummary
from catalog.analyzers import analyzer_factory
from catalog.config import Config
from catalog.enrichers.stage import EnricherQueue
from catalog.errors import AuthenticationFailed


def make_analyzer(config: Config):
    """The configured back-end: the registry's factory for its name, given the settings."""
    return analyzer_factory(config.analyzer_name())(config)


def enrich_only(db, config: Config, name: str, *, paths=None, reanalyze=False, limit=None) -> AnalyzeSummary:
    """One enricher over the analysed photos (`--analyzer places`): those missing its row, or all
    of them with `reanalyze`; only its rows change."""
    summary = AnalyzeSummary(analyzer=name, run_id=catalog_db.start_run(db, "analyze"))
    queue, status, started = EnricherQueue(db, config, (name,)), "failed", time.perf_counter()
    try:
        summary.pending = queue.backfill(paths, limit, redo=reanalyze)
        queue.close()
        status = "partial" if queue.lost or queue.skipped else "ok"
    except BaseException:
        queue.stop()
        status = "interrupted"
        raise
    finally:
        summary.enriched, summary.seconds = queue.stored, round(time.perf_counter() - started, 3)
        summary.stopped = next(iter(queue.skipped.values()), None) or queue.resting
        catalog_db.finish_run(db, summary.run_id, status, summary.as_dict(), summary.stopped)
    return summary


def analyze(db, config: Config, *, limit=None, reanalyze=False, paths=None, analyzer=None,
            progress=True, retry_failed=False, enricher: str | None = None) -> AnalyzeSummary:
    """Analyse pending photos; returns the summary. Raises AuthenticationFailed on a refused key
    and lets an interrupt through after recording the run as interrupted. `enricher`: run only
    that enricher (see enrich_only)."""
    if enricher:
        return enrich_only(db, config, enricher, paths=paths, reanalyze=reanalyze, limit=limit)
    own_analyzer = analyzer is None
    analyzer = analyzer or make_analyzer(config)
    scope = {"reanalyze": reanalyze, "paths": paths, "limit": limit, "retry_failed": retry_failed}
    pending = count_pending(db, config, **scope)[0]
    run = AnalysisRun(db, config, analyzer, progress_total=pending if progress else None,
                      reuse=not reanalyze)  # --reanalyze: the user pays again, on purpose
    run.summary.pending = pending
    run.summary.run_id = catalog_db.start_run(db, "analyze")
    status, message = "failed", None
    try:
        run.process(pending_photos(db, config, **scope))
        run.enrich_missing(paths, limit)
        status = "partial" if run.summary.failed or run.summary.stopped else "ok"
    except AuthenticationFailed as exc:
        message = str(exc)
        raise
    except BaseException:
        status, message = "interrupted", "stopped by a signal; answers received are kept"
        raise
    finally:
        summary = run.finish()
        catalog_db.finish_run(db, summary.run_id, status, summary.as_dict(), message or summary.stopped)
        close = getattr(analyzer, "close", None)
        if own_analyzer and close and status != "interrupted":
            close()
        if status != "interrupted":
            run.router.close()
    return summary
