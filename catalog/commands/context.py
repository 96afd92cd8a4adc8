"""What a command takes from the click context: this invocation's settings and its open catalogue."""

from __future__ import annotations

import click


def load_settings(ctx: click.Context):
    """The config for this invocation, with --db applied on top."""
    from catalog.config import load_config

    config = load_config(ctx.obj["config_path"], database=ctx.obj["db_path"])
    ctx.obj["database"] = config.database  # for the one-line message if the database fails
    return config


def open_catalogue(ctx: click.Context, *, create: bool = False):
    """The settings and the catalogue database they name (created only when `create`)."""
    from catalog.db import open_db

    config = load_settings(ctx)
    return config, open_db(config.database, create=create)


def ask_catalogue(ctx: click.Context, question):
    """`question(conn)` asked of this invocation's catalogue over a read-only sqlite3 connection:
    no sqlite-utils, no migrations unless the catalogue lacks a table the question reads."""
    from catalog.reading import ask

    return ask(load_settings(ctx).database, question)
