"""schedule: serve the nightly job from a Prefect server, on a cron schedule."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from catalog.commands.context import load_settings
from catalog.errors import ConfigError


def local_timezone() -> str:
    """This machine's IANA zone name (Prefect wants a name, not an offset); UTC if unknown."""
    if os.environ.get("TZ", "").count("/"):
        return os.environ["TZ"].lstrip(":")
    try:
        return Path("/etc/timezone").read_text().strip() or "UTC"
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"
    except OSError:
        return "UTC"


def server_is_open(api_url: str) -> bool:
    """True when the Prefect server answers API calls from anyone, without a password."""
    import httpx

    try:
        return httpx.post(f"{api_url}/flows/filter", json={"limit": 1}, timeout=10, auth=None).status_code == 200
    except httpx.HTTPError:
        return False


@click.command(short_help="Serve the nightly job on a schedule from a Prefect server.")
@click.option("--cron", help="Cron expression (default: schedule.cron from the config, 0 2 * * *).")
@click.option("--timezone", "tz", help="IANA time zone for the cron, e.g. Europe/Berlin (default: this machine's).")
@click.option("--interval", type=click.IntRange(min=1), help="Run every N seconds instead of the cron.")
@click.option("--name", default="nightly", show_default=True, help="Deployment name in Prefect.")
@click.pass_context
def schedule(ctx, cron, tz, interval, name):
    """Serve the nightly job (`catalog run`) on a schedule and keep running.

    Prefect cannot schedule on its ephemeral server: start `prefect server start`
    (see deploy/ and the README) and point PREFECT_API_URL at it, with
    PREFECT_API_AUTH_STRING when the server asks for a password. Runs show up in
    Prefect's UI with their summaries; one runs at a time. Settings, database and
    analyzer are fixed now: a run started from Prefect can only narrow the folders
    (its `paths`, inside library.roots). Stop with Ctrl-C.
    """
    from catalog import quiet
    from catalog.commands.run import prepare_prefect_environment

    config = load_settings(ctx)
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "scheduling needs a Prefect server: run `prefect server start` (see deploy/prefect-server.service) "
            "and set PREFECT_API_URL=http://127.0.0.1:4200/api; or run `catalog run` from cron instead")
    if not config.library.roots:
        raise ConfigError("set library.roots in the config: a scheduled run has no folders on its command line")
    verbose = logging.getLogger().level <= logging.INFO
    prepare_prefect_environment(verbose)
    from prefect.schedules import Cron, Interval

    from flows.catalog_flow import nightly_flow

    if not verbose:
        quiet.keep_prefect_off()
    zone = tz or config.schedule.timezone or local_timezone()
    when = Interval(interval) if interval else Cron(cron or config.schedule.cron, timezone=zone)
    if server_is_open(os.environ["PREFECT_API_URL"]):
        logging.getLogger("catalog.schedule").warning(
            "the Prefect server at %s has no password: any local user can start runs and read their logs; "
            "see the README (PREFECT_SERVER_API_AUTH_STRING)", os.environ["PREFECT_API_URL"])
    click.echo(f"Serving deployment 'catalog/{name}' "
               + (f"every {interval} s" if interval else f"at '{cron or config.schedule.cron}' ({zone})")
               + f" on {os.environ['PREFECT_API_URL']}; Ctrl-C stops.")
    # Settings, database, analyzer and URLs are bound into the flow here: a flow run of
    # the deployment can only narrow the folders (its `paths` parameter), never choose them.
    try:
        nightly_flow(config).serve(name=name, schedules=[when], limit=1, print_starting_message=False)
    except Exception as exc:  # Prefect's own errors: one line, the details in its logs (-v)
        raise quiet.prefect_failure(exc, f"serving the schedule on {os.environ['PREFECT_API_URL']} stopped") from None
