"""stats: counts by format, errors by kind, and missing files."""

from __future__ import annotations

import click

from catalog.commands.context import ask_catalogue
from catalog.commands.output import echo_json
from catalog.terminal import escape


@click.command(short_help="Show what the catalogue holds: formats, errors, missing files.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as a JSON object.")
@click.pass_context
def stats(ctx, as_json):
    """Show what the catalogue holds: photos by format, errors by kind, missing files."""
    from catalog.queries import catalogue_stats

    data = ask_catalogue(ctx, catalogue_stats)
    if as_json:
        echo_json(data)
        return
    click.echo(f"{data['photos']:,} photos in {data['files']:,} files ({data['bytes'] / 1e9:,.2f} GB), "
               f"{data['duplicate_files']:,} duplicate files, {data['missing']:,} missing.")
    if data["by_format"]:
        click.echo("By format: " + ", ".join(f"{escape(k)} {v:,}" for k, v in data["by_format"].items()))
    if data["errors_by_kind"]:
        click.echo("Errors: " + ", ".join(f"{escape(k)} {v:,}" for k, v in data["errors_by_kind"].items()))
        for err in data["errors"]:
            click.echo(f"  {escape(err['path'])}: {escape(err['error'])}")
    if data["metadata_warnings"]:
        click.echo(f"{data['metadata_warnings']:,} photos have unreadable EXIF (catalogued anyway).")
