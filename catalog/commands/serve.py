"""serve: browse the catalogue in Datasette (read-only): gallery, facets, search, map."""

from __future__ import annotations

import click

from catalog.commands.context import load_settings
from catalog.terminal import escape


def _host_name(value: str) -> str:
    from catalog.browse.headers import split_host

    if not split_host(value)[0] or "/" in value:
        raise click.BadParameter(f"{value!r} is not a host name (like photos.example.org or "
                                 "photos.example.org:8443)")
    return value


@click.command(short_help="Browse the catalogue in your web browser, read-only.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1 lets other machines browse "
                   "your catalogue, without a password.")
@click.option("--allow-sql", is_flag=True,
              help="Let visitors run their own SQL (SELECT only). Off by default: a link with "
                   "crafted SQL is the way a page could be made to carry someone else's links.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME[:PORT]",
              callback=lambda ctx, param, values: tuple(_host_name(v) for v in values),
              help="Another name this server answers to, e.g. a reverse proxy's (repeatable). "
                   "Without it only localhost, the address served and this machine's name are "
                   "answered, which stops DNS-rebinding pages.")
@click.pass_context
def serve(ctx, port, host, allow_sql, allow_hosts):
    """Browse the catalogue in your web browser, with Datasette.

    Opens a gallery of every photo with its thumbnail, tags, camera, colour and
    place; facets to narrow it down; the same search as `catalog search`; a map
    of photos with GPS; and ready-made queries (duplicates, failed analyses,
    photos without analysis, spend per run, recently added). Read-only: nothing
    you do in the browser can change the catalogue, and the nightly run can go
    on writing while you browse. Your own SQL queries are off unless you pass
    --allow-sql. Stop it with Ctrl-C.
    """
    from catalog.browse.server import serve as run_server

    config = load_settings(ctx)

    def announce(url: str) -> None:
        click.echo(f"Browsing the catalogue at {escape(url)} (read-only; Ctrl-C to stop)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"catalog: warning: listening on {escape(host)}: anyone who can reach this "
                       "machine can browse the catalogue", err=True)

    try:
        run_server(config.database, host=host, port=port, announce=announce, allow_sql=allow_sql,
                   allow_hosts=allow_hosts)
    except KeyboardInterrupt:
        pass
