"""Process pools: shutting one down and getting hold of its workers, in one place."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor


def shut_down(pool: ProcessPoolExecutor) -> list:
    """Shut `pool` down without waiting (queued work cancelled) and return its worker processes,
    for the caller to end those still busy. ProcessPoolExecutor has no public handle on its
    workers; this is the one place that reads its `_processes`."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    return processes
