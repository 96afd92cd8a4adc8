"""writeback: write the analysis tags into XMP sidecars and/or the photos themselves."""

from __future__ import annotations

import sys

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json
from catalog.terminal import escape


@click.command(short_help="Write the analysed tags into XMP sidecars or the photos.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--mode", type=click.Choice(["sidecar", "embed", "both"]),
              help="sidecar (default: never touches a photo), embed (lossless, in place), or both.")
@click.option("--dry-run", is_flag=True, help="Show, per file, the keywords to add and remove; change nothing.")
@click.option("--undo", "undo_run", type=int, metavar="RUN_ID",
              help="Restore the metadata a write-back run replaced (PATHS, --mode and --dry-run apply).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as a JSON object.")
@click.pass_context
def writeback(ctx, paths, mode, dry_run, undo_run, as_json):
    """Write each analysed photo's tags and description back (optionally only under PATHS).

    Keywords go to XMP dc:subject, lr:hierarchicalSubject and digiKam:TagsList (under
    writeback.hierarchy_parent, default auto|...), IPTC Keywords and EXIF XPKeywords;
    the description to dc:description, IPTC Caption-Abstract and EXIF ImageDescription.
    Your own keywords are always kept; only tags catalog wrote before and that are
    now stale are removed. Embedding never re-encodes pixels, is atomic and verified.
    Every run is journalled: `--undo RUN_ID` (see `catalog runs`) restores what it replaced,
    only under PATHS and only --mode's kind of file when given; with --dry-run it only reports.
    A file another program changed since is skipped and tried again next run.
    """
    from catalog.db import close_interrupted_runs
    from catalog.lock import exclusive

    config, db = open_catalogue(ctx, create=False)
    with exclusive(config.database, "writeback"):
        close_interrupted_runs(db)
        if undo_run is not None:
            from catalog.writeback.undo import undo

            result = undo(db, undo_run, paths=paths or None, mode=mode, dry_run=dry_run)
            if as_json:
                echo_json(result.__dict__)
            else:
                verb = "Would undo" if dry_run else "Undid"
                restored = "files would be restored" if dry_run else "files restored"
                click.echo(f"{verb} write-back run {undo_run}: {result.restored} {restored}, "
                           f"{result.skipped} left alone"
                           + (f", {result.never_written} never written (the run was stopped first)"
                              if result.never_written else "") + ".")
                for problem in result.problems:
                    click.echo(f"  {escape(problem)}", err=True)
            sys.exit(1 if result.skipped else 0)
        from catalog.writeback.stage import writeback as run_writeback

        summary = run_writeback(db, config, paths=paths or None, mode=mode, dry_run=dry_run,
                                progress=not as_json)
    if as_json:
        echo_json(summary.as_dict())
    else:
        if dry_run:
            for c in summary.changes:
                if c["status"] == "write":
                    words = [f"+{k}" for k in c["add"]] + [f"-{k}" for k in c["remove"]]
                    if c["description"]:
                        words.append("+description")
                    click.echo(f"{escape(c['target'])} ({c['kind']}): {escape(' '.join(words)) or 'tidy-up'}")
        s = summary
        verb = "Would write" if dry_run else "Wrote"
        click.echo(f"{verb} {s.written:,} of {s.files:,} files ({s.sidecars:,} sidecars, {s.embedded:,} embedded); "
                   f"{s.unchanged:,} already up to date, {s.skipped:,} skipped"
                   + ("" if dry_run else f". Undo with: catalog writeback --undo {s.run_id}"))
        for c in summary.changes:
            if c["status"] == "skipped":
                click.echo(f"  skipped {escape(c['path'])}: {escape(c['message'])}", err=True)
    if summary.skipped:
        sys.exit(1)
