"""Where the scan's file inspections run: a thread pool or worker processes, behind one small seam.

The scanner hands an inspector batches of `(path, max_image_pixels, follow_symlinks)` and
gets back a future of one `Inspection` per file, in order: plain data, so the work can run
anywhere that reads the same files (threads, local processes, a cluster). Inspectors never
open the database; the scanner stays its single writer.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from catalog.inspection import Inspection, crashed, inspect_file
from catalog.pools import shut_down

InspectItem = tuple[str, int, bool]  # (path, max_image_pixels, follow_symlinks)
# How long close() lets worker processes finish the batch they are on before it ends them.
CLOSE_GRACE_SECONDS = 5.0


class Inspector(Protocol):
    """Runs batches of inspections somewhere; `close()` ends it (pending batches are dropped)."""

    def submit(self, items: list[InspectItem]) -> Future[list[Inspection]]: ...

    def close(self) -> None: ...


def inspect_batch(items: list[InspectItem]) -> list[Inspection]:
    """One batch, in order: what every inspector runs wherever it runs (never raises for bad input)."""
    return [inspect_file(path, max_px, follow_symlinks=follow) for path, max_px, follow in items]


class ThreadInspector:
    """Inspections in threads of this process: no start-up cost, but bound by the GIL."""

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inspect")

    def submit(self, items: list[InspectItem]) -> Future[list[Inspection]]:
        return self._pool.submit(inspect_batch, items)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ProcessInspector:
    """Inspections in worker processes, one core each; started at the first batch, so a scan
    with nothing new to read never starts them.

    Workers come from a fork server (a clean process with the inspection modules loaded),
    never from a fork of the scanning process with its threads and open database. They
    ignore SIGINT (Ctrl-C reaches the whole process group; the scanner decides what stops)
    and end as soon as the scanning process is gone, so a killed scan leaves no worker (nor,
    once they are gone, a fork server) behind.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self.restarts = 0  # pools replaced after a worker died
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._recovering = threading.Lock()  # one batch at a time is re-read file by file

    def submit(self, items: list[InspectItem]) -> Future[list[Inspection]]:
        answer: Future = Future()
        pool = self._current()
        pool.submit(inspect_batch, items).add_done_callback(
            lambda done: self._settle(done, items, answer, pool))
        return answer

    def close(self) -> None:
        """Drop what has not started; let running batches end (bounded in size by the scanner),
        and end a worker still busy after CLOSE_GRACE_SECONDS (a read hung on a dead share)."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is None:
            return
        processes = shut_down(pool)
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1)

    def _current(self, broken: ProcessPoolExecutor | None = None) -> ProcessPoolExecutor:
        """The pool (started at the first call); a new one in place of `broken`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the inspector is closed")
            if broken is not None and self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                self.restarts += 1
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["catalog.inspection"])
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_start,
                                                 initargs=(os.getpid(),))
            return self._pool

    def _settle(self, done: Future, items: list[InspectItem], answer: Future, pool) -> None:
        if done.cancelled():
            answer.cancel()
        elif not isinstance(done.exception(), BrokenProcessPool) or self._closed:
            if done.exception() is None:
                answer.set_result(done.result())
            else:
                answer.set_exception(done.exception())
        else:  # a worker died: every batch in its pool fails with it; none of them is lost
            threading.Thread(target=self._file_by_file, args=(items, answer, pool), daemon=True).start()

    def _file_by_file(self, items: list[InspectItem], answer: Future, broken) -> None:
        """The batch again, each file on its own in a fresh pool; a file that kills its worker
        twice (a decoder crashing on it) is recorded as such instead of stopping the scan."""
        try:
            with self._recovering:
                found = []
                for item in items:
                    for _ in range(2):
                        pool = self._current(broken)
                        try:
                            found.append(pool.submit(inspect_batch, [item]).result()[0])
                            break
                        except BrokenProcessPool:
                            broken = pool
                    else:
                        found.append(crashed())
            answer.set_result(found)
        except BaseException as exc:  # closed meanwhile, or worse: the scanner sees it
            answer.set_exception(exc)


def _worker_start(scanner: int) -> None:
    """In each worker: Ctrl-C is the scanner's to handle, and the worker ends with the scanner."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(scanner,), name="scanner-watch", daemon=True).start()


def _exit_with(pid: int) -> None:
    """Wait for process `pid` to end, then end this one: a killed scanner reads no more answers,
    and a worker blocked on its task queue would otherwise wait forever."""
    try:
        handle = os.pidfd_open(pid)  # readable once the process has ended (Linux 5.3+)
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        select.select([handle], [], [])
    else:
        while True:
            time.sleep(1)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
    os._exit(1)


def make_inspector(kind: str, workers: int) -> Inspector:
    """The inspector `scan.inspector` names ("processes" or "threads") with `workers` workers."""
    return ProcessInspector(workers) if kind == "processes" else ThreadInspector(workers)
