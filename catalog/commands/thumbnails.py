"""thumbnails: make the missing thumbnails from the originals (no API call, no cost)."""

from __future__ import annotations

import sys

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json


@click.command(short_help="Make the missing thumbnails from the originals.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as a JSON object.")
@click.pass_context
def thumbnails(ctx, as_json):
    """Make a small preview (about 256 px) of every photo that has none yet, from
    its original, and keep it in the catalogue so browsing works while the library
    is offline. Costs no API call. `catalog run` does this for new photos itself.
    Exit status 1 when some originals could not be read (tried again next time).
    """
    from catalog.lock import exclusive
    from catalog.thumbnails import fill_thumbnails

    config, db = open_catalogue(ctx)
    try:
        with exclusive(config.database, "thumbnails"):
            summary = fill_thumbnails(db, config)
    finally:
        db.close()
    if as_json:
        echo_json(summary.as_dict())
    else:
        click.echo(f"Made {summary.made:,} thumbnails; {summary.failed:,} originals could not be read.")
    if summary.failed:
        sys.exit(1)
