"""Privacy routing: which photos may go to a cloud back-end, and which stay on this machine.

`[analysis] local_only` lists folder globs: a photo with any copy under one of them is
analysed by `[analysis] local_analyzer` (offline, or openai on this machine), never by a
back-end that sends photos away (imgtags; openai on another host). A glob without a
leading "/" is matched against the path below its library root, one with it against
the whole path; `*` spans folders, and a folder covers everything under it. With
`upload_if_adult_below`, the local safety model rates every photo bound for the cloud
first (in the enricher workers); at or above that level it stays local, and so does a
photo the model cannot rate (privacy first).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from types import SimpleNamespace

from catalog.analyzers import LIKELIHOODS, analyzer_factory
from catalog.enrichers import missing

log = logging.getLogger("catalog.routing")


def under(path: str, root: str, globs) -> bool:
    """Whether `path` (found under library root `root`) lies in a folder `globs` names."""
    inside = root and path.startswith(root.rstrip("/") + "/")
    rel = os.path.relpath(path, root) if inside else path
    for glob in globs:
        target, pattern = (path, glob) if glob.startswith("/") else (rel, glob.lstrip("./"))
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatchcase(target, pattern) or fnmatch.fnmatchcase(target, pattern + "/*"):
            return True
    return False


def at_or_above(level: str, threshold: str) -> bool:
    """Whether a likelihood reaches `threshold`; UNKNOWN counts as reaching it (privacy first)."""
    if level not in LIKELIHOODS or level == "UNKNOWN":
        return True
    return LIKELIHOODS.index(level) >= LIKELIHOODS.index(threshold)


class Router:
    """One run's routing: `destination` says where a photo goes, `choose` hands out its analyzer."""

    def __init__(self, config, analyzer, enrich):
        a = config.analysis
        self.config, self.analyzer, self.enrich = config, analyzer, enrich
        self.cloud = config.sends_off_machine(analyzer.name)
        self.globs = a.local_only if self.cloud else ()
        self.threshold = a.upload_if_adult_below if self.cloud else ""
        self.local = None
        self._warned = False

    def destination(self, row: dict) -> str:
        """'local' (a local_only folder), 'rated' (the safety model decides) or 'send'."""
        copies = json.loads(row.get("copies") or "[]") or [[row["path"], ""]]
        if self.globs and any(under(path, root, self.globs) for path, root in copies):
            return "local"
        return "rated" if self.threshold else "send"

    def _local(self):
        if self.local is None:
            name = self.config.analysis.local_analyzer
            self.local = analyzer_factory(name)(self.config.using(name))
        return self.local

    def choose(self, row: dict):
        """The analyzer for this photo (main thread); for 'rated' photos the cloud one, to be
        confirmed by `rate` in the worker thread."""
        where = self.destination(row)
        if where == "send":
            return self.analyzer
        self._local()  # built here, not in the worker threads
        if where == "local":
            return self.local
        problem = missing("safety")
        if problem and not self._warned:
            self._warned = True
            log.warning("%s; until then every photo stays local (upload_if_adult_below)", problem)
        if not problem:
            self.enrich.ensure_pool("safety")
        return self.analyzer

    def rate(self, row: dict):
        """(analyzer, safety Enrichment or None) for a 'rated' photo; runs in a worker thread."""
        result = self.enrich.rate(row)
        found = result.by_source().get("safety") if result is not None else None
        if found is None or at_or_above(found.safe_adult, self.threshold):
            return self.local, found
        return self.analyzer, found

    def close(self) -> None:
        close = getattr(self.local, "close", None)
        if close:
            close()


def routes(config, name: str, rows) -> dict[str, int]:
    """How many of these photos back-end `name` would get ('send'), which stay local ('local'),
    and which the safety model rates first ('rated'): what `analyze --dry-run` shows."""
    router = Router(config, SimpleNamespace(name=name), None)
    counts = {"send": 0, "local": 0, "rated": 0}
    for row in rows:
        counts[router.destination(row)] += 1
    return counts
