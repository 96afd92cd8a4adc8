"""scan: walk library folders and bring the catalogue up to date."""

from __future__ import annotations

import sys

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json
from catalog.errors import ConfigError
from catalog.terminal import escape


@click.command(short_help="Scan folders into the catalogue, reading new and changed files.")
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as a JSON object.")
@click.pass_context
def scan(ctx, paths, as_json):
    """Scan PATHS (default: library.roots from the config) into the catalogue.

    New and changed files are hashed (by image content, so identical photos are
    catalogued once) and their facts read; unchanged files are not read again;
    moved files are recognised and vanished ones marked missing; the groups of
    copies, edits and bursts the browser shows are brought up to date. Exit status 1
    when some files could not be read or a root was unavailable.
    """
    from catalog.db import close_interrupted_runs
    from catalog.lock import exclusive
    from catalog.scan import scan as run_scan
    from catalog.similar.browsing import refresh_groups

    config, db = open_catalogue(ctx, create=True)
    if not paths and not config.library.roots:
        raise ConfigError("nothing to scan: pass a folder, or set library.roots in the config")
    with exclusive(config.database, "scan"):
        close_interrupted_runs(db)
        summary = run_scan(db, config, paths or None, progress=not as_json)
        # what the browser shows as near-duplicates and bursts: the groups this scan touched
        refresh_groups(db)
    if as_json:
        echo_json(summary.as_dict())
    else:
        s = summary
        click.echo(
            f"Scanned {s.files_seen:,} files in {s.seconds:.1f} s: {s.new:,} new, {s.changed:,} changed, "
            f"{s.unchanged:,} unchanged, {s.moved:,} moved, {s.missing:,} missing, {s.errors:,} with errors."
        )
        click.echo(
            f"Catalogue: {s.photos:,} photos, {s.duplicate_files:,} duplicate files; "
            f"{s.bytes_hashed / 1e6:,.1f} MB hashed."
        )
        for folder in s.unreadable_folders:
            click.echo(f"  could not read folder: {escape(folder)}", err=True)
        if s.errors:
            click.echo("  files with errors: see `catalog stats`", err=True)
    if summary.errors or summary.failed_roots or summary.unreadable_folders:
        sys.exit(1)
