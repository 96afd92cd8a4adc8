"""The flow's task runner (threads, or a Dask cluster) and analysis batches sent to Dask workers.

With `[schedule] task_runner` a scheduler address, analysis goes to the cluster in batches
of plain rows (catalog.spread); the workers read the files from the shared mount and never
open the database; this process stores every answer. The API's rate holds across workers:
a Prefect global concurrency limit used as a rate limit (one slot, decaying at the
configured rate; it lives on the Prefect server, which every worker reaches with the
settings Prefect serialises into each task), passed before every request on top of each
worker's own limiter.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future

from prefect import task
from prefect.cache_policies import NO_CACHE

from catalog import config_checks
from catalog.errors import CatalogError, ConfigError
from catalog.settings import Config
from catalog.spread import Batch, BatchSender, analyse_rows

CONNECT_SECONDS = 10  # a scheduler that does not answer within this is reported, not waited for


def task_runner(config: Config):
    """Prefect's ThreadPoolTaskRunner, or a DaskTaskRunner for the configured scheduler."""
    address = config.schedule.dask_address()
    if address is None:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(f"schedule.task_runner = {address!r} needs the dask install group: "
                          "pip install 'catalog[dask]'") from None
    return DaskTaskRunner(address=address, client_kwargs={"timeout": f"{CONNECT_SECONDS}s"})


def rate_limit_name(config: Config) -> tuple[str, int] | None:
    """The shared limit's name and requests per minute for the configured back-end (None: unlimited)."""
    name = config.analyzer_name()
    per_minute = {"imgtags": config.analysis.requests_per_minute, "openai": config.openai.requests_per_minute}.get(name)
    return (f"catalog-{name}-requests", per_minute) if per_minute else None


def _shared_limit(config: Config) -> str | None:
    """Create (or update) the global rate limit on the Prefect server; its name for the workers."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    found = rate_limit_name(config)
    if found is None:
        return None
    name, per_minute = found
    # Named after the server too: a long-lived worker keeps one Prefect slot service per limit
    # name, bound to the API it first talked to (each `catalog run` starts its own server).
    name += "-" + hashlib.sha256(str(get_current_settings().api.url).encode()).hexdigest()[:8]
    # One slot freed every 60/per_minute seconds: no two requests closer than that, so no
    # 60-second window holds more than per_minute, whatever the number of workers.
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1, slot_decay_per_second=per_minute / 60)
    return name


def _pass_limit(name: str) -> None:
    from prefect.concurrency.sync import rate_limit

    rate_limit(name, strict=True)


@task(name="analyse batch on a worker", retries=0, cache_policy=NO_CACHE, persist_result=False)
def analyse_on_worker(rows: list[dict], config: Config, limit: str | None) -> Batch:
    """Worker side: no database, no retry here (a retry would pay again; Dask reruns a lost worker's batch)."""
    return analyse_rows(rows, config, (lambda: _pass_limit(limit)) if limit else None)


def dask_sender(config: Config):
    """The AnalysisRun sender for the flow's Dask task runner (None with threads): connects now,
    so a scheduler that is not there is one line before any work starts."""
    if config.schedule.dask_address() is None:
        return None
    from prefect.context import FlowRunContext
    from prefect.settings import get_current_settings

    address = config.schedule.dask_address()
    api = get_current_settings().api.url
    if not api:
        raise ConfigError("a Dask task runner needs a Prefect server its workers can reach: `catalog run` "
                          "starts one, or set PREFECT_API_URL (docs/scaling.md)")
    if config_checks.loopback(api) and not config_checks.loopback(address.replace("tcp://", "http://", 1)):
        raise ConfigError(f"Dask workers on other machines cannot reach Prefect's API at {api}: start a "
                          "Prefect server they can reach and set PREFECT_API_URL to it (docs/scaling.md)")
    runner = FlowRunContext.get().task_runner
    try:
        threads = sum(runner.client.nthreads().values())
    except (OSError, TimeoutError) as exc:
        raise CatalogError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    if not threads:
        raise CatalogError(f"the Dask scheduler at {address} has no workers")
    limit = _shared_limit(config)
    worker_config = config.for_workers()

    def send_batch(rows: list[dict]) -> Future:
        submitted = analyse_on_worker.submit(rows, worker_config, limit)
        answered: Future = Future()
        answered.set_running_or_notify_cancel()

        def done(_) -> None:  # in the Dask client's thread, once the batch is back or lost
            try:
                answered.set_result(submitted.result())
            except BaseException as exc:  # noqa: BLE001 - the sender records it against each photo
                answered.set_exception(exc)

        submitted.wrapped_future.add_done_callback(done)
        return answered

    size = max(1, min(config.schedule.batch_size, config.analysis.concurrency * 4))
    return lambda run: BatchSender(run, send_batch, batch_size=size, batches=max(2, threads * 2))
