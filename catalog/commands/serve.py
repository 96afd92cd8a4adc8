"""serve: browse the catalogue in Datasette (read-only): gallery, facets, search, map."""

from __future__ import annotations

import click

from catalog.commands import escape, load_settings


@click.command()
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1 lets other machines browse "
                   "your catalogue, without a password.")
@click.pass_context
def serve(ctx, port, host):
    """Browse the catalogue in your web browser, with Datasette.

    Opens a gallery of every photo with its thumbnail, tags, camera, colour and
    place; facets to narrow it down; the same search as `catalog search`; a map
    of photos with GPS; and ready-made queries (duplicates, failed analyses,
    photos without analysis, spend per run, recently added). Read-only: nothing
    you do in the browser can change the catalogue, and the nightly run can go
    on writing while you browse. Stop it with Ctrl-C.
    """
    from catalog.browse.server import serve as run_server

    config = load_settings(ctx)

    def announce(url: str) -> None:
        click.echo(f"Browsing the catalogue at {escape(url)} (read-only; Ctrl-C to stop)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"catalog: warning: listening on {escape(host)}: anyone who can reach this "
                       "machine can browse the catalogue", err=True)

    try:
        run_server(config.database, host=host, port=port, announce=announce)
    except KeyboardInterrupt:
        pass
