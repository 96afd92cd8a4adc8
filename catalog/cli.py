"""The `catalog` command line: parse, call the library, print. Heavy imports live inside commands."""

from __future__ import annotations

import logging
import sys

import click

from catalog.commands import COMMANDS
from catalog.errors import CatalogError


class CatalogGroup(click.Group):
    """Turns CatalogError into a one-line message and its exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CatalogError as exc:
            click.echo(f"catalog: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("catalog: interrupted; a rerun continues where this one stopped", err=True)
            sys.exit(130)


@click.group(cls=CatalogGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Settings file (default: $CATALOG_CONFIG, then ~/.config/catalog/config.toml).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False),
              help="Catalogue database (overrides $CATALOG_DB and the config file).")
@click.option("-v", "--verbose", count=True, help="Say more (-vv for debug output).")
@click.version_option(package_name="catalog")
@click.pass_context
def cli(ctx, config_path, db_path, verbose):
    """Catalogue a photo library into SQLite and search it.

    Scan folders (deduplicating by image content), analyse each unique photo
    once, and search the result, from a terminal or in Datasette.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="catalog: %(levelname)s: %(message)s", stream=sys.stderr)
    ctx.obj = {"config_path": config_path, "db_path": db_path}


for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="catalog")
