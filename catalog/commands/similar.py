"""similar: a photo's copies, edits and burst mates, with their distances."""

from __future__ import annotations

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json, human_bytes
from catalog.terminal import escape

SHOWN = ("copy", "edit", "burst")  # what `catalog similar` lists; merely similar photos are left out
NAMES = {"copy": ("copy", "copies"), "edit": ("edit", "edits"), "burst": ("burst mate", "burst mates")}


def records(db, members) -> list[dict]:
    """(Candidate, extra fields) pairs as printable records: the extras, the first path, the facts."""
    from catalog.queries import first_paths

    members = list(members)
    paths = first_paths(db, [c.id for c, _ in members])
    return [{**extra, "path": paths.get(c.id), "photo_id": c.id, "width": c.width, "height": c.height,
             "format": c.format, "taken_at": c.taken_at, "camera": c.camera, "bytes": c.bytes}
            for c, extra in members]


def line(record: dict, label: str) -> str:
    """One photo of a listing: what it is to the others, where it is, and its facts."""
    facts = [f"{record['width']}x{record['height']}" if record["width"] else None, record["format"],
             human_bytes(record["bytes"]) if record["bytes"] else None, record["taken_at"], record["camera"]]
    path = record["path"] or f"(no file present; photo {record['photo_id'][:12]})"
    return f"  {label:<18} {escape(path)}  [{escape(', '.join(str(f) for f in facts if f))}]"


@click.command(short_help="List the copies, edits and burst mates of one photo, with their distances.")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the photo and its matches as a JSON object.")
@click.pass_context
def similar(ctx, path, as_json):
    """List the photos that look like the one at PATH: its copies (the same picture resized,
    re-encoded, converted or rotated), its edits (cropped or colour-edited) and its burst mates
    (the same camera within seconds), copies first, each with its perceptual-hash distance
    (0 to 64 bits; smaller is closer).

    Photos are compared by the fingerprint the scan makes; run `catalog scan` first.
    """
    from catalog.errors import CatalogError
    from catalog.queries import file_row
    from catalog.similar.groups import similar_to

    _config, db = open_catalogue(ctx)
    ledger = file_row(db, path)
    if not ledger["photo_id"]:
        raise CatalogError(f"{path} is not a photo the catalogue could read ({ledger['error'] or ledger['status']})")
    found = records(db, [(c, {"relation": relation, "distance": distance})
                         for c, relation, distance in similar_to(db, ledger["photo_id"]) if relation in SHOWN])
    if as_json:
        echo_json({"path": ledger["path"], "photo_id": ledger["photo_id"], "similar": found})
        return
    if not found:
        click.echo(f"No copies, edits or burst mates of {escape(ledger['path'])}.")
        return
    counts = ", ".join(f"{n} {NAMES[kind][n > 1]}" for kind in SHOWN
                       if (n := sum(r["relation"] == kind for r in found)))
    click.echo(f"{escape(ledger['path'])}: {counts}")
    for record in found:
        click.echo(line(record, f"{record['relation']}, distance {record['distance']}"))
