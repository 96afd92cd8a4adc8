"""duplicates: list groups of files that hold the same photo."""

from __future__ import annotations

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json, human_bytes
from catalog.terminal import escape


@click.command(short_help="List photos held at several paths, most wasted space first.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as a JSON array.")
@click.pass_context
def duplicates(ctx, as_json):
    """List photos present at more than one path, most wasted space first.

    Files count as duplicates when their image content is identical, even if
    their metadata (keywords, EXIF edits) differs.
    """
    from catalog.queries import duplicate_groups

    _config, db = open_catalogue(ctx)
    groups = duplicate_groups(db)
    if as_json:
        echo_json(list(groups))
        return
    count = 0
    for group in groups:
        count += 1
        click.echo(f"{group['copies']} copies, {human_bytes(group['size'])} each ({group['photo_id'][:12]}):")
        for path in group["paths"]:
            click.echo(f"  {escape(path)}")
    if not count:
        click.echo("No duplicates.")
