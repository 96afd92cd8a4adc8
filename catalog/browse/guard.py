"""The Datasette guard: what any Datasette serving a catalogue refuses, however it was started.

A Datasette plugin of its own (entry point `catalog_guard`), so `datasette catalog.db`
gets the same rules as `catalog serve`. It acts only on instances that serve a
catalogue (a database with photos, files and runs tables) and, within them, on the
catalogue databases. Defence in depth against a crafted link, in layers that each
stop it alone:

1. No arbitrary SQL: a `?sql=` link is the only way a page can be made to show
   columns the catalogue does not have (such as the `popup` column whose link
   datasette-cluster-map renders). Refused unless the metadata says `allow_sql`
   (`catalog serve --allow-sql`); the ready-made queries and tables keep working.
2. A strict Content-Security-Policy: scripts only from this origin or inline
   scripts whose SHA-256 is known (the inline scripts in the templates, and those
   the plugins add to this very page), so a `javascript:` URL, an `on...=`
   attribute or an injected `<script>` never runs, whichever plugin renders it.
   A filter on popup links was not chosen: it covers one field of one plugin,
   where the policy covers every link any plugin or page renders.
3. Connections that cannot write or leak: `PRAGMA query_only` (and `mode=ro` under
   `catalog serve`), kept on by an SQLite authoriser that also refuses ATTACH and
   fts3_tokenizer (its one-argument form hands out a pointer, its two-argument form
   installs one);
   Python 3.11 has no `setconfig` for SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, and that
   switch only governs the two-argument form anyway.
4. A Host allow-list against DNS rebinding, and 405 for anything but GET/HEAD on
   a catalogue.
5. Errors that show nothing of the server: Datasette's own error handler prints every
   error, even a 404, as a traceback with all local variables when `rich` is installed
   (Prefect brings it), and puts an unexpected exception's text on the page. On a
   catalogue, `handle_exception` answers instead: Datasette's error page for what it
   raises on purpose (404, a bad query), a plain 500 for anything else, and one log line.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref

from datasette import Response, hookimpl
from datasette.plugins import pm
from datasette.utils import add_cors_headers, await_me_maybe
from datasette.utils.asgi import Base400
from datasette.views.base import DatasetteError
from markupsafe import Markup

from catalog.browse.headers import host_allowed, policy
from catalog.terminal import escape

PLUGIN = "catalog"  # metadata: {"plugins": {"catalog": {"allow_hosts": ["photos.example.org"]}}}
CATALOGUE_TABLES = ("photos", "files", "runs")
SCRIPTS = "catalog.inline_scripts"  # ASGI scope key: the inline scripts of the page being rendered

# Writes are refused by query_only (and mode=ro under `catalog serve`), which the authoriser keeps
# on; it cannot refuse writes itself, as FTS5 declares its tables with an internal UPDATE.
REFUSED_ACTIONS = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}  # other database files stay shut
REFUSED_FUNCTIONS = {"fts3_tokenizer", "load_extension"}
REFUSED_PRAGMAS = {"query_only", "writable_schema", "trusted_schema"}  # with a value: setting them

_catalogues: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Datasette -> names
log = logging.getLogger("catalog.browse")


def is_catalogue(conn: sqlite3.Connection) -> bool:
    """A database is a catalogue when it has the catalogue's own tables."""
    found = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                         f"({', '.join('?' * len(CATALOGUE_TABLES))})", CATALOGUE_TABLES).fetchone()
    return found[0] == len(CATALOGUE_TABLES)


def authorise(action, arg1, arg2, _database, _trigger):
    """SQLite's authoriser for catalogue connections: no fts3_tokenizer, ATTACH or lifting query_only."""
    if action in REFUSED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in REFUSED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() in REFUSED_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def lock(conn: sqlite3.Connection) -> None:
    """Make one connection read-only for good (the authoriser also keeps query_only on)."""
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(authorise)


@hookimpl(tryfirst=True)  # before any other plugin's prepare_connection runs a statement
def prepare_connection(conn, database, datasette):
    if is_catalogue(conn):
        lock(conn)


@hookimpl
def startup(datasette):
    async def find_catalogues():
        names = set()
        for name, db in datasette.databases.items():
            if db.is_memory:
                continue
            try:
                if await db.execute_fn(is_catalogue):
                    names.add(name)
            except sqlite3.DatabaseError:
                pass
        _catalogues[datasette] = frozenset(names)

    return find_catalogues


def catalogues(datasette) -> frozenset:
    return _catalogues.get(datasette, frozenset())


@hookimpl(trylast=True)  # the last answer wins: ours comes after Datasette's default
def permission_allowed(datasette, actor, action, resource):
    if action != "execute-sql":
        return None
    names = catalogues(datasette)
    crossdb = resource == "_memory" and names and datasette.setting("crossdb")
    if (resource in names or crossdb) and datasette.metadata("allow_sql", database=resource) is None:
        return False  # canned queries and tables are not execute-sql: they keep working
    return None


@hookimpl
def extra_template_vars(template, database, table, columns, view_name, request, datasette):
    """Note the inline scripts the plugins put on this page, so the policy can allow exactly them."""
    scripts = request.scope.get(SCRIPTS) if request is not None else None
    if scripts is None:
        return {}

    async def collect():
        for extra in pm.hook.extra_body_script(  # the same call Datasette makes for this page
                template=template, database=database, table=table, columns=columns,
                view_name=view_name, request=request, datasette=datasette):
            extra = await await_me_maybe(extra)
            scripts.add(str(extra["script"] if isinstance(extra, dict) else extra))
        return {}

    return collect


def on_catalogue(datasette, path: str) -> bool:
    """Is this request path under one of the catalogue databases (/catalog, /catalog/..)?"""
    base = datasette.setting("base_url").rstrip("/")
    for name in catalogues(datasette):
        route = base + "/" + datasette.databases[name].route
        if path == route or path.startswith((route + "/", route + ".")):
            return True
    return False


async def _refuse(send, status: int, message: str, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), *headers]})
    await send({"type": "http.response.body", "body": message.encode() + b"\n"})


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def guarded(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            await datasette.invoke_startup()
            if not catalogues(datasette):
                return await app(scope, receive, send)
            hosts = (datasette.plugin_config(PLUGIN) or {}).get("allow_hosts") or ()
            if not host_allowed(scope, hosts):
                return await _refuse(send, 400, "Bad Request: this server does not answer to that "
                                                "Host name (see `catalog serve --allow-host`)")
            if scope["method"] not in ("GET", "HEAD") and on_catalogue(datasette, scope["path"]):
                return await _refuse(send, 405, "Method Not Allowed: the catalogue is read-only",
                                     [(b"allow", b"GET, HEAD")])
            scripts: set[str] = set()
            scope = {**scope, SCRIPTS: scripts}

            async def send_guarded(message):
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [
                        *message.get("headers", []),
                        (b"content-security-policy", policy(datasette, scripts).encode()),
                        (b"x-content-type-options", b"nosniff"),
                        (b"x-frame-options", b"DENY")]}
                await send(message)

            await app(scope, receive, send_guarded)

        return guarded

    return wrap


@hookimpl(wrapper=True)  # a wrapper: Datasette's default handler, and its console dump, never run
def handle_exception(datasette, request, exception):
    answers = yield
    if not catalogues(datasette):
        return answers
    return [error_page(datasette, request, exception)]


async def error_page(datasette, request, exception) -> Response:
    """Datasette's page for an error it raised on purpose; a plain 500 for a surprise, logged in one line."""
    title = None
    if isinstance(exception, Base400):
        status, message, info = exception.status, exception.args[0] if exception.args else "", {}
    elif isinstance(exception, DatasetteError):
        status, message, info, title = exception.status, exception.message, dict(exception.error_dict), exception.title
        message = Markup(message) if exception.message_is_html else message
    else:
        status, message, info = 500, "Internal error: the server's log says what went wrong.", {}
    if status >= 500:
        log.error("internal error on %s %s: %s", request.method, escape(request.path),
                  escape(f"{type(exception).__name__}: {exception}"),
                  exc_info=exception if log.isEnabledFor(logging.DEBUG) else None)
    info.update({"ok": False, "error": message, "status": status, "title": title})
    headers: dict = {}
    if datasette.cors:
        add_cors_headers(headers)
    if request.path.split("?")[0].endswith(".json"):
        return Response.json(info, status=status, headers=headers)
    page = await datasette.render_template([f"{status}.html", "error.html"], info, request=request)
    return Response.html(page, status=status, headers=headers)
