"""The enricher stage: analysed photos through the configured enrichers in worker processes.

Photos are handed over as they are analysed (and, each run, the analysed photos still
missing a configured enricher's row); the workers read the file themselves, so the API
stage never waits for them. Each enricher's finding is stored as its own `analyses`
row the moment it comes back. An enricher whose package is missing is one line per
run; a photo an enricher cannot decode gets an error row (not tried again); anything
else (a worker that died, a file away for a moment) stores nothing, so a later run
tries again. Nothing here spends a back-end attempt or fails a photo.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool

from catalog import db as catalog_db
from catalog import sources
from catalog.enrichers import unavailable
from catalog.pools import shut_down

log = logging.getLogger("catalog.enrich")
MAX_RESTARTS = 2  # pools re-opened per run after a worker died; then enrichers rest until the next run
PAGE = 200

SELECT_MISSING = """
SELECT p.id, p.taken_at, p.gps_lat, p.gps_lon, f.path, f.path_bytes,
       (SELECT json_group_array(a.source) FROM analyses a WHERE a.photo_id = p.id) AS have
FROM photos p
JOIN files f ON f.path = (SELECT path FROM files WHERE photo_id = p.id AND status = 'ok'
                          {scope} ORDER BY path LIMIT 1)
WHERE p.analysis_status = 'done' AND p.id > :after
  AND (:redo OR EXISTS (SELECT 1 FROM json_each(:names) n
              WHERE NOT EXISTS (SELECT 1 FROM analyses a WHERE a.photo_id = p.id AND a.source = n.value)))
ORDER BY p.id LIMIT :page
"""


def missing_enrichments(db, names, paths=None, redo=False):
    """Analysed photos (under `paths`) lacking a row of one of `names`, each with `missing` set
    (`redo`: every analysed photo, all of `names` missing)."""
    scope, params = catalog_db.path_scope_sql(paths)
    sql = SELECT_MISSING.format(scope=scope)
    after = ""
    while names:
        rows = [dict(r) for r in db.query(sql, {**params, "names": json.dumps(list(names)), "after": after,
                                                "page": PAGE, "redo": 1 if redo else 0})]
        for row in rows:
            have = set() if redo else set(json.loads(row.pop("have")))
            row["missing"] = [n for n in names if n not in have]
            yield row
        if len(rows) < PAGE:
            return
        after = rows[-1]["id"]


class EnricherQueue:
    """One run's enricher workers: `submit` photos, `poll` stores what came back, `settle` waits."""

    def __init__(self, db, config, names=None):
        self.db, self.config = db, config
        names = tuple(config.analysis.enrichers if names is None else names)
        self.skipped = unavailable(names)
        for message in self.skipped.values():  # one line per run, the rest goes on
            log.warning("%s", message)
        self.names = tuple(n for n in names if n not in self.skipped)
        self.pool = None
        self.pending: dict[Future, tuple[dict, tuple[str, ...]]] = {}
        self.stored = 0  # photos with enricher rows stored this run
        self.lost = 0  # photos whose enrichers did not come back (a worker died): tried again later
        self.restarts = 0
        self.resting: str | None = None  # why enrichers stopped for this run

    def ensure_pool(self, *extra: str) -> None:
        """Open the workers now (main thread), also warming `extra` models (the routing's safety)."""
        if self.pool is None and not self.resting:
            from catalog.enrichers.run import open_pool

            self.pool = open_pool(dict.fromkeys((*self.names, *extra)))

    def rate(self, row: dict):
        """The safety enricher's result for one photo, waited for (any thread); None if it cannot run."""
        from catalog.enrichers.run import run_enrichers

        pool = self.pool
        if pool is None:
            return None
        try:
            facts = {k: row.get(k) for k in ("gps_lat", "gps_lon", "taken_at")}
            return pool.submit(run_enrichers, catalog_db.fs_path(row), ["safety"], facts,
                               max_image_pixels=self.config.scan.max_image_pixels).result()
        except Exception:  # noqa: BLE001 - a dead worker, a broken pool: not rated, so it stays local
            return None

    def submit(self, row: dict, names=None) -> None:
        """Hand one analysed photo (a row with id, path, path_bytes, gps_lat, gps_lon, taken_at) over."""
        names = tuple(n for n in (self.names if names is None else names) if n in self.names)
        if not names or self.resting:
            return
        self.ensure_pool()
        from catalog.enrichers.run import run_enrichers

        facts = {k: row.get(k) for k in ("gps_lat", "gps_lon", "taken_at")}
        try:
            future = self.pool.submit(run_enrichers, catalog_db.fs_path(row), names, facts,
                                      max_image_pixels=self.config.scan.max_image_pixels)
        except BrokenProcessPool:  # a worker died since the last result: a fresh pool takes it
            self._restart()
            self.submit(row, names)
            return
        self.pending[future] = (row, names)

    def missing_names(self, row: dict) -> list[str]:
        """The configured enrichers this photo has no row of (a re-analysed photo keeps its
        enrichers' rows: only the back-end's is replaced)."""
        have = {r[0] for r in self.db.execute("SELECT source FROM analyses WHERE photo_id = ?", [row["id"]])}
        return [n for n in self.names if n not in have] if not self.resting else []

    def submit_missing(self, row: dict) -> None:
        """Hand a photo over for the configured enrichers it has no row of."""
        self.submit(row, self.missing_names(row))

    def poll(self) -> None:
        """Store every result that has come back; never waits."""
        for future in [f for f in self.pending if f.done()]:
            self._store(future)

    def settle(self, limit: int = 0) -> None:
        """Wait until at most `limit` photos are still with the workers, storing results as they come."""
        try:
            while len(self.pending) > limit:
                for future in wait(list(self.pending), return_when=FIRST_COMPLETED).done:
                    self._store(future)
        except BaseException:
            self.stop()
            raise

    def backfill(self, paths=None, limit=None, redo=False) -> int:
        """Submit the analysed photos still missing a configured enricher (`redo`: all of them);
        how many were submitted."""
        self.settle()  # photos already with the workers are not missing anything
        submitted = 0
        workers = self.pool._max_workers if self.pool else 4
        for row in missing_enrichments(self.db, self.names, paths, redo):
            if self.resting or (limit is not None and submitted >= limit):
                break
            self.submit(row, row["missing"])
            submitted += 1
            self.settle(workers * 4)  # a big library: a bounded queue, results stored as they come
        return submitted

    def _store(self, future: Future) -> None:
        if future not in self.pending:  # dropped with a broken pool meanwhile
            return
        row, names = self.pending.pop(future)
        try:
            result = future.result()
        except BrokenProcessPool:
            self.lost += 1
            self._restart()
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be unpickled
            self.lost += 1
            log.warning("%s: enrichers failed: %s: %s", row["path"], type(exc).__name__, exc)
            return
        self.take(row, result)

    def take(self, row: dict, result) -> None:
        """Store what the enrichers found for one photo (here, or on a Dask worker: catalog.spread)."""
        rows = [sources.enricher_row(row["id"], found) for found in result.enrichments]
        for name, message in result.errors:
            log.warning("%s: %s enricher: %s", row["path"], name, message)
            if result.unreadable and name != "places":  # the photo's own fault: not tried again
                rows.append(sources.error_row(row["id"], name, message))
        if rows:
            with self.db.atomic():
                sources.store_rows(self.db, rows)
            self.stored += 1

    def _restart(self) -> None:
        """A worker died (killed, out of memory): its photos keep no enricher rows; a fresh pool goes on."""
        if self.pool is None or self.resting:
            return
        self._kill()
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            self.resting = f"enricher workers died {self.restarts} times; the rest waits for the next run"
            log.warning("%s", self.resting)

    def _kill(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        for process in shut_down(pool):  # a model mid-photo would hold the exit for seconds
            if process.is_alive():
                process.terminate()
        lost = [f for f in self.pending if f.cancelled() or f.done()]
        for future in lost:
            self.pending.pop(future, None)
        self.lost += len(lost)

    def stop(self) -> None:
        """Interrupted: keep what already came back, abandon the rest (a later run does it)."""
        self.poll()
        self.lost += len(self.pending)
        self.pending.clear()
        self._kill()

    def close(self) -> None:
        """End of the run: wait for what is with the workers, then let them go."""
        self.settle()
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.shutdown(wait=True)
