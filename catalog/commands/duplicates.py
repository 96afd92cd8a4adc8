"""duplicates: list groups of files that hold the same photo, or near-duplicates, or bursts."""

from __future__ import annotations

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json, human_bytes
from catalog.errors import ConfigError
from catalog.terminal import escape


@click.command(short_help="List photos held at several paths, most wasted space first (or near-duplicates, "
                          "or bursts).")
@click.option("--near", is_flag=True, help="List groups of copies and edits instead, suggested keeper first.")
@click.option("--bursts", is_flag=True, help="List bursts instead: shots of one camera within seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as a JSON array.")
@click.pass_context
def duplicates(ctx, near, bursts, as_json):
    """List photos present at more than one path, most wasted space first.

    Files count as duplicates when their image content is identical, even if
    their metadata (keywords, EXIF edits) differs.

    --near lists groups of different files of one picture: copies (resized,
    re-encoded, converted, rotated) and edits (cropped, colour-edited), the
    suggested keeper first (largest resolution, then original format, earliest
    date, most metadata). --bursts lists shots of one camera taken within
    seconds that look alike. Both compare the fingerprints the scan makes.
    """
    if near and bursts:
        raise ConfigError("--near and --bursts are two listings: choose one")
    if near or bursts:
        _similar_groups(ctx, "near" if near else "bursts", as_json)
        return
    from catalog.queries import duplicate_groups

    _config, db = open_catalogue(ctx)
    groups = duplicate_groups(db)
    if as_json:
        echo_json(list(groups))
        return
    count = 0
    for group in groups:
        count += 1
        click.echo(f"{group['copies']} copies, {human_bytes(group['size'])} each ({group['photo_id'][:12]}):")
        for path in group["paths"]:
            click.echo(f"  {escape(path)}")
    if not count:
        click.echo("No duplicates.")


def _similar_groups(ctx, kind: str, as_json: bool) -> None:
    from catalog.commands.similar import line, records
    from catalog.similar import groups as similar

    _config, db = open_catalogue(ctx)
    if kind == "near":  # the keeper's relation is None, the others' "copy" or "edit"
        found = [records(db, [(c, {"relation": relation}) for c, relation in group])
                 for group in similar.near_groups(db)]
    else:
        found = [records(db, [(c, {}) for c in group]) for group in similar.bursts(db)]
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
