"""run: the whole nightly job as a Prefect flow: scan, analyse, summarise."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import click

from catalog.commands import echo_json, load_settings

PREFECT_QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # The ephemeral server migrates its database on first use; a slow NAS CPU needs time.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def prepare_prefect_environment(verbose: bool) -> None:
    """Quiet, analytics-free Prefect unless the user configured it otherwise."""
    for name, value in PREFECT_QUIET.items():
        if name == "PREFECT_LOGGING_LEVEL" and verbose:
            continue
        os.environ.setdefault(name, value)
    if _ephemeral_schema_current():
        # Prefect's ephemeral server checks its database migrations on every start (~6 s);
        # once this Prefect version has migrated it, that check has nothing to do.
        os.environ.setdefault("PREFECT_API_DATABASE_MIGRATE_ON_START", "false")


def _ephemeral_stamp() -> Path | None:
    """Our note that this Prefect version's ephemeral database is fully migrated."""
    if os.environ.get("PREFECT_API_URL") or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):
        return None  # a real server, or a database we do not manage
    from importlib.metadata import version

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    return home / f".catalog-schema-prefect-{version('prefect')}"


def _ephemeral_schema_current() -> bool:
    stamp = _ephemeral_stamp()
    return bool(stamp and stamp.exists() and (stamp.parent / "prefect.db").exists())


def note_ephemeral_schema(stamp: Path | None) -> None:
    """After a run that migrated the ephemeral database, later runs may skip the check."""
    if stamp and (stamp.parent / "prefect.db").exists() and not stamp.exists():
        try:
            stamp.touch()
        except OSError:
            pass


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as a JSON object.")
@click.pass_context
def run(ctx, paths, as_json):
    """Run the nightly job once: scan PATHS (default: library.roots), analyse
    every new photo, and record a summary (also a Prefect artifact).

    Runs as a Prefect flow: in Prefect's ephemeral mode when PREFECT_API_URL is
    not set (no set-up needed), or reporting to the server PREFECT_API_URL names.
    Only one run per catalogue at a time. Exit status 1 when some files or
    photos failed, 2 for configuration problems (including a refused API key).
    """
    started = time.perf_counter()
    config = load_settings(ctx)
    if not paths and not config.library.roots:
        from catalog.errors import ConfigError

        raise ConfigError("nothing to scan: pass a folder, or set library.roots in the config")
    from catalog.lock import ensure_free

    ensure_free(config.database)  # refuse at once, not after Prefect has started
    prepare_prefect_environment(logging.getLogger().level <= logging.INFO)
    if ctx.obj["db_path"]:
        os.environ["CATALOG_DB"] = str(config.database)  # the flow reads settings itself
    server, stamp = None, _ephemeral_stamp()
    if not os.environ.get("PREFECT_API_URL"):  # ephemeral mode: start its server first
        from catalog.ephemeral import EphemeralServer

        server = EphemeralServer()
    from catalog.interrupt import exit_now, is_interrupt, stop_on_signals

    try:
        with stop_on_signals():
            summary = _run_flow(server, paths, ctx.obj["config_path"])
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        exit_now("interrupted: every answer received is kept; a rerun continues where this one stopped")
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)  # including Prefect's start-up
    note_ephemeral_schema(stamp)
    if as_json:
        echo_json(summary)
    else:
        s = summary
        click.echo(
            f"Run {s['run_id']} ({s['status']}) in {s['wall_seconds']:.1f} s ({s['seconds']:.1f} s of work): "
            f"{s.get('files_seen', 0):,} files seen "
            f"({s.get('new', 0):,} new, {s.get('changed', 0):,} changed, {s.get('moved', 0):,} moved, "
            f"{s.get('missing', 0):,} missing, {s.get('errors', 0):,} errors); {s.get('photos', 0):,} photos, "
            f"{s.get('duplicate_files', 0):,} duplicates.")
        click.echo(
            f"Analysed {s.get('analysed', 0):,} with {s.get('analyzer', '?')} ({s.get('failed', 0):,} failed, "
            f"{s.get('skipped', 0):,} left for later); {s.get('requests', 0):,} requests, "
            f"{s.get('rate_limited', 0):,} rate-limit waits, {s.get('tokens_used', 0):,} tokens.")
        if s.get("message"):
            click.echo(f"Note: {s['message']}", err=True)
    if summary["status"] != "ok":
        sys.exit(1)


def _run_flow(server, paths, config_path) -> dict:
    """The flow, in ephemeral mode once its temporary server is up, else on PREFECT_API_URL."""
    try:
        from flows.catalog_flow import catalog_flow  # imports Prefect while the server starts

        if server is not None:
            server.wait_until_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
            os.environ["PREFECT_API_URL"] = server.api_url
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: server.api_url}):
                summary = catalog_flow(paths=list(paths) or None, config_file=config_path)
        else:
            summary = catalog_flow(paths=list(paths) or None, config_file=config_path)
    except RuntimeError as exc:
        if server is None or "temporary server" not in str(exc):
            raise
        from catalog.errors import CatalogError

        raise CatalogError(f"{exc}; try again, or run `prefect server start` and set PREFECT_API_URL") from None
    finally:
        if server is not None:
            server.stop()
    return summary
