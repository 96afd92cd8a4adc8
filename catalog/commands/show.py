"""show: everything the catalogue knows about one file."""

from __future__ import annotations

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json
from catalog.terminal import escape


@click.command(short_help="Show everything the catalogue knows about one file.")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the record as a JSON object.")
@click.pass_context
def show(ctx, path, as_json):
    """Show the catalogue's record of PATH: file ledger, photo facts, each analysis source with
    its model and date, and other copies."""
    from catalog.queries import file_record

    _config, db = open_catalogue(ctx)
    data = file_record(db, path)
    if as_json:
        echo_json(data)
        return
    for key, value in data["file"].items():
        if value is not None:
            click.echo(f"{key:>14}: {escape(value)}")
    if data["photo"]:
        for key, value in data["photo"].items():
            if value is not None and key not in ("id", "first_seen"):
                click.echo(f"{key:>14}: {escape(value)}")
    for row in data["sources"]:  # where each part of the analysis came from
        made = " ".join(filter(None, [row["provider"], row["model"] and f"({row['model']})"]))
        if row.get("copied_from"):
            made += f", copied from photo {row['copied_from'][:12]} (no request)"
        found = row["error"] or ", ".join(row["tags"] or []) or row["place"] or "nothing seen"
        click.echo(f"{'source ' + row['source']:>14}: {escape(made or '?')}, {escape(row['produced_at'])}: "
                   f"{escape(found)}")
    for copy in data["copies"]:
        click.echo(f"{'same photo at':>14}: {escape(copy)}")
