"""One module per CLI command; each opens with the one-line summary shown by --help."""

from __future__ import annotations

import click

from catalog.errors import CatalogError
from catalog.terminal import dumps_json, escape


def load_settings(ctx: click.Context):
    """The config for this invocation, with --db applied on top."""
    from catalog.config import load_config

    config = load_config(ctx.obj["config_path"], database=ctx.obj["db_path"])
    ctx.obj["database"] = config.database  # for the one-line message if the database fails
    return config


def open_catalogue(ctx: click.Context, *, create: bool = False):
    from catalog.db import open_db

    config = load_settings(ctx)
    return config, open_db(config.database, create=create)


def echo_json(data) -> None:
    """JSON on stdout: valid, readable, and free of raw terminal controls."""
    click.echo(dumps_json(data))


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def _commands():
    from catalog.commands.analyze import analyze
    from catalog.commands.analyze_url import analyze_url
    from catalog.commands.demo import demo
    from catalog.commands.duplicates import duplicates
    from catalog.commands.run import run
    from catalog.commands.runs import runs
    from catalog.commands.schedule import schedule
    from catalog.commands.scan import scan
    from catalog.commands.search import search
    from catalog.commands.serve import serve
    from catalog.commands.show import show
    from catalog.commands.stats import stats
    from catalog.commands.thumbnails import thumbnails
    from catalog.commands.writeback import writeback

    return [run, scan, analyze, search, serve, duplicates, stats, show, runs, schedule, writeback, analyze_url, demo,
            thumbnails]


COMMANDS = _commands()
__all__ = ["COMMANDS", "CatalogError", "echo_json", "escape", "load_settings", "open_catalogue"]
