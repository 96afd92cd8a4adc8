"""The `catalog` command line: parse, call the library, print. Heavy imports live inside commands."""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
import traceback

import click

from catalog.errors import CatalogError, DatabaseUnusable
from catalog.terminal import EscapingFormatter, escape

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of ours, not a problem with the library or the settings


def _fail(message: str, code: int) -> None:
    click.echo(f"catalog: {escape(message)}", err=True)
    sys.exit(code)


class CatalogGroup(click.Group):
    """Turns every failure into one line on stderr and an exit status, never a traceback.

    A CatalogError says what to do (its own exit code); a database that is locked, damaged
    or unreachable and an OS error get one line too; anything else is an internal error
    whose traceback only -vv shows. Text in messages is escaped (catalog.terminal).
    """

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            exc.message = escape(exc.message)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # usage errors: click prints them, escaped
            exc.message = escape(exc.message)
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except CatalogError as exc:
            _fail(f"error: {exc}", exc.exit_code)
        except sqlite3.Error as exc:
            _fail(f"error: {DatabaseUnusable.explain((ctx.obj or {}).get('database'), exc)}", 1)
        except KeyboardInterrupt:
            click.echo("catalog: interrupted; a rerun continues where this one stopped", err=True)
            sys.exit(130)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `catalog search x | head`: click exits quietly
                raise
            _show_traceback(ctx)
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"error: {where}{exc.strerror or exc}", 1)
        except Exception as exc:
            _show_traceback(ctx)
            _fail(f"internal error: {type(exc).__name__}: {exc}; run with -vv to see where", EXIT_INTERNAL)

    def list_commands(self, ctx) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx, name: str):
        """The command `name`, its module imported now (None for a name that is no command)."""
        if name not in self.commands and name in COMMANDS:
            import importlib

            self.add_command(getattr(importlib.import_module(COMMANDS[name]), name.replace("-", "_")), name)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter):
        """Each command's short help whole (wrapped, never cut off with "..."): its first sentence."""
        rows = [(name, command.get_short_help_str(limit=1_000))
                for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _show_traceback(ctx: click.Context) -> None:
    if (ctx.obj or {}).get("verbose", 0) >= 2:
        click.echo(escape(traceback.format_exc(), multiline=True), err=True, nl=False)


@click.group(cls=CatalogGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Settings file (default: $CATALOG_CONFIG, then ~/.config/catalog/config.toml).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False),
              help="Catalogue database (overrides $CATALOG_DB and the config file).")
@click.option("-v", "--verbose", count=True, help="Say more (-vv for debug output and tracebacks).")
@click.version_option(package_name="catalog")
@click.pass_context
def cli(ctx, config_path, db_path, verbose):
    """Catalogue a photo library into SQLite and search it.

    Scan folders (deduplicating by image content), analyse each unique photo
    once, and search the result, from a terminal or in Datasette.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("catalog: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    ctx.obj = {"config_path": config_path, "db_path": db_path, "verbose": verbose}


# Each command's module, imported only when that command runs (or help lists them all): `catalog
# stats` need not import what `catalog run` or `catalog analyze` use.
COMMANDS = {name: f"catalog.commands.{module}" for name, module in (
    ("run", "run"), ("scan", "scan"), ("analyze", "analyze"), ("search", "search"), ("serve", "serve"),
    ("duplicates", "duplicates"), ("similar", "similar"), ("stats", "stats"), ("show", "show"),
    ("runs", "runs"), ("thumbnails", "thumbnails"), ("schedule", "schedule"), ("writeback", "writeback"),
    ("analyze-url", "analyze_url"), ("demo", "demo"))}


def main() -> None:
    cli(prog_name="catalog")
