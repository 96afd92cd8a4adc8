"""runs: the recent runs and what each one did."""

from __future__ import annotations

import click

from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json
from catalog.terminal import escape


@click.command(short_help="List recent runs: when, how they ended, and their counts.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON array.")
@click.pass_context
def runs(ctx, limit, as_json):
    """List recent runs (scan, analyze, run): when, how they ended, and their counts."""
    from catalog.queries import recent_runs

    _config, db = open_catalogue(ctx)
    rows = recent_runs(db, limit)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        c = row["counts"]
        bits = [f"{k.replace('_', ' ')} {c[k]:,}" for k in
                ("files_seen", "new", "moved", "missing", "errors", "analysed", "reused", "failed", "tokens_used",
                 "requests", "written", "skipped", "written_back")
                if isinstance(c.get(k), int) and c.get(k)]
        seconds = f"{c['seconds']:.1f} s" if isinstance(c.get("seconds"), (int, float)) else "-"
        click.echo(f"#{row['id']:<5} {row['started_at'][:19]}  {row['command']:<8} {row['status']:<8} {seconds:>8}  "
                   + ", ".join(bits))
        if row["message"]:
            click.echo(f"        {escape(row['message'])}")
