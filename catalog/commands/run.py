"""run: the whole nightly job as a Prefect flow: scan, analyse, summarise."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

import click

from catalog import private, quiet
from catalog.commands.context import load_settings
from catalog.commands.output import echo_json
from catalog.terminal import escape

PREFECT_QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # The ephemeral server migrates its database on first use; a slow NAS CPU needs time.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # In the processes Prefect starts (served runs, its server): our lines, not its tracebacks.
    quiet.HANDLER_SETTING: quiet.HANDLER_CLASS,
}


def prepare_prefect_environment(verbose: bool) -> None:
    """Quiet, analytics-free Prefect unless the user configured it otherwise; its home owner-only."""
    # Folders we create for Prefect are 0700: its database, logs and the results (failed runs'
    # errors) it writes there stay private whatever mode Prefect gives the files inside.
    home = prefect_home()
    private.make_dirs(home)
    private.make_dirs(Path(os.environ.get("PREFECT_RESULTS_LOCAL_STORAGE_PATH")
                           or os.environ.get("PREFECT_LOCAL_STORAGE_PATH") or home / "storage").expanduser())
    for name, value in PREFECT_QUIET.items():
        if name in (quiet.HANDLER_SETTING, "PREFECT_LOGGING_LEVEL") and verbose:
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

    return prefect_home() / f".catalog-schema-prefect-{version('prefect')}"


def prefect_home() -> Path:
    """Prefect's PREFECT_HOME (its database, results and profiles), as Prefect resolves it."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def _ephemeral_schema_current() -> bool:
    stamp = _ephemeral_stamp()
    return bool(stamp and stamp.exists() and (stamp.parent / "prefect.db").exists())


def note_ephemeral_schema(stamp: Path | None) -> None:
    """After a run that migrated the ephemeral database, later runs may skip the check."""
    if stamp and (stamp.parent / "prefect.db").exists() and not stamp.exists():
        try:
            private.create_file(stamp)
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
    if paths:  # this run's roots; the flow itself can only narrow them
        config = dataclasses.replace(config, library=dataclasses.replace(config.library, roots=tuple(paths)))
    if not config.library.roots:
        from catalog.errors import ConfigError

        raise ConfigError("nothing to scan: pass a folder, or set library.roots in the config")
    from catalog.db import open_db
    from catalog.interrupt import exit_now, is_interrupt, stop_on_signals
    from catalog.lock import exclusive

    # Held from here to the end of the flow: a second run is refused before Prefect starts.
    interrupted = False
    with exclusive(config.database, "run"):
        open_db(config.database).close()  # a corrupt or unwritable catalogue fails now, not after Prefect starts
        verbose = logging.getLogger().level <= logging.INFO
        prepare_prefect_environment(verbose)
        try:
            with stop_on_signals():
                summary = _run_flow(config, verbose)
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
            interrupted = True  # the lock is released (and marked so) on the way out
    if interrupted:
        exit_now("interrupted: every answer received is kept; a rerun continues where this one stopped")
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)  # including Prefect's start-up
    if as_json:
        echo_json(summary)
    else:
        s = summary
        click.echo(
            f"Run {s['run_id']} ({s['status']}) in {s['wall_seconds']:.1f} s ({s['seconds']:.1f} s of work): "
            f"{s.get('files_seen', 0):,} files seen "
            f"({s.get('new', 0):,} new, {s.get('changed', 0):,} changed, {s.get('moved', 0):,} moved, "
            f"{s.get('missing', 0):,} missing, {s.get('errors', 0):,} errors); {s.get('photos', 0):,} photos, "
            f"{s.get('duplicate_files', 0):,} duplicates, {s.get('thumbnails', 0):,} thumbnails made.")
        click.echo(
            f"Analysed {s.get('analysed', 0):,} with {s.get('analyzer', '?')} ({s.get('failed', 0):,} failed, "
            f"{s.get('skipped', 0):,} left for later); {s.get('requests', 0):,} requests, "
            f"{s.get('rate_limited', 0):,} rate-limit waits, {s.get('tokens_used', 0):,} tokens.")
        if s.get("message"):
            click.echo(f"Note: {escape(s['message'])}", err=True)  # may quote a server or a file name
    if summary["status"] != "ok":
        sys.exit(1)


def _run_flow(config, verbose: bool) -> dict:
    """The flow, in this process, on the ephemeral server or PREFECT_API_URL; failures are one CatalogError."""
    from catalog.errors import CatalogError

    server, stamp = None, _ephemeral_stamp()
    ephemeral = not os.environ.get("PREFECT_API_URL")
    if ephemeral:  # start its server first
        server = _start_early_server()
    try:
        from flows.catalog_flow import nightly_flow  # imports Prefect while the server starts

        if not verbose:
            quiet.keep_prefect_off()
        nightly = nightly_flow(config, in_cli=True)  # our caller holds the lock
        from prefect.settings import (PREFECT_API_AUTH_STRING, PREFECT_API_DATABASE_MIGRATE_ON_START,
                                      PREFECT_API_URL, temporary_settings)

        if server is not None and _early_server_ready(server):
            os.environ.update(PREFECT_API_URL=server.api_url, PREFECT_API_AUTH_STRING=server.auth_string)
            with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: server.auth_string}):
                summary = nightly()
        elif ephemeral:  # the quick start-up failed: Prefect's own mode, migrating as Prefect sees fit
            with temporary_settings({PREFECT_API_DATABASE_MIGRATE_ON_START: True}):
                summary = nightly()
        else:
            summary = nightly()
    except (CatalogError, sqlite3.Error, OSError):
        raise  # the CLI says these in one line
    except Exception as exc:  # details stay in Prefect's logs; the terminal gets one line
        raise quiet.prefect_failure(exc, "the run failed") from None
    finally:
        if server is not None:
            if "prefect.logging.handlers" in sys.modules:  # Prefect's queued logs reach its server first
                sys.modules["prefect.logging.handlers"].APILogWorker.drain_all(timeout=5)
            server.stop()
    note_ephemeral_schema(stamp)
    return summary


def _start_early_server():
    """Prefect's temporary server, started our quicker way (catalog.ephemeral); None if that fails."""
    from catalog.ephemeral import EphemeralServer

    try:
        return EphemeralServer()
    except Exception as exc:  # e.g. Prefect moved the module the recipe names
        _fall_back(exc)
        return None


def _early_server_ready(server) -> bool:
    """Whether the early server answers; if not (a Prefect release changed what it copies, or it
    did not come up in time), it is stopped and the run goes on in Prefect's own ephemeral mode."""
    try:
        server.wait_until_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
        return True
    except RuntimeError as exc:
        server.stop()
        _fall_back(exc)
        return False


def _fall_back(exc: Exception) -> None:
    click.echo(f"Note: the quick Prefect start-up failed ({escape(str(exc))}); "
               "using Prefect's own ephemeral mode instead.", err=True)
