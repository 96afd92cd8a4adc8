"""duplicates: list groups of files that hold the same photo, or near-duplicates, or bursts."""

from __future__ import annotations

import click

from catalog.commands.context import ask_catalogue, open_catalogue
from catalog.commands.output import echo_json, human_bytes
from catalog.errors import ConfigError
from catalog.terminal import escape


@click.command(short_help="List photos held at several paths, most wasted space first (or near-duplicates, "
                          "or bursts).")
@click.option("--near", is_flag=True, help="List groups of copies and edits instead, suggested keeper first.")
@click.option("--bursts", is_flag=True, help="List bursts instead: shots of one camera within seconds.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0),
              help="How many sets (or groups, or bursts) to list, biggest first (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as a JSON array.")
@click.pass_context
def duplicates(ctx, near, bursts, limit, as_json):
    """List photos present at more than one path, most wasted space first.

    Files count as duplicates when their image content is identical, even if
    their metadata (keywords, EXIF edits) differs.

    --near lists groups of different files of one picture: copies (resized,
    re-encoded, converted, rotated) and edits (cropped, colour-edited), the
    suggested keeper first (largest resolution, then original format, earliest
    date, most metadata). --bursts lists shots of one camera taken within
    seconds that look alike. Both compare the fingerprints the scan makes.

    Only the --limit sets that waste most space are listed (then a line says how
    many more there are and how much they waste in all); --limit 0 lists every set.
    """
    if near and bursts:
        raise ConfigError("--near and --bursts are two listings: choose one")
    if near or bursts:
        _similar_groups(ctx, "near" if near else "bursts", limit or None, as_json)
        return
    from catalog.queries import duplicate_page

    groups, totals = ask_catalogue(ctx, lambda conn: duplicate_page(conn, limit or None))
    if as_json:
        echo_json(groups)
        return
    if not groups:
        click.echo("No duplicates.")
        return
    for group in groups:
        click.echo(f"{group['copies']} copies, {human_bytes(group['size'])} each ({group['photo_id'][:12]}):")
        for path in group["paths"]:
            click.echo(f"  {escape(path)}")
    if totals["sets"] > len(groups):
        more = totals["sets"] - len(groups)
        click.echo(f"... and {more:,} more duplicate set{'s' if more != 1 else ''}: {totals['sets']:,} photos "
                   f"held at {totals['files']:,} paths waste {human_bytes(totals['wasted'])} in all "
                   f"(--limit 0 lists every set).")


def _similar_groups(ctx, kind: str, limit: int | None, as_json: bool) -> None:
    from catalog.commands.similar import line, records
    from catalog.similar import groups as similar

    _config, db = open_catalogue(ctx)
    every = similar.near_groups(db) if kind == "near" else similar.bursts(db)
    if kind == "near":  # the keeper's relation is None, the others' "copy" or "edit"
        found = [records(db, [(c, {"relation": relation}) for c, relation in group]) for group in every[:limit]]
    else:
        found = [records(db, [(c, {}) for c in group]) for group in every[:limit]]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No copies or edits of one picture." if kind == "near" else "No bursts.")
        return
    for number, group in enumerate(found, 1):
        if kind == "near":
            click.echo(f"Group {number}: {len(group)} photos, keeper first:")
            for position, record in enumerate(group):
                click.echo(line(record, "keep" if position == 0 else record["relation"]))
        else:
            click.echo(f"Burst {number}: {len(group)} shots:")
            for record in group:
                click.echo(line(record, "shot"))
    if len(every) > len(found):
        more = len(every) - len(found)
        click.echo(f"... and {more:,} more {'group' if kind == 'near' else 'burst'}{'s' if more != 1 else ''} "
                   "(--limit 0 lists them all).")
