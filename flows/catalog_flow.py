"""The nightly pipeline as a Prefect flow: scan -> similar groups -> thumbnails -> analyse in batches -> summary.

With a Dask task runner (`[schedule] task_runner`, flows/spread.py) the analysis batches run on
the cluster's workers and this process, the only one that opens the database, stores the answers.

Orchestration only: every step calls a `catalog` stage function. The settings are
bound when the flow is built (`nightly_flow(config)`), never passed as parameters.
Tasks work on batches (a task run costs a few milliseconds, a photo a second), retry transient
faults, and never retry what only the user can fix (a refused key, a bad config).
Per-photo failures are recorded by the stages and never fail the flow.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time

from prefect import Flow, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from catalog import db as catalog_db
from catalog.analysis_db import count_pending, pending_photos, rows_by_id
from catalog.analysis_run import AnalysisRun
from catalog.analyze import make_analyzer
from catalog.settings import Config
from catalog.errors import CatalogError, ConfigError
from catalog.interrupt import is_interrupt
from catalog.lock import exclusive
from catalog.quiet import one_line
from catalog.scan import normalise_roots, scan

log = logging.getLogger("catalog.flow")


class BatchBroke(Exception):
    """An analysis batch stopped on a fault that is not a photo's; says how many answers it bought."""

    def __init__(self, cause: Exception, bought: int):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.bought = bought


def _transient(task, task_run, state) -> bool:
    """Retry only faults that may pass (I/O, a locked database) and bought nothing: never a
    CatalogError, never a batch that already paid for answers (a retry would pay again)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, CatalogError) and getattr(exc, "bought", 0) == 0


@contextlib.contextmanager
def _catalogue(config: Config):
    """The catalogue, opened for one task and closed after it."""
    db = catalog_db.open_db(config.database)
    try:
        yield db
    finally:
        db.close()


@task(name="scan library", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def scan_library(config: Config, paths: list[str] | None) -> dict:
    with _catalogue(config) as db:
        return scan(db, config, paths or None, progress=False).as_dict()


@task(name="group similar photos", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def group_similar(config: Config) -> dict:
    """The groups of copies, edits and bursts the browser shows, brought up to date with what the
    scan changed (only the groups it touched; nothing when it changed nothing)."""
    from catalog.similar.browsing import refresh_groups

    with _catalogue(config) as db:
        return refresh_groups(db)


@task(name="make thumbnails", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def make_thumbnails(config: Config) -> dict:
    """Previews of the photos that have none (the new ones), from the originals: no API call."""
    from catalog.thumbnails import fill_thumbnails

    with _catalogue(config) as db:
        made = fill_thumbnails(db, config, progress=False)
    return {"thumbnails": made.made, "thumbnails_failed": made.failed}


# The run travels as a task argument: task arguments stay in this process (Prefect records
# only upstream references for them), unlike flow parameters, which it sends to its API.
@task(name="analyse batch", retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def analyze_batch(run: AnalysisRun, photo_ids: list[str]) -> dict:
    """Analyse these photos (one analysis run, so one throttle and budget, spans the flow run's
    batches); any done meanwhile (a retried batch) are not sent again."""
    bought = run.answers
    try:
        run.process(rows_by_id(run.db, run.config, photo_ids))
    except CatalogError:
        raise
    except Exception as exc:
        raise BatchBroke(exc, run.answers - bought) from exc
    return {"analysed": run.summary.analysed, "failed": run.summary.failed, "stopped": run.summary.stopped}


@task(name="write back", retries=1, retry_delay_seconds=[60], retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def write_back(config: Config) -> dict:
    """Tags into sidecars/photos (writeback.mode); per-file problems are reported, not fatal."""
    from catalog.writeback.stage import writeback

    with _catalogue(config) as db:
        result = writeback(db, config, progress=False)
    return {"written_back": result.written, "writeback_skipped": result.skipped}


SUMMARY_KEYS = ("files_seen", "new", "changed", "unchanged", "moved", "missing", "errors",
                "photos", "duplicate_files", "near_groups", "bursts", "thumbnails", "thumbnails_failed",
                "analysed", "reused", "failed", "skipped", "tokens_used",
                "requests", "rate_limited", "written_back", "writeback_skipped", "seconds")


def summary_markdown(summary: dict) -> str:
    rows = "\n".join(f"| {k.replace('_', ' ')} | {summary.get(k, 0):,} |" if isinstance(summary.get(k), int)
                     else f"| {k.replace('_', ' ')} | {summary.get(k)} |" for k in SUMMARY_KEYS)
    text = f"# catalog run {summary.get('run_id')}: {summary.get('status')}\n\n| what | count |\n|---|---:|\n{rows}\n"
    if summary.get("message"):
        text += f"\n**Note:** {summary['message']}\n"
    return text


def paths_within_roots(roots, paths) -> list[str]:
    """The requested folders, each inside a configured root once symlinks and `..` are resolved.

    Returned in the root's own spelling (so the catalogue's paths stay the same);
    ConfigError, naming the first offender, for anything outside the roots.
    """
    resolved_roots = [(root, os.path.realpath(root)) for root in normalise_roots(roots)]
    narrowed = []
    for requested in paths:
        try:
            real = os.path.realpath(os.path.expanduser(requested))
        except (ValueError, OSError, TypeError):
            real = None
        for root, real_root in resolved_roots:
            if real is not None and (real == real_root or real.startswith(real_root.rstrip("/") + "/")):
                relative = os.path.relpath(real, real_root)
                narrowed.append(root if relative == "." else os.path.join(root, relative))
                break
        else:
            raise ConfigError(f"refusing to scan {requested!r}: it is not inside library.roots "
                              f"({', '.join(roots) or 'none configured'})")
    return narrowed


def nightly_flow(config: Config, *, in_cli: bool = False) -> Flow:
    """The nightly flow with its settings fixed now: its one parameter only narrows library.roots.

    What the flow reads (settings file, database, analyzer, URLs) is bound here, in
    the process that loaded the config; nobody who can create a flow run of the
    served deployment can choose them. `in_cli`: `catalog run` calls the flow in its
    own process, already holding the catalogue's lock, and prints failures itself;
    a served run takes the lock and reports a failure as one log line.
    """

    from flows.spread import task_runner

    @flow(name="catalog", log_prints=False, task_runner=task_runner(config))
    def catalog(paths: list[str] | None = None) -> dict:
        """Scan the library (or only `paths`, folders inside library.roots), analyse what is new, publish a summary."""
        try:
            narrowed = paths_within_roots(config.library.roots, paths) if paths else None
            return run_nightly(config, narrowed, take_lock=not in_cli)
        except Exception as exc:  # the traceback stays in Prefect's logs
            if not in_cli:
                log.error("the scheduled run failed: %s", exc if isinstance(exc, CatalogError) else one_line(exc))
            raise

    return catalog


def run_nightly(config: Config, paths: list[str] | None, *, take_lock: bool) -> dict:
    """Scan, make thumbnails, analyse in batches, write back if configured, and record the summary."""
    started = time.perf_counter()
    with exclusive(config.database, "run") if take_lock else contextlib.nullcontext():
        db = catalog_db.open_db(config.database)
        catalog_db.close_interrupted_runs(db)
        run_id = catalog_db.start_run(db, "run")
        summary: dict = {"run_id": run_id, "status": "failed", "message": None}
        run = None
        try:
            from flows.spread import dask_sender

            sender = dask_sender(config)  # a Dask scheduler that is not there: one line, before any work
            scanned = scan_library(config, paths)
            summary.update({k: scanned[k] for k in SUMMARY_KEYS if k in scanned})
            roots = normalise_roots(paths or config.library.roots)
            if roots and len(scanned["failed_roots"]) == len(roots):
                raise CatalogError("every library root is unavailable, nothing to do: "
                                   + ", ".join(scanned["failed_roots"]))
            summary.update(group_similar(config))
            summary.update(make_thumbnails(config))  # before analysis: browsable even if it stops early
            run = AnalysisRun(db, config, make_analyzer(config), sender=sender)
            run.summary.pending = count_pending(db, config)[0]
            if sender is not None:  # batches go to the Dask workers; this process stores the answers
                run.process(pending_photos(db, config))
            else:
                ids = (row["id"] for row in pending_photos(db, config))
                for batch in iter(lambda: list(itertools.islice(ids, config.schedule.batch_size)), []):
                    analyze_batch(run, batch)
                    if run.summary.stopped:
                        break
            run.enrich_missing()  # analysed photos still missing an enricher (local work only)
            analysed = run.finish()
            summary.update(analysed=analysed.analysed, reused=analysed.reused, failed=analysed.failed,
                           skipped=analysed.skipped, tokens_used=analysed.tokens_used, requests=analysed.requests,
                           rate_limited=analysed.rate_limited, analyzer=analysed.analyzer)
            if config.writeback.after_analysis:
                summary.update(write_back(config))
            problems = scanned["errors"] or scanned["failed_roots"] or analysed.failed or analysed.stopped or summary.get(
                "writeback_skipped")
            summary["status"] = "partial" if problems else "ok"
            notes = [f"unavailable roots: {', '.join(scanned['failed_roots'])}"] if scanned["failed_roots"] else []
            if analysed.stopped:
                notes.append(f"analysis stopped early: {analysed.stopped}")
            summary["message"] = "; ".join(notes) or None
        except BaseException as exc:
            if is_interrupt(exc):
                summary["status"] = "interrupted"
                summary["message"] = "stopped by a signal; every answer received is kept"
            else:
                summary["message"] = str(exc) or type(exc).__name__
            raise
        finally:
            if run is not None:
                close = getattr(run.analyzer, "close", None)
                if close:
                    close()
            summary["seconds"] = round(time.perf_counter() - started, 3)
            catalog_db.finish_run(db, run_id, summary["status"], summary, summary["message"])
            db.close()
            try:
                create_markdown_artifact(key="catalog-run-summary", markdown=summary_markdown(summary),
                                         description=f"catalog run {run_id}")
            except Exception:  # the summary is in the database whatever Prefect says
                pass
    return summary
