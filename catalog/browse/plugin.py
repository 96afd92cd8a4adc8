"""The Datasette plugin that shows a catalogue: metadata, thumbnails, swatches, tag links, search.

An entry point (`catalog`) as well as registered by `catalog serve`, so `datasette
catalog.db` shows the same gallery. It acts on the database named "catalog"; what
Datasette refuses on any catalogue (read-only, SQL, Host, CSP) is guard.py's.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlencode

from datasette import hookimpl
from datasette.utils.asgi import NotFound, Response
from markupsafe import Markup, escape

from catalog.browse.metadata import DATABASE, build_metadata
from catalog.errors import SearchError
from catalog.search import to_match

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
COLOR_COLUMNS = {"color", "dominant_color"}

CSS = """
.catalog-thumb img { display: block; max-width: 160px; max-height: 160px; border-radius: 3px;
                     background: #eee; }
.catalog-thumb-large img { display: block; max-width: 256px; max-height: 256px; margin: .3em 0; }
.catalog-swatch { display: inline-block; width: 1.1em; height: 1.1em; margin-right: .3em;
                  border: 1px solid rgba(0,0,0,.25); border-radius: 3px; vertical-align: middle; }
.catalog-strip { display: flex; flex-wrap: wrap; gap: .4em; align-items: flex-start; }
.catalog-strip .catalog-thumb:first-child img { outline: 3px solid #2a7; }
.catalog-strip .catalog-missing { display: inline-block; width: 5em; padding: 1em .3em; font-size: .8em;
                                  color: #777; background: #eee; border-radius: 3px; text-align: center; }
.catalog-tags a { display: inline-block; margin: 0 .2em .25em 0; padding: 0 .35em; border-radius: 3px;
                  background: #e8eefc; font-size: .85em; text-decoration: none; white-space: nowrap; }
.table-gallery .col-rowid { display: none; }
.table-gallery td.col-description { min-width: 16em; }
.table-gallery td.col-tags { min-width: 12em; }
.table-gallery td.col-path { word-break: break-all; min-width: 10em; }
dl.column-descriptions { display: grid; grid-template-columns: max-content minmax(0, 1fr);
                         gap: .1em .8em; font-size: .8em; color: #555; }
@media (min-width: 800px) {
  dl.column-descriptions { grid-template-columns: repeat(2, max-content minmax(0, 1fr)); } }
@media (min-width: 1200px) {
  dl.column-descriptions { grid-template-columns: repeat(3, max-content minmax(0, 1fr)); } }
dl.column-descriptions dt, dl.column-descriptions dd { margin: 0; }
"""


NOTHING = '""'  # an empty phrase: a valid FTS5 query that matches no photo


@hookimpl
def get_metadata(datasette, key, database, table):
    """Titles, facets, search and canned queries, also for `datasette catalog.db`."""
    # A fresh dict each time: Datasette merges the local metadata into what hooks return.
    return build_metadata() if DATABASE in datasette.databases else {}


@hookimpl(trylast=True)  # after Datasette's own escape_fts, which ours replaces
def prepare_connection(conn, database, datasette):
    if database == DATABASE:
        conn.create_function("escape_fts", 1, search_expression, deterministic=True)


def search_expression(query: str | None) -> str:
    """The search box is `catalog search`: its language (OR, -word, "phrases", sun*) and its
    one quoting rule, so a lone `"` or `NEAR(` is text. What `catalog search` would refuse
    (nothing but punctuation, only exclusions) finds nothing rather than an SQL error."""
    try:
        match = to_match(query or "")
    except SearchError:
        match = None
    return NOTHING if match is None else match


@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.path("/-/catalog.css")]


@hookimpl
def register_routes():
    return [
        (r"^/-/thumbnails/(?P<photo_id>[^/]+)\.jpg$", thumbnail),
        (r"^/-/catalog\.css$", stylesheet),
    ]


async def thumbnail(datasette, request):
    """The thumbnail of one photo, as image/jpeg."""
    await datasette.ensure_permissions(request.actor, [
        ("view-table", (DATABASE, "thumbnails")), ("view-database", DATABASE), "view-instance"])
    result = await datasette.get_database(DATABASE).execute(
        "SELECT jpeg FROM thumbnails WHERE photo_id = ?", [request.url_vars["photo_id"]])
    row = result.first()
    if row is None:
        raise NotFound("No thumbnail for that photo")
    return Response(row["jpeg"], content_type="image/jpeg",
                    headers={"cache-control": "max-age=86400"})


async def stylesheet():
    return Response(CSS, content_type="text/css; charset=utf-8",
                    headers={"cache-control": "max-age=3600"})


def _thumb_url(datasette, photo_id: str) -> str:
    return datasette.urls.path(f"/-/thumbnails/{quote(photo_id, safe='')}.jpg")


def _photo_url(datasette, photo_id: str) -> str:
    return datasette.urls.row(DATABASE, "photos", quote(photo_id, safe=""))


def _img(datasette, photo_id: str, css: str, link: bool = True) -> str:
    src, alt = escape(_thumb_url(datasette, photo_id)), escape(photo_id[:12])
    img = f'<img src="{src}" alt="photo {alt}" loading="lazy">'
    if link:
        img = f'<a href="{escape(_photo_url(datasette, photo_id))}">{img}</a>'
    return f'<span class="{css}">{img}</span>'


def _swatch(color: str) -> str:
    return f'<span class="catalog-swatch" style="background: {color}" title="{color}"></span>'


def _json_list(value, *also) -> list | None:
    """A JSON list of strings (or of the values in `also`, e.g. None), else None."""
    if not isinstance(value, str) or not value.startswith("["):
        return None
    try:
        items = json.loads(value)
    except ValueError:
        return None
    return items if isinstance(items, list) and all(isinstance(i, str) or i in also for i in items) else None


def _strip(datasette, photo_ids: list) -> str:
    """A group's thumbnails side by side, in the group's order (the keeper first); a photo with
    no thumbnail yet gets a placeholder in its place."""
    cells = (_img(datasette, i, "catalog-thumb") if i else '<span class="catalog-missing">no thumbnail yet</span>'
             for i in photo_ids)
    return f'<span class="catalog-strip">{"".join(cells)}</span>'


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if database != DATABASE or value is None:
        return None
    if column == "thumbnail" and table in ("gallery", None) and isinstance(value, str):
        return Markup(_img(datasette, value, "catalog-thumb"))
    if column == "thumbnails" and table in ("similar_groups", None) and (ids := _json_list(value, None)):
        return Markup(_strip(datasette, ids))
    if column == "jpeg" and table == "thumbnails":
        photo_id = row["photo_id"]  # a foreign key: Datasette may have expanded it
        photo_id = photo_id["value"] if isinstance(photo_id, dict) else photo_id
        return Markup(_img(datasette, photo_id, "catalog-thumb-large", link=False))
    if column == "id" and table == "photos":  # only the row page renders the key itself
        return _photo_heading(datasette, value)
    if column == "photo_id" and table in ("gallery", None) and isinstance(value, str):
        return Markup(f'<a href="{escape(_photo_url(datasette, value))}">{escape(value[:12])}…</a>')
    if column in COLOR_COLUMNS and isinstance(value, str) and HEX.match(value):
        return Markup(f"{_swatch(value)}{escape(value)}")
    if column == "palette" and (colors := _json_list(value)) is not None:
        return Markup(" ".join(_swatch(c) for c in colors if HEX.match(c)))
    if column == "tags" and (tags := _json_list(value)) is not None:
        base = datasette.urls.table(DATABASE, "gallery")
        links = (f'<a href="{escape(base + "?" + urlencode({"tags__arraycontains": t}))}">{escape(t)}</a>'
                 for t in tags)
        return Markup(f'<span class="catalog-tags">{"".join(links)}</span>')
    return None


def _photo_heading(datasette, photo_id):
    async def inner():
        found = await datasette.get_database(DATABASE).execute(
            "SELECT 1 FROM thumbnails WHERE photo_id = ?", [photo_id])
        picture = _img(datasette, photo_id, "catalog-thumb-large", link=False) if found.first() else ""
        return Markup(f"{picture}{escape(photo_id)}")

    return inner
