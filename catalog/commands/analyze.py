"""analyze: send each pending photo to the analyzer once, at the allowed rate."""

from __future__ import annotations

import dataclasses
import sys

import click

from catalog.analyzers import analyzer_names
from catalog.commands.context import open_catalogue
from catalog.commands.output import echo_json
from catalog.enrichers import REGISTRY as ENRICHERS
from catalog.terminal import escape

SOURCES = (*analyzer_names(), *ENRICHERS)


@click.command(short_help="Analyse the photos not analysed yet (or those under PATHS).")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--limit", type=click.IntRange(min=1), help="Analyse at most this many photos.")
@click.option("--reanalyze", is_flag=True, help="Analyse again even photos that are done.")
@click.option("--retry-failed", "--failed", "retry_failed", is_flag=True,
              help="Give every failed photo one more try (even permanent failures); done photos are not sent again.")
@click.option("--analyzer", "source", metavar="NAME", type=click.Choice(SOURCES),
              help=f"Use this back-end or enricher ({', '.join(SOURCES)}) instead of the configured "
                   "one; only its own row of each photo is replaced.")
@click.option("--dry-run", is_flag=True, help="Say what would be sent and what it may cost; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as a JSON object.")
@click.pass_context
def analyze(ctx, paths, limit, reanalyze, retry_failed, source, dry_run, as_json):
    """Analyse pending photos (optionally only those under PATHS).

    Uses the ImgTags API when an API key is set (IMGTAGS_API_KEY), else the
    offline analyzer. Each unique photo is analysed once and duplicates share
    it; failed photos are retried on later runs up to analysis.max_attempts.
    A run stops cleanly at the analysis.max_requests / max_tokens budget, when the
    service's quota is exhausted or it keeps failing (the next run resumes), and
    within seconds on SIGTERM or Ctrl-C, keeping every answer received. Exit
    status 1 when some photos failed, 2 when the API refused the key, 130 when
    interrupted.

    Each photo keeps one row per source: the back-end's answer and each
    enricher's ([analysis] enrichers: places, text, safety, faces), which run
    on every analysed photo in worker processes. `--analyzer NAME --reanalyze
    PATHS` (or `--failed`) replaces only NAME's row; an enricher's name runs
    only that enricher. Photos under [analysis] local_only never go to a cloud
    back-end (--dry-run says what would go where).
    """
    from catalog.analysis_db import DEFAULT_TOKEN_GUESS, average_tokens, count_pending
    from catalog.analyze import analyze as run_analyze
    from catalog.db import close_interrupted_runs
    from catalog.errors import Interrupted
    from catalog.interrupt import exit_now, stop_on_signals
    from catalog.lock import exclusive

    config, db = open_catalogue(ctx, create=False)
    if source in ENRICHERS:
        config = dataclasses.replace(config, analysis=dataclasses.replace(config.analysis, enrichers=(source,)))
    elif source:
        config = config.using(source)
    if dry_run and source in ENRICHERS:
        from catalog.enrichers.stage import missing_enrichments

        photos = sum(1 for _ in missing_enrichments(db, [source], paths, redo=reanalyze))
        photos = min(photos, limit) if limit else photos
        if as_json:
            echo_json({"enricher": source, "would_enrich": photos})
        else:
            click.echo(f"Would run the {source} enricher on {photos:,} analysed photos, on this machine. "
                       "Nothing was sent.")
        return
    if dry_run:
        from catalog.analysis_db import pending_photos
        from catalog.reuse import SavedRequests
        from catalog.routing import routes

        name = config.analyzer_name()
        scope = dict(reanalyze=reanalyze, paths=paths, limit=limit, retry_failed=retry_failed)
        count, upload = count_pending(db, config, **scope)
        reuse = SavedRequests(db, name, config.analysis.reuse_for_copies and not reanalyze)
        where = routes(config, name, reuse.remaining(pending_photos(db, config, **scope)))
        count -= reuse.saved
        history = average_tokens(db, name)
        per_photo = history if history is not None else (0 if name == "offline" else DEFAULT_TOKEN_GUESS)
        data = {"analyzer": name, "would_send": count - where["local"], "upload_bytes_at_most": upload,
                "reused": reuse.saved, "kept_local": where["local"], "rated_first": where["rated"],
                "local_analyzer": config.analysis.local_analyzer if where["local"] or where["rated"] else None,
                "tokens_estimate": round((count - where["local"]) * per_photo),
                "tokens_per_photo": round(per_photo, 1),
                "estimate_from": "history" if history is not None else "default guess"}
        if as_json:
            echo_json(data)
            return
        click.echo(f"Would send {data['would_send']:,} photos to {name}: at most {upload / 1e6:,.1f} MB of "
                   f"uploads, about {data['tokens_estimate']:,} tokens ({per_photo:,.0f} per photo, "
                   f"{data['estimate_from']}). Nothing was sent.")
        if reuse.saved:
            click.echo(f"{reuse.saved:,} copies of analysed photos would take their answer instead: "
                       f"{reuse.saved:,} requests saved (analysis.reuse_for_copies).")
        if where["local"]:
            click.echo(f"Would keep {where['local']:,} photos under analysis.local_only on this machine "
                       f"({data['local_analyzer']}).")
        if where["rated"]:
            click.echo(f"The safety model rates those {where['rated']:,} photos first: "
                       f"{config.analysis.upload_if_adult_below} or above stays on this machine "
                       f"({data['local_analyzer']}).")
        return
    try:
        with stop_on_signals(), exclusive(config.database, "analyze"):
            close_interrupted_runs(db)
            summary = run_analyze(db, config, limit=limit, reanalyze=reanalyze, paths=paths,
                                  progress=not as_json, retry_failed=retry_failed,
                                  enricher=source if source in ENRICHERS else None)
    except Interrupted as exc:
        exit_now(str(exc))
    if as_json:
        echo_json(summary.as_dict())
    else:
        s = summary
        click.echo(f"Analysed {s.analysed:,} of {s.pending:,} pending photos with {s.analyzer} in "
                   f"{s.seconds:.1f} s: {s.failed:,} failed, {s.skipped:,} left for later"
                   + (f", {s.reused:,} copies took their original's answer (no request)" if s.reused else "")
                   + f"; {s.requests:,} requests, {s.rate_limited:,} rate-limit waits, {s.tokens_used:,} tokens"
                   + (f"; enrichers added to {s.enriched:,} photos." if s.enriched else "."))
        if s.stopped:
            click.echo(f"Stopped early: {escape(s.stopped)}", err=True)
    if summary.failed:
        sys.exit(1)
