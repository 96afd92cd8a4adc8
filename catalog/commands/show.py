"""show: everything the catalogue knows about one file."""

from __future__ import annotations

import os

import click

from catalog.commands import echo_json, escape, open_catalogue
from catalog.errors import CatalogError


def lookup(db, path: str) -> dict:
    from catalog.db import db_text

    text = db_text(os.path.abspath(os.fsdecode(path)))[0]
    rows = list(db.query("SELECT * FROM files WHERE path = ?", [text]))
    if not rows:
        raise CatalogError(f"{path} is not in the catalogue (scan its folder first)")
    file_row = rows[0]
    file_row.pop("path_bytes", None)
    result = {"file": file_row, "photo": None, "copies": [], "sources": []}
    if file_row["photo_id"]:
        from catalog.sources import sources_of

        result["sources"] = sources_of(db, file_row["photo_id"])
        result["photo"] = next(db.query("SELECT * FROM photos WHERE id = ?", [file_row["photo_id"]]), None)
        result["copies"] = [
            r["path"] for r in db.query(
                "SELECT path FROM files WHERE photo_id = ? AND status = 'ok' AND path != ? ORDER BY path",
                [file_row["photo_id"], text])
        ]
    return result


@click.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the record as a JSON object.")
@click.pass_context
def show(ctx, path, as_json):
    """Show the catalogue's record of PATH: file ledger, photo facts, each analysis source with
    its model and date, and other copies."""
    _config, db = open_catalogue(ctx)
    data = lookup(db, path)
    if as_json:
        echo_json(data)
        return
    for key, value in data["file"].items():
        if value is not None:
            click.echo(f"{key:>14}: {escape(value)}")
    if data["photo"]:
        for key, value in data["photo"].items():
            if value is not None and key not in ("id", "first_seen"):
                click.echo(f"{key:>14}: {escape(value)}")
    for row in data["sources"]:  # where each part of the analysis came from
        made = " ".join(filter(None, [row["provider"], row["model"] and f"({row['model']})"]))
        found = row["error"] or ", ".join(row["tags"] or []) or row["place"] or "nothing seen"
        click.echo(f"{'source ' + row['source']:>14}: {escape(made or '?')}, {escape(row['produced_at'])}: "
                   f"{escape(found)}")
    for copy in data["copies"]:
        click.echo(f"{'same photo at':>14}: {escape(copy)}")
