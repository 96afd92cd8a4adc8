"""Datasette on the catalogue, read-only: the database object, the instance, and the server.

Read-only is structural, not a convention: `ReadOnlyDatabase` opens every
connection Datasette asks for, including the one it would write with, as
`mode=ro` with `PRAGMA query_only` (and guard.py's authoriser on top), so no
SQL, canned query or plugin can change the catalogue. It is not Datasette's
immutable mode: the nightly run keeps writing, and every page shows the
catalogue as it is now.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm

from catalog.browse import guard, plugin
from catalog.browse.metadata import DATABASE
from catalog.errors import CatalogError, ConfigError

SETTINGS = {
    "allow_download": False,      # a live WAL database is not a file to hand out
    "sql_time_limit_ms": 3000,    # a large library's facets and counts take a moment
    "facet_time_limit_ms": 1000,
    "default_page_size": 50,
    "default_facet_size": 10,
}


class ReadOnlyDatabase(Database):
    """Datasette's database, except that no connection to it can write."""

    def connect(self, write=False):
        uri = Path(self.path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        self._all_file_connections.append(conn)
        return conn


def ensure_schema(path: Path) -> None:
    """Refuse a missing catalogue; bring an older one up to date before serving it."""
    import sqlite_utils

    from catalog.db import open_db
    from catalog.schema import migrations

    if not path.is_file():
        raise CatalogError(f"no catalogue at {path} yet: run `catalog scan` first")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            pending = migrations.pending(sqlite_utils.Database(conn))
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"cannot open the catalogue at {path}: {exc}") from None
    if pending:
        open_db(path, create=False).close()  # applies the migrations (one short write)


def make_datasette(path: str | Path, *, settings: dict | None = None, allow_sql: bool = False,
                   allow_hosts: tuple[str, ...] = ()) -> Datasette:
    """A Datasette that shows this catalogue as /catalog, read-only, with our metadata and plugins.

    `allow_sql`: let visitors run their own SELECTs (off: only tables and ready-made
    queries). `allow_hosts`: more names the server answers to (a proxy's, say).
    """
    for module, name in ((plugin, "catalog"), (guard, "catalog_guard")):  # as the entry points
        if not pm.is_registered(module):
            pm.register(module, name=name)
    metadata = {"plugins": {guard.PLUGIN: {"allow_hosts": list(allow_hosts)}}}
    if allow_sql:
        metadata["databases"] = {DATABASE: {"allow_sql": True}}
    ds = Datasette(metadata=metadata, settings={**SETTINGS, **(settings or {})})
    ds.remove_database("_memory")  # Datasette adds it when given no files; we add ours below
    ds.add_database(ReadOnlyDatabase(ds, path=str(Path(path).resolve())), name=DATABASE)
    return ds


def serve(path: Path, *, host: str = "127.0.0.1", port: int = 8001, announce=None,
          allow_sql: bool = False, allow_hosts: tuple[str, ...] = ()) -> None:
    """Serve the catalogue until interrupted (what `catalog serve` runs)."""
    import uvicorn

    ensure_schema(path)
    ds = make_datasette(path, allow_sql=allow_sql, allow_hosts=allow_hosts)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ds.invoke_startup())
        loop.run_until_complete(ds.get_database(DATABASE).execute("SELECT COUNT(*) FROM gallery"))
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"cannot read the catalogue at {path}: {exc}") from None
    finally:
        loop.close()
    sock = _listen(host, port)
    if announce:
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{shown}:{sock.getsockname()[1]}/{DATABASE}/gallery")
    config = uvicorn.Config(ds.app(), log_level="warning", lifespan="on", workers=1)
    uvicorn.Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """Bind here, so a port in use is a one-line message rather than a server's log."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
