"""stats: counts by format, errors by kind, and missing files."""

from __future__ import annotations

import click

from catalog.commands import echo_json, escape, open_catalogue


def gather(db) -> dict:
    def pairs(sql):
        return {row[0] or "unknown": row[1] for row in db.execute(sql).fetchall()}

    counts: dict = {}
    files_ok, bytes_ok = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE status = 'ok'").fetchone()
    photos = db.execute(
        "SELECT COUNT(DISTINCT photo_id) FROM files WHERE status = 'ok'").fetchone()[0]
    counts.update(
        files=files_ok,
        bytes=bytes_ok,
        photos=photos,
        duplicate_files=files_ok - photos,
        by_format=pairs(
            "SELECT p.format, COUNT(DISTINCT p.id) FROM photos p JOIN files f ON f.photo_id = p.id "
            "WHERE f.status = 'ok' GROUP BY p.format ORDER BY 2 DESC, 1"),
        files_by_status=pairs("SELECT status, COUNT(*) FROM files GROUP BY status ORDER BY 1"),
        errors_by_kind=pairs(
            "SELECT error_kind, COUNT(*) FROM files WHERE status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1"),
        metadata_warnings=db.execute(
            "SELECT COUNT(*) FROM photos WHERE exif_error IS NOT NULL").fetchone()[0],
        missing=db.execute("SELECT COUNT(*) FROM files WHERE status = 'missing'").fetchone()[0],
        errors=[
            {"path": r[0], "kind": r[1], "error": r[2]}
            for r in db.execute(
                "SELECT path, error_kind, error FROM files WHERE status = 'error' ORDER BY path LIMIT 50")
        ],
    )
    return counts


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as a JSON object.")
@click.pass_context
def stats(ctx, as_json):
    """Show what the catalogue holds: photos by format, errors by kind, missing files."""
    _config, db = open_catalogue(ctx)
    data = gather(db)
    if as_json:
        echo_json(data)
        return
    click.echo(f"{data['photos']:,} photos in {data['files']:,} files ({data['bytes'] / 1e9:,.2f} GB), "
               f"{data['duplicate_files']:,} duplicate files, {data['missing']:,} missing.")
    if data["by_format"]:
        click.echo("By format: " + ", ".join(f"{escape(k)} {v:,}" for k, v in data["by_format"].items()))
    if data["errors_by_kind"]:
        click.echo("Errors: " + ", ".join(f"{escape(k)} {v:,}" for k, v in data["errors_by_kind"].items()))
        for err in data["errors"]:
            click.echo(f"  {escape(err['path'])}: {escape(err['error'])}")
    if data["metadata_warnings"]:
        click.echo(f"{data['metadata_warnings']:,} photos have unreadable EXIF (catalogued anyway).")
